"""The exchange's end of one client connection.

`ExchangeProtocol` is thin glue: bytes go through the same `Deframer`,
`parse_payload` and `Session` as on the client, the login is checked against
the accounts and the session registry, and every application payload is
handed to the `Exchange`.  It owns what belongs to a connection: the login
deadline, heartbeats while idle, dropping a silent client, and closing the
connection (and only that one) on input it cannot trust.

It also guards the replay log.  A resume is refused, and a replay request
that reaches below the sent log ends the session, with LOGOUT_UNKNOWN_SESSION
either way, rather than gapfill over what the client never saw: the client
starts a new session and asks for its account events by account sequence.
Every other replay request is answered, but what this connection resent less
than `ConnectionSettings.replay_interval` ago is not resent again (TCP has
delivered it, or the connection is gone), so that a few bytes of requests
cannot make the exchange resend its whole log again and again.

Every payload a client sends counts against its session's throttle
(PROTOCOL.md section 4: "every payload counts"): application payloads in
`Exchange.handle`, the others here.  A ping that finds no token is not
answered with a pong: the first of a run of refused pings gets
throttle_exceeded; heartbeats, gapfills, replay
requests and logouts are counted but always honoured, since refusing them
would break the session rather than slow it down.

Payloads that parse but carry what the schema does not define (an enum
value it does not list, a string that is not UTF-8) are refused as
malformed: see `smarkets_twisted.exchange.validation`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from OpenSSL import SSL
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from smarkets_twisted.errors import DecodeError, ParseError
from smarkets_twisted.exchange.service import Exchange
from smarkets_twisted.exchange.sessions import ExchangeSession
from smarkets_twisted.exchange.validation import check_request
from smarkets_twisted.framing import Deframer
from smarkets_twisted.payloads import Payload, handler_name, parse_payload, session_message
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.session import Role, Session, SessionState


@dataclass(frozen=True)
class ConnectionSettings:
    """Per-connection limits and timers of the exchange.

    :ivar max_frame_size: the largest payload accepted from a client (bytes);
        a client's payloads are small, so 64 KiB is plenty.
    :ivar login_timeout: seconds a new connection has to send a good login.
    :ivar heartbeat_interval: send a heartbeat after this many idle seconds.
    :ivar peer_timeout: log out a client that sent nothing for this long.
    :ivar replay_interval: do not resend, in answer to a replay request, what
        was resent on this connection less than this many seconds ago.
    :ivar slow_consumer_timeout: drop a client whose transport has stayed
        full (it stopped reading) for this long, so that its unread output
        cannot grow without bound; its session can resume later.
    :ivar close_timeout: abort a connection still open this long after we
        closed it (a client that does not read never lets a close finish).
    :ivar frames_per_turn: payloads acted on from one connection before the
        reactor serves the others: a client that floods cannot hold the
        exchange for more than that.
    """

    max_frame_size: int = 64 * 1024
    login_timeout: float = 10.0
    heartbeat_interval: float = 5.0
    peer_timeout: float = 30.0
    replay_interval: float = 5.0
    slow_consumer_timeout: float = 30.0
    close_timeout: float = 10.0
    frames_per_turn: int = 500


#: After the first replay request that resends nothing, such requests are not logged
#: until one resends something: a flood of them would be a flood of lines.
_QUIETER = "; further requests that resend nothing are ignored without a line until one does"


@implementer(IPushProducer, IHandshakeListener)
class ExchangeProtocol(Protocol):
    """One client connection to the simulated exchange.

    It registers as the transport's producer only to learn when the client
    stops reading: market data cannot be paused, so a client that stays
    behind for ``slow_consumer_timeout`` seconds is dropped.
    """

    log = Logger()

    def __init__(self, exchange: Exchange, clock: IReactorTime, settings: ConnectionSettings) -> None:
        self.exchange = exchange
        self.clock = clock
        self.settings = settings
        self.deframer = Deframer(settings.max_frame_size)
        #: The session layer, once the login is accepted.
        self.session: Session | None = None
        #: The exchange session this connection serves, once logged in.
        self.exchange_session: ExchangeSession | None = None
        self._peer = "?"
        self._login_timer: IDelayedCall | None = None
        self._liveness_timer: IDelayedCall | None = None
        self._slow_timer: IDelayedCall | None = None
        self._abort_timer: IDelayedCall | None = None
        self._closing = False
        self._logged_out = False
        self._taken_over = False
        #: Over TLS, whether the handshake has completed.
        self._handshake_done = False
        #: Frames received and not yet acted on; the call that will, if one is due.
        self._frames: deque[bytes] = deque()
        self._next_turn: IDelayedCall | None = None
        self._reading_paused = False
        #: A throttle_exceeded answered the latest refused ping (none since an accepted one).
        self._throttle_told = False
        #: The seqs resent here lately: (first, after the last, when).
        self._last_replay: tuple[int, int, float] | None = None
        #: A replay request that resent nothing was logged since the last resend (the others are not).
        self._nothing_told = False

    def __repr__(self) -> str:
        return f"<ExchangeProtocol peer={self._peer} session={self.exchange_session!r}>"

    # Connection events

    def connectionMade(self) -> None:
        assert self.transport is not None
        peer = self.transport.getPeer()
        # host:port, not the address object's repr, in log lines.
        host, port = getattr(peer, "host", None), getattr(peer, "port", None)
        self._peer = f"{host}:{port}" if host is not None else str(peer)
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        self._login_timer = self.clock.callLater(self.settings.login_timeout, self._login_timed_out)

    def handshakeCompleted(self) -> None:
        self._handshake_done = True

    # IPushProducer: the transport says when the client stops (and starts) reading.

    def pauseProducing(self) -> None:
        if self._slow_timer is None and not self._closing:
            self._slow_timer = self.clock.callLater(self.settings.slow_consumer_timeout, self._too_slow)

    def resumeProducing(self) -> None:
        if self._slow_timer is not None and self._slow_timer.active():
            self._slow_timer.cancel()
        self._slow_timer = None

    def stopProducing(self) -> None:
        self.resumeProducing()

    def _too_slow(self) -> None:
        self._slow_timer = None
        self.log.warn("{username} from {peer} has not read for {seconds} s: dropping the connection",
                      username=self._username(), peer=self._peer, seconds=self.settings.slow_consumer_timeout)
        self._closing = True
        self._cancel_timers()
        # loseConnection would wait for the unread output to drain: abort.
        self.transport.abortConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._frames.extend(self.deframer.feed(data))
        except DecodeError as error:
            self._drop_for(error)
            return
        if self._next_turn is None:
            self._process()

    def _process(self) -> None:
        """Act on the frames received, at most ``frames_per_turn`` of them before
        letting the reactor serve other connections (reading from this one is
        paused meanwhile, so that its backlog stays one read long)."""
        self._next_turn = None
        frames = self._frames
        for _ in range(self.settings.frames_per_turn):
            if not frames or self._closing:
                break
            if not self._act_on(frames.popleft()):
                return
        if self._closing:
            frames.clear()
            return
        transport = self.transport
        assert transport is not None
        if frames:
            if not self._reading_paused:
                self._reading_paused = True
                transport.pauseProducing()  # type: ignore[attr-defined]
            self._next_turn = self.clock.callLater(0, self._process)
            return
        if self._reading_paused:
            self._reading_paused = False
            transport.resumeProducing()  # type: ignore[attr-defined]
        if self.deframer.error is not None:
            # The frames before a bad header were processed; now drop the connection.
            self._drop_for(self.deframer.error)

    def _act_on(self, frame: bytes) -> bool:
        """Parse one frame and act on it; False when the connection is being dropped for it."""
        try:
            payload = parse_payload(frame)
            check_request(payload)
        except ParseError as error:
            self._drop_for(error)
            return False
        try:
            if self.session is None:
                self._login(payload)
            else:
                self._received(payload)
        except Exception:
            # A bug, or input no check foresaw: lose this connection, not the exchange.
            self.log.failure("dropping connection of {username} from {peer}: error processing {name}",
                             username=self._username(), peer=self._peer, name=handler_name(payload))
            self._close()
            return False
        return True

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self._closing = True
        self._cancel_timers()
        if self._abort_timer is not None and self._abort_timer.active():
            self._abort_timer.cancel()
        self._abort_timer = None
        session = self.exchange_session
        if ISSLTransport.providedBy(self.transport) and not self._handshake_done:
            # A client refusing the certificate aborts the connection, or sends an alert.
            why = _ssl_reason(reason) if reason.check(SSL.Error) else "the client closed the connection"
            self.log.info("TLS handshake with {peer} failed: {why}", peer=self._peer, why=why)
        if session is None or self._taken_over:
            return
        self.exchange.registry.detach(session, self)
        if not self._logged_out:
            self.log.info(
                "connection of {username} from {peer} lost: {reason}",
                username=session.account.username,
                peer=self._peer,
                reason=reason.getErrorMessage(),
            )
            self.exchange.session_failed(session)

    # Used by the exchange (the registry's Connection interface)

    def send_payload(self, payload: Payload) -> int:
        """Number, log and write one payload on this connection; return its seq."""
        assert self.session is not None, "payloads are only sent once logged in"
        seq = self.session.send(payload, self.clock.seconds())
        self._flush()
        return seq

    def close(self) -> None:
        """Close this connection (the exchange could not serve it); its session waits for a resume."""
        self._close()

    def drop(self) -> None:
        """Another connection logged in to this session: close this one quietly."""
        self.log.info("session of {username} taken over by a new connection; dropping {peer}",
                      username=self._username(), peer=self._peer)
        self._taken_over = True
        self._close()

    # Login

    def _login(self, payload: Payload) -> None:
        if payload.type != seto_pb2.PAYLOAD_LOGIN:
            self._refuse(eto_pb2.LOGOUT_LOGIN_NOT_FIRST_SEQ, f"first payload was {handler_name(payload)}, not a login")
            return
        credentials = payload.login
        account = None
        if credentials.HasField("username") and credentials.HasField("password"):
            account = self.exchange.authenticate(credentials.username, credentials.password)
        if account is None:
            self._refuse(eto_pb2.LOGOUT_UNAUTHORISED, f"bad credentials for {credentials.username!r}")
            return
        eto = payload.eto_payload
        registry = self.exchange.registry
        if eto.HasField("login"):
            session = registry.find(eto.login.session)
            if session is None or session.account is not account:
                self._refuse(eto_pb2.LOGOUT_UNKNOWN_SESSION, f"{account.username} asked to resume an unknown session")
                return
            if not self.exchange.can_resume(session):
                registry.end(session)
                self._refuse(
                    eto_pb2.LOGOUT_UNKNOWN_SESSION,
                    f"{account.username} asked to resume a session whose sent log overflowed while detached",
                )
                return
            resumed = True
        elif eto.seq != 1:
            self._refuse(eto_pb2.LOGOUT_LOGIN_NOT_FIRST_SEQ, f"new session login at seq {eto.seq}, not 1")
            return
        else:
            created = registry.create(account)
            if created is None:
                self._refuse(
                    eto_pb2.LOGOUT_SERVICE_TEMPORARILY_UNAVAILABLE,
                    f"{account.username} already has {registry.sessions_per_account} connected sessions",
                )
                return
            session, resumed = created, False
        self._accept(session, payload, resumed)

    def _accept(self, exchange_session: ExchangeSession, login: Payload, resumed: bool) -> None:
        if self._login_timer is not None and self._login_timer.active():
            self._login_timer.cancel()
        self._login_timer = None
        now = self.clock.seconds()
        previous = self.exchange.registry.attach(exchange_session, self)
        if previous is not None:
            previous.drop()
        self.exchange_session = exchange_session
        self.session = Session(
            exchange_session.state,
            Role.EXCHANGE,
            now=now,
            heartbeat_interval=self.settings.heartbeat_interval,
            peer_timeout=self.settings.peer_timeout,
        )
        account = exchange_session.account
        self.session.accept_login(login, now, email=account.email, account_id=account.account_id)
        self._flush()
        self.log.info(
            "{username} logged in from {peer} ({how})",
            username=account.username,
            peer=self._peer,
            how="resumed" if resumed else "new session",
        )
        self.exchange.session_started(exchange_session, login.login)
        self._schedule_liveness()

    def _refuse(self, reason: int, why: str) -> None:
        """Answer a failed login with a logout at seq 1, then close."""
        self.log.info("login from {peer} refused ({reason}): {why}",
                      peer=self._peer, reason=eto_pb2.LogoutReason.Name(reason), why=why)
        now = self.clock.seconds()
        refusal = Session(SessionState(sent_log_size=1), Role.EXCHANGE, now=now)
        refusal.send_logout(now, reason)
        self.transport.write(refusal.data_to_send())  # type: ignore[union-attr]
        self._close()

    def _login_timed_out(self) -> None:
        self._login_timer = None
        self._refuse(eto_pb2.LOGOUT_LOGIN_TIMEOUT, f"no login within {self.settings.login_timeout}s")

    # After login

    def _received(self, payload: Payload) -> None:
        session = self.session
        exchange_session = self.exchange_session
        assert session is not None and exchange_session is not None
        now = self.clock.seconds()
        if payload.eto_payload.seq >= session.state.next_incoming_seq and payload.type == seto_pb2.PAYLOAD_ETO:
            # A session payload that will be processed: count it.
            if payload.eto_payload.type == eto_pb2.PAYLOAD_REPLAY:
                exchange_session.throttle.spend(1, now)
                start = payload.eto_payload.replay.seq
                if 1 <= start < session.state.sent.first_seq:
                    self._history_lost(session, exchange_session, start)
                    return
                payload = self._coalesce_replay(payload, session, exchange_session, now)
            elif payload.eto_payload.type == eto_pb2.PAYLOAD_PING:
                if self.exchange.admit(exchange_session, "ping"):
                    self._throttle_told = False
                else:
                    # Its seq is consumed; the answer is one throttle_exceeded per
                    # run of refusals, so that a flood of pings is not answered in kind.
                    payload = _gapfill(payload.eto_payload.seq)
                    if not self._throttle_told:
                        self._throttle_told = True
                        session.send(session_message(eto_pb2.PAYLOAD_THROTTLE_EXCEEDED), now)
            else:
                exchange_session.throttle.spend(1, now)
        for delivered in session.receive_payload(payload, now):
            if delivered.type == seto_pb2.PAYLOAD_ETO:
                if delivered.eto_payload.type == eto_pb2.PAYLOAD_LOGOUT:
                    self._client_logged_out(session, exchange_session)
                    return
            elif delivered.type == seto_pb2.PAYLOAD_LOGIN:
                self.log.warn("{username} sent a login on a logged-in connection: ignored",
                              username=exchange_session.account.username)
            else:
                self._handle(exchange_session, delivered)
        self._flush()

    # Guarding the replay log

    def _coalesce_replay(
        self, payload: Payload, session: Session, exchange_session: ExchangeSession, now: float
    ) -> Payload:
        """The replay request to answer: from where this connection's recent resend ended.

        What was resent here less than ``replay_interval`` ago is not resent
        again; everything else asked for is.  A request that resends nothing
        (from 0, from beyond the last seq) does not count as a resend.
        """
        start = payload.eto_payload.replay.seq
        end = session.state.next_outgoing_seq
        last = self._last_replay
        if not 1 <= start < end:
            if not self._nothing_told:
                self.log.warn(
                    "{username} asked for a replay from {start}, but the seqs sent are 1 to {last}: ignored" + _QUIETER,
                    username=exchange_session.account.username,
                    start=start,
                    last=end - 1,
                )
                self._nothing_told = True
            return _gapfill(payload.eto_payload.seq)
        if last is not None and last[0] <= start < last[1] and now - last[2] < self.settings.replay_interval:
            ignored = last[1] >= end
            if not (ignored and self._nothing_told):
                self.log.warn(
                    "{username} asked again for a replay from {start} within {interval}s: {what}",
                    username=exchange_session.account.username,
                    start=start,
                    interval=self.settings.replay_interval,
                    what="ignored, all of it was just resent" + _QUIETER if ignored else f"resending from {last[1]}",
                )
            if ignored:
                self._nothing_told = True
                return _gapfill(payload.eto_payload.seq)
            start = last[1]
            payload.eto_payload.replay.seq = start
            self._last_replay = (last[0], end, now)
        else:
            self._last_replay = (start, end, now)
        self._nothing_told = False
        return payload

    def _history_lost(self, session: Session, exchange_session: ExchangeSession, start: int) -> None:
        """The client asked for payloads the sent log no longer holds: end the session."""
        self.log.warn(
            "{username} asked for a replay from {start}, the sent log starts at {first}: ending the session",
            username=exchange_session.account.username,
            start=start,
            first=session.state.sent.first_seq,
        )
        session.send_logout(self.clock.seconds(), eto_pb2.LOGOUT_UNKNOWN_SESSION)
        self._flush()
        self.exchange.registry.end(exchange_session)
        self._close()

    def _handle(self, exchange_session: ExchangeSession, payload: Payload) -> None:
        try:
            self.exchange.handle(exchange_session, payload)
        except Exception:
            self.log.failure("exchange failed to handle {name} from {username}",
                             name=handler_name(payload), username=exchange_session.account.username)

    def _client_logged_out(self, session: Session, exchange_session: ExchangeSession) -> None:
        self.log.info("{username} logged out", username=exchange_session.account.username)
        self._logged_out = True
        session.send_logout(self.clock.seconds(), eto_pb2.LOGOUT_CONFIRMATION)
        self._flush()
        self.exchange.registry.end(exchange_session)
        self._close()

    # Liveness

    def _schedule_liveness(self) -> None:
        assert self.session is not None
        delay = self.session.next_check(self.clock.seconds())
        self._liveness_timer = self.clock.callLater(delay, self._check_liveness)

    def _check_liveness(self) -> None:
        self._liveness_timer = None
        session = self.session
        assert session is not None
        now = self.clock.seconds()
        if session.peer_silent(now):
            self.log.info("{username} at {peer} silent for {timeout}s: logging out",
                          username=self._username(), peer=self._peer, timeout=self.settings.peer_timeout)
            session.send_logout(now, eto_pb2.LOGOUT_HEARTBEAT_TIMEOUT)
            self._flush()
            self._close()
            return
        if session.heartbeat_due(now):
            session.send_heartbeat(now)
            self._flush()
        self._schedule_liveness()

    # Plumbing

    def _flush(self) -> None:
        if self.session is not None:
            data = self.session.data_to_send()
            if data:
                self.transport.write(data)  # type: ignore[union-attr]

    def _drop_for(self, error: Exception) -> None:
        self.log.warn("dropping connection of {username} from {peer}: {error}",
                      username=self._username(), peer=self._peer, error=str(error))
        self._close()

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._cancel_timers()
        self.transport.loseConnection()  # type: ignore[union-attr]
        # loseConnection waits for unread output to drain; a client that never
        # reads would keep the connection (and its session) forever.
        self._abort_timer = self.clock.callLater(self.settings.close_timeout, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        self.log.warn("connection of {username} from {peer} did not close in {seconds} s: aborting",
                      username=self._username(), peer=self._peer, seconds=self.settings.close_timeout)
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _cancel_timers(self) -> None:
        for timer in (self._login_timer, self._liveness_timer, self._slow_timer, self._next_turn):
            if timer is not None and timer.active():
                timer.cancel()
        self._login_timer = None
        self._liveness_timer = None
        self._slow_timer = None
        self._next_turn = None

    def _username(self) -> str:
        return self.exchange_session.account.username if self.exchange_session is not None else "(not logged in)"


def _gapfill(seq: int) -> Payload:
    """A gapfill at ``seq``: what an ignored replay request counts as."""
    payload = session_message(eto_pb2.PAYLOAD_GAPFILL)
    payload.eto_payload.seq = seq
    return payload


def _ssl_reason(reason: Failure) -> str:
    """OpenSSL's last reason in words (``tlsv1 alert bad certificate``), not its list of tuples."""
    args = getattr(reason.value, "args", ())
    queue = args[0] if args else None
    if isinstance(queue, list) and queue and isinstance(queue[-1], tuple) and queue[-1]:
        return str(queue[-1][-1])
    return reason.getErrorMessage()


class ExchangeFactory(Factory):
    """Builds an `ExchangeProtocol` for each connection to one `Exchange`."""

    def __init__(
        self, exchange: Exchange, clock: IReactorTime, settings: ConnectionSettings | None = None
    ) -> None:
        self.exchange = exchange
        self.clock = clock
        self.settings = settings if settings is not None else ConnectionSettings()

    def buildProtocol(self, addr: IAddress | None) -> ExchangeProtocol:
        protocol = ExchangeProtocol(self.exchange, self.clock, self.settings)
        protocol.factory = self
        return protocol
