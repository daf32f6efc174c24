"""SmarketsClientProtocol: one TCP/TLS connection to the exchange.

Thin glue: bytes go through the Deframer and the Session, payloads go to the
factory, which owns everything that must survive the connection.  Timers run
on the factory's IReactorTime.

A connection's life is one `lifecycle.Phase`, moved only by the table
`lifecycle.NEXT`: each method below takes one event and does what it means
in the phase it left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from smarkets_twisted import errors
from smarkets_twisted.framing import Deframer
from smarkets_twisted.lifecycle import AWAITING_LOGIN, CONNECTED, GONE, NEXT, Event, Phase
from smarkets_twisted.payloads import Payload, enum_name, parse_payload
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.session import Role, Session
from smarkets_twisted.verification import verify_peer

_ETO = seto_pb2.PAYLOAD_ETO

if TYPE_CHECKING:
    from smarkets_twisted.factory import SmarketsClientFactory


@implementer(IHandshakeListener)
class SmarketsClientProtocol(Protocol):
    """Logs in as soon as it connects, or over TLS once the handshake is done (new session or resume), then relays."""

    log = Logger()
    factory: SmarketsClientFactory

    def __init__(self) -> None:
        self.phase = Phase.CONNECTING
        self.session: Session | None = None
        self.deframer: Deframer | None = None
        self._login_waiters: list[Deferred[Any]] = []
        self._logout_waiters: list[Deferred[None]] = []
        #: The exchange's LoginResponse, once it came.
        self._response: Any = None
        #: Why the connection ends (once it does): a drop's error, the exchange's logout, the transport's loss.
        self._reason: Exception | None = None
        self._login_timer: IDelayedCall | None = None
        self._logout_timer: IDelayedCall | None = None
        self._liveness_timer: IDelayedCall | None = None
        #: Whether this connection's login resumes a session (else it starts one).
        self.resuming = False
        #: Fires with the error the connection ended with, once it is lost.
        self.closed: Deferred[Exception] = Deferred()

    @property
    def is_connected(self) -> bool:
        """Whether bytes still go both ways (until we drop the connection or it is lost)."""
        return self.phase in CONNECTED

    def _move(self, event: Event) -> bool:
        """Take ``event`` by the `NEXT` table; one it has no move for is logged and changes nothing."""
        phase = NEXT.get((self.phase, event))
        if phase is None:
            self.log.warn("{event} while {phase}: ignored", event=event.value, phase=self.phase.value)
            return False
        self.phase = phase
        return True

    # Connection events

    def connectionMade(self) -> None:
        factory = self.factory
        settings = factory.config
        now = factory.clock.seconds()
        self._move(Event.CONNECTED)
        verify_peer(self.transport)
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.deframer = Deframer(settings.max_frame_size)
        self.session = Session(
            factory.state,
            Role.CLIENT,
            now=now,
            heartbeat_interval=settings.heartbeat_interval,
            peer_timeout=settings.peer_timeout,
        )
        self.resuming = factory.state.session_id is not None
        if factory.journal is not None:
            factory.journal.event("connected", now)
        self._login_timer = factory.clock.callLater(settings.login_timeout, self._login_timed_out)
        self._schedule_liveness(now)
        if not ISSLTransport.providedBy(self.transport):
            self._verified("connected")

    def handshakeCompleted(self) -> None:
        """Over TLS the login starts here: nothing goes out, nor counts as sent, before the exchange verified."""
        self._verified("TLS handshake done")

    def _verified(self, how: str) -> None:
        if not self._move(Event.VERIFIED):
            return
        session = self.session
        assert session is not None
        settings = self.factory.config
        session.start_login(
            self.factory.clock.seconds(),
            username=settings.username,
            password=settings.password,
            cookie=settings.cookie,
            account_sequence=None if self.resuming else self.factory.account_sequence_to_ask(),
        )
        self.log.info("{how}; {action} as {user}", how=how, action="resuming" if self.resuming else "logging in",
                      user=settings.username)
        if self.phase is Phase.LOGGING_IN_THEN_OUT:  # asked for during the TLS handshake
            session.send_logout(self.factory.clock.seconds())
        self.flush()

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        deframer = self.deframer
        if session is None or deframer is None or not self.is_connected:
            return
        factory = self.factory
        now = factory.clock.seconds()
        journal = factory.journal
        state = session.state
        received = factory.payload_received
        try:
            frames = deframer.feed(data)
            if frames:
                session.last_received = now
            for frame in frames:
                if journal is not None:
                    journal.received(frame, now)
                payload = parse_payload(frame)
                if (
                    payload.eto_payload.seq == state.next_incoming_seq
                    and payload.type != _ETO
                    and session.replay_until is None
                ):
                    # The common case, what Session.receive_payload does for it without
                    # its call and list: an application payload in order, no replay
                    # outstanding.  (tests/test_data_received.py holds them equal.)
                    state.next_incoming_seq += 1
                    received(self, payload)
                else:
                    gap_was_open = session.replay_until is not None
                    for delivered in session.receive_payload(payload, now):
                        self._payload_received(delivered)
                    # Only the general path replays (resend_from) and fills these.
                    if session.unreplayable:
                        factory.sends_lost(session.unreplayable)
                        session.unreplayable.clear()
                    if session.gapfilled or gap_was_open != (session.replay_until is not None):
                        factory.incoming_gap(gap_was_open, session.replay_until is not None, session.gapfilled)
                        session.gapfilled = 0
                if self.phase in GONE:  # (a handler may have closed it)
                    return
            if deframer.error is not None:
                raise deframer.error
        except errors.ProtocolError as e:
            self.log.error("protocol error from the exchange, dropping the connection: {error}", error=e)
            self._drop(e)
            return
        finally:
            self.flush()
            factory.data_processed()

    def connectionLost(self, reason: Failure = Failure(errors.SocketDisconnected())) -> None:  # noqa: B008
        phase = self.phase
        self._move(Event.LOST)
        _cancel(self._login_timer, self._logout_timer, self._liveness_timer)
        if self.deframer is not None and self.deframer.buffered:
            self.log.warn("connection lost in the middle of a frame: {count} bytes discarded",
                          count=self.deframer.buffered)
        error = self._reason = self._reason or _lost(reason)
        if self.factory.journal is not None:
            self.factory.journal.event("disconnected", self.factory.clock.seconds(), str(error))
        if phase in AWAITING_LOGIN:
            self._settle_login(Failure(error))
        waiters, self._logout_waiters = self._logout_waiters, []
        unconfirmed = error if isinstance(error, errors.LogoutUnconfirmed) else errors.LogoutUnconfirmed(
            "connection lost before the exchange confirmed the logout: the session is ended")
        for waiter in waiters:
            if phase is Phase.CONFIRMED:
                waiter.callback(None)
            else:
                waiter.errback(unconfirmed)
        self.factory.protocol_lost(self, error)
        self.closed.callback(error)

    # Sending

    def count_sent(self) -> None:
        """Spend a throttle token for each payload the session sent since the last count."""
        session = self.session
        if session is not None and session.uncounted:
            self.factory.spend(session.uncounted)
            session.uncounted = 0

    def flush(self) -> None:
        """Write whatever the session has queued."""
        session = self.session
        if session is None:
            return
        self.count_sent()
        data = session.data_to_send()
        if data and self.is_connected and self.transport is not None:
            self.transport.write(data)
            if self.factory.journal is not None:
                self.factory.journal.sent(data, self.factory.clock.seconds())

    def send_payload(self, payload: Payload) -> int:
        """Send an application payload now; return its seq."""
        assert self.session is not None
        seq = self.session.send(payload, self.factory.clock.seconds())
        self.flush()
        return seq

    def _drop(self, error: Exception) -> None:
        """Close the connection ourselves, for ``error``: an unanswered login fails with it."""
        phase = self.phase
        if not self._move(Event.DROP):
            return
        if self.phase is Phase.DROPPED:  # (one the exchange is closing keeps the reason it gave)
            self._reason = error
            _cancel(self._login_timer, self._logout_timer, self._liveness_timer)
            if phase in AWAITING_LOGIN:
                self._settle_login(Failure(error))
        if self.transport is not None:
            getattr(self.transport, "abortConnection", self.transport.loseConnection)()

    # Incoming

    def _payload_received(self, payload: Payload) -> None:
        if payload.type != seto_pb2.PAYLOAD_ETO:
            self.factory.payload_received(self, payload)
            return
        eto = payload.eto_payload
        if eto.type == eto_pb2.PAYLOAD_LOGIN_RESPONSE:
            self._logged_in(payload)
        elif eto.type == eto_pb2.PAYLOAD_LOGOUT:
            self._logged_out(payload)
        elif eto.type == eto_pb2.PAYLOAD_PONG:
            self.factory.pings.answered()
        elif eto.type == eto_pb2.PAYLOAD_THROTTLE_EXCEEDED:
            self.log.warn("the exchange says we exceeded its throttle limits")
        self.factory.payload_received(self, payload)

    def _logged_in(self, payload: Payload) -> None:
        if not self._move(Event.LOGIN_RESPONSE):
            return
        _cancel(self._login_timer)
        if self._liveness_timer is not None and self._liveness_timer.active():
            # Heartbeats start now: check sooner than the login-time timer would.
            self._liveness_timer.cancel()
            self._schedule_liveness(self.factory.clock.seconds())
        response = self._response = payload.eto_payload.login_response
        self.log.info("logged in as {email} (account {id})", email=response.email or "?", id=response.id)
        self._settle_login(response)
        self.factory.logged_in(self)

    def _logged_out(self, payload: Payload) -> None:
        logout = payload.eto_payload.logout
        reason = logout.reason if logout.HasField("reason") else None
        name = None if reason is None else enum_name(eto_pb2.LogoutReason, reason)
        refused = self.phase in AWAITING_LOGIN
        if not self._move(Event.CONFIRMATION if reason == eto_pb2.LOGOUT_CONFIRMATION else Event.LOGOUT):
            return
        _cancel(self._login_timer, self._logout_timer)
        if refused:
            # Said once by whoever waits for the login (the service's retry line).
            error: Exception = errors.LoginError(reason, name)
        elif self.phase is Phase.CONFIRMED:
            error = errors.LoggedOut(reason, name)
            self.log.info("logged out")
        else:
            error = errors.LoggedOut(reason, name)
            self.log.warn("the exchange ended the connection: {reason}", reason=errors.logout_words(str(name)))
        self._reason = error
        # The factory hears first: after a refusal for good, the service stops
        # trying before this login's failure counts as an attempt to retry.
        self.factory.logged_out(self, error)
        if refused:
            self._settle_login(Failure(error))
        if self.transport is not None:
            self.transport.loseConnection()

    # Login

    def login(self) -> Deferred[Any]:
        """The outcome of this connection's login: the LoginResponse, or a LoginError."""
        deferred: Deferred[Any] = Deferred()
        if self.phase in AWAITING_LOGIN:
            self._login_waiters.append(deferred)
        elif self._response is not None:
            deferred.callback(self._response)
        else:
            assert self._reason is not None
            deferred.errback(self._reason)
        return deferred

    def _settle_login(self, outcome: Failure | Any) -> None:
        waiters, self._login_waiters = self._login_waiters, []
        for waiter in waiters:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    def _login_timed_out(self) -> None:
        self.log.error("no login response in {seconds} seconds", seconds=self.factory.config.login_timeout)
        self._drop(errors.LoginTimeout())

    # Logout and ping

    def logout(self, timeout: float | None = None) -> Deferred[None]:
        """See `SmarketsClientFactory.logout`."""
        return self.factory.logout(timeout)

    def send_logout(self) -> Deferred[None]:
        """Send a clean logout; fires once the exchange confirmed it and closed.

        Fails with LogoutUnconfirmed when the connection is lost first, or
        dropped after ``logout_timeout`` seconds without a confirmation.
        """
        deferred: Deferred[None] = Deferred(lambda d: self._logout_waiters.remove(d))
        if not self.is_connected:
            deferred.callback(None)
            return deferred
        self._logout_waiters.append(deferred)
        phase = self.phase
        if self._move(Event.LOGOUT_ASKED) and self.phase is not phase:  # the first asked for
            if self.phase is not Phase.LOGOUT_AFTER_HANDSHAKE:  # else it follows the login
                assert self.session is not None
                self.session.send_logout(self.factory.clock.seconds())
                self.flush()
            self._logout_timer = self.factory.clock.callLater(self.factory.config.logout_timeout,
                                                              self._logout_timed_out)
        return deferred

    def _logout_timed_out(self) -> None:
        seconds = self.factory.config.logout_timeout
        self.log.warn("no logout confirmation in {seconds} seconds: closing the connection, the session is ended",
                      seconds=seconds)
        self._drop(errors.LogoutUnconfirmed(f"no logout confirmation in {seconds} seconds: "
                                            "the connection was closed and the session ended"))

    def send_ping(self) -> None:
        """Send a ping now (the factory pairs it with its pong)."""
        assert self.session is not None
        self.session.send_ping(self.factory.clock.seconds())
        self.flush()

    def ping(self, timeout: float | None = None) -> Deferred[float]:
        """See `SmarketsClientFactory.ping`."""
        return self.factory.ping(timeout)

    # Requests: the factory owns them, so that they outlive this connection.

    def order(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """See `SmarketsClientFactory.order`."""
        return self.factory.order(*args, **kwargs)

    def cancel(self, order_id: int, timeout: float | None = None) -> Deferred[Any]:
        return self.factory.cancel(order_id, timeout)

    def cancel_all(self, market_id: int | None = None, timeout: float | None = None) -> Deferred[Any]:
        return self.factory.cancel_all(market_id, timeout)

    def reduce(self, order_id: int, new_quantity: int, timeout: float | None = None) -> Deferred[Any]:
        return self.factory.reduce(order_id, new_quantity, timeout)

    def replace(self, order_id: int, price: int, quantity: int, timeout: float | None = None) -> Deferred[Any]:
        return self.factory.replace(order_id, price, quantity, timeout)

    def subscribe(self, market_id: int, timeout: float | None = None) -> Deferred[Any]:
        return self.factory.subscribe(market_id, timeout)

    def unsubscribe(self, market_id: int, timeout: float | None = None) -> Deferred[Any]:
        return self.factory.unsubscribe(market_id, timeout)

    def settings(self, cancel_all_on_failure: bool, timeout: float | None = None) -> Deferred[Any]:
        return self.factory.settings(cancel_all_on_failure, timeout)

    # Liveness

    def _schedule_liveness(self, now: float) -> None:
        assert self.session is not None
        self._liveness_timer = self.factory.clock.callLater(self.session.next_check(now), self._check_liveness)

    def _check_liveness(self) -> None:
        session = self.session
        assert session is not None
        now = self.factory.clock.seconds()
        if session.peer_silent(now):
            self.log.warn("nothing from the exchange for {seconds} seconds: dropping the connection",
                          seconds=session.peer_timeout)
            self._drop(errors.PeerTimeout(f"peer silent for {session.peer_timeout} seconds"))
            return
        if session.logged_in and session.heartbeat_due(now):
            session.send_heartbeat(now)
            self.flush()
        self._schedule_liveness(now)

    def __repr__(self) -> str:
        return f"<SmarketsClientProtocol {self.phase.value}>"


def _cancel(*timers: IDelayedCall | None) -> None:
    """Stop the timers that are still to run: what they watch for has happened."""
    for timer in timers:
        if timer is not None and timer.active():
            timer.cancel()


def _lost(reason: Failure) -> Exception:
    """The error a lost connection's waiters get: its own when it is ours, else a SocketDisconnected."""
    if isinstance(reason.value, errors.SmarketsError):
        return reason.value
    error = errors.SocketDisconnected(f"connection lost: {reason.getErrorMessage()}")
    error.__cause__ = reason.value
    return error


def with_timeout(deferred: Deferred[Any], timeout: float | None, clock: IReactorTime) -> Deferred[Any]:
    """Fail ``deferred`` with RequestTimeout if it has not fired in ``timeout`` seconds."""
    if timeout is None:
        return deferred

    def timed_out(result: Any, after: float) -> Any:
        raise errors.RequestTimeout(f"no answer in {after} seconds")

    return deferred.addTimeout(timeout, clock, onTimeoutCancel=timed_out)

