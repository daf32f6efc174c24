"""Test your own code against the simulated exchange: in memory, on a Clock, no sockets.

::

    from smarkets_twisted.testing import InMemoryExchange

    market = InMemoryExchange()                 # demo account, demo markets
    client, connection = market.client()        # a SmarketsClientFactory, logged in
    d = client.order(100, 1001, BUY, quantity=400000, price=2500)
    market.flush()                              # d has fired
    market.exchange.halt(100)                   # drive the market from the test
    market.advance(30)                          # time passes: heartbeats flow
    connection.drop()                           # the network fails...
    connection = market.connect(client)         # ...and the client resumes
    pong = client.ping()
    connection.drop(lose_unread=True)           # the ping is lost on the way...
    market.connect(client)                      # ...and resent on the resume: pong fires

Everything runs synchronously: `InMemoryExchange.flush` moves bytes until
both sides are quiet, and `InMemoryExchange.advance` moves the clock in
small steps so that every timer fires when it would.
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.task import Clock
from twisted.test.iosim import FakeTransport, IOPump, connectedServerAndClient

from smarkets_twisted.exchange.accounts import Accounts
from smarkets_twisted.exchange.catalogue import Catalogue
from smarkets_twisted.exchange.server import ConnectionSettings, ExchangeFactory, ExchangeProtocol
from smarkets_twisted.exchange.service import Exchange, ExchangeSettings
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.settings import ClientSettings

__all__ = ["InMemoryConnection", "InMemoryExchange"]

#: Where the in-memory exchange seems to listen, as ``twistd smarkets-exchange`` does.
_EXCHANGE_ADDRESS = IPv4Address("TCP", "127.0.0.1", 3701)

#: The first port a client seems to connect from; each connection takes the next.
_FIRST_CLIENT_PORT = 50001


def _build(factory: IProtocolFactory) -> IProtocol:
    protocol = factory.buildProtocol(_EXCHANGE_ADDRESS)
    assert protocol is not None, "the client factory refused the connection"
    return protocol


def _transport(protocol: IProtocol, is_server: bool, host: IPv4Address, peer: IPv4Address) -> FakeTransport:
    return FakeTransport(protocol, is_server, host, peer)  # type: ignore[no-untyped-call]


class InMemoryConnection:
    """One client connection to an `InMemoryExchange`, over iosim transports.

    :ivar client: the client's protocol.
    :ivar server: the exchange's `ExchangeProtocol` for this connection.
    """

    def __init__(self, client: IProtocol, server: ExchangeProtocol, pump: IOPump) -> None:
        self.client = client
        self.server = server
        self.pump = pump

    @property
    def connected(self) -> bool:
        """False once both ends have seen the connection close."""
        return not (self.pump.clientIO.disconnected or self.pump.serverIO.disconnected)

    def flush(self) -> bool:
        """Move bytes both ways until neither end has anything to say; True if any moved."""
        return bool(self.pump.flush())  # type: ignore[no-untyped-call]

    def drop(self, lose_unread: bool = False) -> None:
        """The network fails: both ends lose the connection, not cleanly.

        What either end wrote and the other has not read yet is delivered
        first, unless ``lose_unread``: then it is lost, as when the network
        fails mid-write (an order written but never received, which the
        resumed session must resend).
        """
        for transport in (self.pump.clientIO, self.pump.serverIO):
            if lose_unread:
                transport.getOutBuffer()
            transport.disconnectReason = ConnectionLost("the in-memory connection was dropped")
        self.pump.clientIO.loseConnection()
        self.flush()


class InMemoryExchange:
    """A simulated exchange on a Clock that clients connect to without sockets.

    :param clock: the time for both the exchange and the clients made by `client`.
    :param accounts: who can log in; the ``demo``/``demo`` account by default.
    :param catalogue: what can be traded; the demo markets by default.
    :ivar exchange: the `Exchange`, whose Python API drives markets from a test.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        accounts: Accounts | None = None,
        catalogue: Catalogue | None = None,
        settings: ExchangeSettings | None = None,
        connection_settings: ConnectionSettings | None = None,
    ) -> None:
        self.clock = clock if clock is not None else Clock()
        self.exchange = Exchange(self.clock, accounts, catalogue, settings)
        self.factory = ExchangeFactory(self.exchange, self.clock, connection_settings)
        self.connections: list[InMemoryConnection] = []
        self._client_ports = itertools.count(_FIRST_CLIENT_PORT)

    def connect(self, client_factory: IProtocolFactory) -> InMemoryConnection:
        """Connect a new protocol from ``client_factory`` to the exchange, and flush.

        Each connection has addresses as over TCP (the exchange's logs name
        the client by one), from a port of its own.
        """
        peer = IPv4Address("TCP", "127.0.0.1", next(self._client_ports))
        client, server, pump = connectedServerAndClient(
            lambda: self.factory.buildProtocol(peer),
            lambda: _build(client_factory),
            clientTransportFactory=lambda protocol: _transport(protocol, False, peer, _EXCHANGE_ADDRESS),
            serverTransportFactory=lambda protocol: _transport(protocol, True, _EXCHANGE_ADDRESS, peer),
            clock=self.clock,
        )
        connection = InMemoryConnection(client, server, pump)
        self.connections.append(connection)
        return connection

    def client(
        self, username: str = "demo", password: str = "demo", **settings: Any
    ) -> tuple[SmarketsClientFactory, InMemoryConnection]:
        """A `SmarketsClientFactory` on this exchange's clock, connected and logged in."""
        factory = SmarketsClientFactory(ClientSettings(username=username, password=password, **settings), self.clock)
        return factory, self.connect(factory)

    def flush(self) -> None:
        """Move bytes on every open connection until all are quiet."""
        moved = True
        while moved:
            moved = False
            for connection in self.connections:
                if connection.connected and connection.flush():
                    moved = True
        self.connections = [connection for connection in self.connections if connection.connected]

    def advance(self, seconds: float, step: float = 0.5) -> None:
        """Let ``seconds`` pass, ``step`` at a time, flushing after each step."""
        remaining = seconds
        while remaining > 0:
            tick = min(step, remaining)
            self.clock.advance(tick)
            remaining -= tick
            self.flush()
