"""The simulated exchange ``twistd smarkets`` runs in its own process when given no ``--endpoint``.

It listens on a loopback port the system chooses, so that two clients on one
machine never clash; the client reaches it through `EmbeddedExchangeEndpoint`,
which waits for that port to be bound.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from smarkets_twisted.exchange.accounts import default_accounts
from smarkets_twisted.exchange.liquidity import LiquiditySimulator, with_liquidity_account
from smarkets_twisted.exchange.server import ExchangeFactory
from smarkets_twisted.exchange.service import Exchange
from smarkets_twisted.exchange.tap import CannotListen, describe_simulation
from smarkets_twisted.process import exit_after_stop, said


class EmbeddedExchangeService(Service):
    """A simulated exchange with liquidity on a loopback port chosen by the system."""

    log = Logger()

    def __init__(self, reactor: Any, daemon: bool = False) -> None:
        self.reactor = reactor
        #: Under twistd without -n: a port it cannot have is raised at start, as `ListenerService` does.
        self.daemon = daemon
        self._cannot: str | None = None
        self.exchange = Exchange(reactor, with_liquidity_account(default_accounts()))
        self.liquidity = LiquiditySimulator(self.exchange, reactor)
        self.port: IListeningPort | None = None
        self._waiting: list[Deferred[IListeningPort]] = []

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        endpoint = serverFromString(self.reactor, "tcp:0:interface=127.0.0.1")  # type: ignore[no-untyped-call]
        factory = ExchangeFactory(self.exchange, self.reactor)
        factory.noisy = False
        endpoint.listen(factory).addCallbacks(self._listening, self._cannot_listen)
        if self.daemon and self._cannot is not None:
            raise said(CannotListen(self._cannot))
        self.liquidity.startService()

    def _cannot_listen(self, failure: Failure) -> None:
        self._cannot = f"the embedded exchange cannot listen: {failure.getErrorMessage()}"
        self.log.critical("{error}", error=self._cannot)
        waiting, self._waiting = self._waiting, []
        for deferred in waiting:
            deferred.errback(failure)
        exit_after_stop(self.reactor)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        self.log.info("{description}", description=describe_simulation(self.exchange, port))
        waiting, self._waiting = self._waiting, []
        for deferred in waiting:
            deferred.callback(port)

    def listening(self) -> Deferred[IListeningPort]:
        """Fires with the listening port once it is bound."""
        deferred: Deferred[IListeningPort] = Deferred()
        if self.port is not None:
            deferred.callback(self.port)
        else:
            self._waiting.append(deferred)
        return deferred

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        self.liquidity.stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None


@implementer(IStreamClientEndpoint)
class EmbeddedExchangeEndpoint:
    """Connects to the embedded exchange's port, once it is listening."""

    def __init__(self, reactor: Any, exchange: EmbeddedExchangeService) -> None:
        self.reactor = reactor
        self.exchange = exchange

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        def to(port: IListeningPort) -> Deferred[Any]:
            address = port.getHost()
            return TCP4ClientEndpoint(self.reactor, "127.0.0.1", address.port).connect(  # type: ignore[attr-defined]
                protocolFactory
            )

        return self.exchange.listening().addCallback(to)
