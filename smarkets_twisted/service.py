"""The client as a Twisted service: reconnect with backoff and jitter until logged out or stopped.

Reconnecting is `twisted.application.internet.ClientService`'s job; the
factory it drives keeps the session, so each new connection resumes it.

The service is in one of three states:

==============  ===============================  ==================================
state           how it gets there                what it does
==============  ===============================  ==================================
stopped         not started, or `stopService`    nothing; waiters fail (SessionLost)
connecting      `startService`, `connect`        connects, logs in, reconnects with
                                                 backoff whenever the connection is
                                                 lost
ended           a logout (factory or service),   nothing until `connect`; waiters
                a login refused for good         fail with the reason
==============  ===============================  ==================================

``connecting`` is ClientService running; ``ended`` is ClientService stopped
while this service runs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import error as net_error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger, LogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from smarkets_twisted import errors
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.proto import eto_pb2
from smarkets_twisted.protocol import SmarketsClientProtocol


def retry_policy(initial: float = 0.5, factor: float = 2.0, maximum: float = 30.0) -> Callable[[int], float]:
    """Exponential backoff with up to a second of random jitter."""
    return backoffPolicy(initialDelay=initial, factor=factor, maxDelay=maximum, jitter=random.random)


class SmarketsClientService(Service):
    """Keeps one session logged in until stopped or logged out; stops trying on a final login refusal."""

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        factory: SmarketsClientFactory,
        clock: IReactorTime | None = None,
        retry: Callable[[int], float] | None = None,
        address: str | None = None,
    ) -> None:
        """``address`` names the exchange in log lines (``host:port``)."""
        self.factory = factory
        self.clock = clock or factory.clock
        self.address = address or "the exchange"
        self.endpoint = LoggedInEndpoint(endpoint, factory, self.address)
        self._retry = retry or retry_policy()
        self.connections = _Connections(self.endpoint, Factory.forProtocol(Protocol), retryPolicy=self._retry_after,
                                        clock=self.clock)
        factory.on_ended = self._ended
        #: Called with the error once a login is refused for good (twistd exits 1).
        self.on_refused: Callable[[errors.LoginError], object] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.connections.startService()

    def connect(self) -> None:
        """Connect and log in again after a logout or a final login refusal (nothing if already connecting)."""
        if self.running and not self.connections.running:
            self.log.info("connecting to {address} again", address=self.address)
            self.connections.startService()

    def logout(self, timeout: float | None = None) -> Deferred[None]:
        """Log out (see `SmarketsClientFactory.logout`) and stay out until `connect`."""
        return self.factory.logout(timeout)

    def stopService(self) -> Deferred[Any]:
        """Log out if logged in, then stop; every waiter and pending request fails."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self.factory.current is None:
            self.factory.stop()
            return self.connections.stopService()
        logged_out = self.factory.logout()
        logged_out.addErrback(lambda f: self.log.warn("{error}", error=f.getErrorMessage()))
        return logged_out.addBoth(lambda _: self.connections.stopService())

    def _ended(self, reason: errors.SmarketsError) -> None:
        if self.connections.running:
            self.connections.stopService()
        if isinstance(reason, errors.LoginError):
            self.log.error("{address}: {reason}: no more connection attempts", address=self.address,
                           reason=reason)
            if self.on_refused is not None:
                self.on_refused(reason)
        elif self.running:
            self.log.info("logged out: no more connection attempts until connect()")

    def _retry_after(self, attempt: int) -> float:
        delay = self._retry(attempt)
        self.log.warn("{address}: {cause}; retry {attempt} in {delay:.1f} seconds", address=self.address,
                      cause=self.endpoint.last_cause, attempt=attempt, delay=delay)
        return delay


class _Connections(ClientService):
    """ClientService without its own retry line: the service logs each retry with its cause."""

    _log = Logger(observer=LogPublisher())


@implementer(IStreamClientEndpoint)
class LoggedInEndpoint:
    """An endpoint whose connections count as made once they are logged in.

    ClientService forgets its failed attempts as soon as a connection is
    made, so a TLS failure, an exchange closing at once or a login refused
    for now would be retried at the shortest delay forever.  This endpoint
    connects the client factory itself and hands ClientService a stand-in
    only after the login succeeded: anything before that is a failed attempt,
    and the backoff grows.  The stand-in shares the connection's transport
    (ClientService closes it through that) and is told when it is lost.

    A resume the exchange refuses because it does not know the session is no
    failed attempt: the exchange is up, and the factory has ended the session.
    The same attempt then connects again at once, to start a new session.
    """

    log = Logger()

    def __init__(self, endpoint: IStreamClientEndpoint, factory: SmarketsClientFactory,
                 address: str = "the exchange") -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.address = address
        #: Why the last attempt failed or the last connection ended, in words.
        self.last_cause = "not connected"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        connecting: list[Deferred[Any]] = []
        logging_in: list[SmarketsClientProtocol] = []

        def cancel(result: Deferred[IProtocol]) -> None:
            if logging_in and logging_in[-1].transport is not None:
                logging_in[-1].transport.abortConnection()  # type: ignore[attr-defined]
            else:
                connecting[-1].cancel()

        result: Deferred[IProtocol] = Deferred(cancel)

        def attempt() -> Deferred[SmarketsClientProtocol]:
            logging_in.clear()
            connecting.append(self.endpoint.connect(self.factory))
            return connecting[-1].addCallback(log_in)

        def log_in(protocol: SmarketsClientProtocol) -> Deferred[SmarketsClientProtocol]:
            logging_in.append(protocol)
            return protocol.login().addCallback(lambda _: protocol)

        def resume_refused(failure: Failure) -> Failure | Deferred[SmarketsClientProtocol]:
            refused = logging_in[-1] if logging_in else None
            if refused is None or not refused.resuming or not _unknown_session(failure.value) or result.called:
                return failure
            self.log.info("{address}: the exchange does not know the session; starting a new one now",
                          address=self.address)
            again: Deferred[SmarketsClientProtocol] = Deferred()

            def closed(error: Exception) -> Exception:
                if result.called:  # cancelled meanwhile
                    again.errback(failure)
                else:
                    attempt().chainDeferred(again)
                return error

            refused.closed.addCallback(closed)
            return again

        def logged_in(protocol: SmarketsClientProtocol) -> None:
            assert protocol.transport is not None
            if result.called:
                # Cancelled (the service stopped) while this login was answered all the same:
                # ClientService wants no connection now.
                protocol.transport.loseConnection()
                return
            stand_in = protocolFactory.buildProtocol(protocol.transport.getPeer())
            assert stand_in is not None
            stand_in.makeConnection(protocol.transport)
            protocol.closed.addCallback(self._lost, stand_in)
            result.callback(stand_in)

        def failed(failure: Failure) -> None:
            assert failure.value is not None
            self.last_cause = cause(failure.value, logged_in=False)
            if not result.called:
                result.errback(failure)

        attempt().addErrback(resume_refused).addCallbacks(logged_in, failed)
        return result

    def _lost(self, error: Exception, stand_in: IProtocol) -> None:
        self.last_cause = cause(error, logged_in=True)
        stand_in.connectionLost(Failure(error))


def _unknown_session(error: BaseException | None) -> bool:
    return isinstance(error, errors.LoginError) and error.reason == eto_pb2.LOGOUT_UNKNOWN_SESSION


def cause(error: BaseException, logged_in: bool) -> str:
    """Why a connection attempt failed, or a logged-in connection ended, in a few words."""
    lost = error.__cause__ if isinstance(error, errors.SocketDisconnected) and error.__cause__ else error
    if isinstance(error, errors.LoginTimeout):
        return "no login response in time"
    if isinstance(error, errors.LoginError):
        return f"login refused ({errors.logout_words(error.reason_name or str(error.reason))})"
    if isinstance(error, (errors.TLSVerificationFailed, errors.PeerTimeout, errors.LoggedOut, errors.ProtocolError)):
        return str(error)
    if isinstance(lost, net_error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(lost, net_error.DNSLookupError):
        return "host not found"
    if isinstance(lost, (net_error.TimeoutError, net_error.TCPTimedOutError)):
        return "connection timed out"
    if isinstance(lost, VerificationError):  # Twisted's own hostname check
        return "TLS verification failed: hostname mismatch"
    if isinstance(lost, SSL.Error):
        return f"TLS failed: {lost}"
    if isinstance(lost, net_error.ConnectionDone):
        return "connection closed by the exchange" if logged_in else "connection closed before login"
    detail = str(lost).strip().rstrip(".") or type(lost).__name__
    return f"connection lost ({detail})" if logged_in else f"connection lost before login ({detail})"


def address_of(description: str) -> str:
    """``host:port`` of a client endpoint string such as ``tls:stream.smarkets.com:3801``, for log lines."""
    kind, *parts = re.split(r"(?<!\\):", description)
    positional = [part for part in parts if "=" not in part]
    named = dict(part.split("=", 1) for part in parts if "=" in part)
    host = named.get("host", positional[0] if positional else "?")
    port = named.get("port", positional[1] if len(positional) > 1 else "?")
    return f"{host}:{port}".replace("\\:", ":")
