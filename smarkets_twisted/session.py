"""The session layer (PROTOCOL.md sections 4-6), sans-io.

One `Session` serves one connection, at either end: the client now, the
simulated exchange too.  It never touches a socket or a reactor: the caller
hands it received frames and the current time, takes the bytes it wants
written from `Session.data_to_send`, and dispatches the payloads it returns.
What must outlive a connection (session id, sequence numbers, the log of what
was sent) is a plain `SessionState` that the next connection's Session takes
over.
"""

from __future__ import annotations

import enum

from twisted.logger import Logger

from smarkets_twisted.errors import BadLoginResponse, SequenceError
from smarkets_twisted.framing import encode_frame
from smarkets_twisted.payloads import (
    Payload,
    handler_name,
    login_message,
    parse_payload,
    session_message,
)
from smarkets_twisted.proto import eto_pb2, seto_pb2

#: How many sent payloads are kept to answer replay requests.
DEFAULT_SENT_LOG_SIZE = 100_000

#: Send a heartbeat when nothing has been sent for this long (seconds).
DEFAULT_HEARTBEAT_INTERVAL = 10.0

#: Consider the peer dead when nothing has arrived for this long (seconds).
DEFAULT_PEER_TIMEOUT = 30.0

#: Ask again for a replay still not filled after this long (seconds).
DEFAULT_REPLAY_RETRY = 10.0

#: The largest seq a uint64 holds.
_MAX_SEQ = 2**64 - 1

#: No usable seq reaches this: a session numbering a million payloads a second
#: would take 290 000 years.  A peer naming one is corrupt, and following it
#: would leave no seqs to number the session's next payloads with.
SEQ_LIMIT = 2**63

_ETO = seto_pb2.PAYLOAD_ETO

#: Session payloads that a replay replaces with a gapfill.
_GAPFILLED_ETO_TYPES = frozenset(
    {
        eto_pb2.PAYLOAD_LOGIN,
        eto_pb2.PAYLOAD_LOGIN_RESPONSE,
        eto_pb2.PAYLOAD_REPLAY,
        eto_pb2.PAYLOAD_HEARTBEAT,
        eto_pb2.PAYLOAD_GAPFILL,
    }
)


def _gapfill(seq: int) -> bytes:
    payload = session_message(eto_pb2.PAYLOAD_GAPFILL)
    payload.eto_payload.seq = seq
    return payload.SerializeToString()


class Role(enum.Enum):
    """Which end of the connection a Session serves."""

    CLIENT = "client"
    EXCHANGE = "exchange"


class SentLog:
    """The last `limit` payloads sent, by seq, to answer replay requests.

    A dict keyed by seq: appending, dropping the oldest and looking one up
    cost the same however many are held (a replay of the whole log is linear).
    """

    def __init__(self, limit: int = DEFAULT_SENT_LOG_SIZE) -> None:
        if limit < 1:
            raise ValueError("the sent log must hold at least one payload")
        self.limit = limit
        self._payloads: dict[int, bytes] = {}
        self._next_seq = 1
        #: Every seq from here on was really sent (held or since dropped); a jump moves it.
        self.floor = 1

    @property
    def next_seq(self) -> int:
        """The seq after the newest one logged."""
        return self._next_seq

    @property
    def first_seq(self) -> int:
        """The oldest seq still held (equal to the next seq when empty)."""
        return self._next_seq - len(self._payloads)

    def append(self, seq: int, data: bytes) -> None:
        payloads = self._payloads
        if seq != self._next_seq:
            # A jump (a `reset` above what was sent): nothing before it can be replayed.
            payloads.clear()
            self.floor = seq
        elif len(payloads) == self.limit:
            del payloads[seq - self.limit]
        payloads[seq] = data
        self._next_seq = seq + 1

    def get(self, seq: int) -> bytes | None:
        return self._payloads.get(seq)

    def __len__(self) -> int:
        return len(self._payloads)


class SessionState:
    """What survives a dropped connection: session id, seqs and the sent log."""

    def __init__(self, sent_log_size: int = DEFAULT_SENT_LOG_SIZE) -> None:
        self.session_id: str | None = None
        self.next_outgoing_seq = 1
        self.next_incoming_seq = 1
        self.sent = SentLog(sent_log_size)

    def reset(self) -> None:
        """Forget the session: the next login starts a new one at seq 1."""
        self.session_id = None
        self.next_outgoing_seq = 1
        self.next_incoming_seq = 1
        self.sent = SentLog(self.sent.limit)

    def __repr__(self) -> str:
        held = "yes" if self.session_id is not None else "no"
        return (
            f"<SessionState session={held} next_outgoing_seq={self.next_outgoing_seq}"
            f" next_incoming_seq={self.next_incoming_seq} logged={len(self.sent)}>"
        )


class Session:
    """Sequence accounting, replay, gapfill, heartbeats and login for one connection."""

    log = Logger()

    def __init__(
        self,
        state: SessionState,
        role: Role,
        *,
        now: float,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        peer_timeout: float = DEFAULT_PEER_TIMEOUT,
        replay_retry: float = DEFAULT_REPLAY_RETRY,
    ) -> None:
        self.state = state
        self.role = role
        self.heartbeat_interval = heartbeat_interval
        self.peer_timeout = peer_timeout
        self.last_sent = now
        self.last_received = now
        #: True between a login response (or an accepted login) and a logout.
        self.logged_in = False
        #: While a replay we asked for is outstanding: the highest seq seen above the gap.
        self.replay_until: int | None = None
        self.replay_retry = replay_retry
        #: Seqs the peer asked for again after they left the sent log: gapfilled,
        #: so whatever they carried never reaches the peer.  The caller drains it.
        self.unreplayable: list[range] = []
        #: Payloads sent or resent since the caller last took this count: the
        #: exchange's throttle counts every one.  The caller drains it.
        self.uncounted = 0
        #: Gapfills taken in order: seqs whose payload the peer did not resend.
        #: The caller drains it.
        self.gapfilled = 0
        self._replay_asked_at = now
        self._out: list[bytes] = []

    # Output

    def data_to_send(self) -> bytes:
        """Take every byte queued for the peer since the last call."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def send(self, payload: Payload, now: float) -> int:
        """Number, log and queue one payload; return the seq it was given."""
        state = self.state
        seq = state.next_outgoing_seq
        if seq > _MAX_SEQ:
            raise SequenceError(f"outgoing seq {seq} does not fit in a uint64")
        eto = payload.eto_payload
        eto.seq = seq
        if self.role is Role.EXCHANGE:
            # As the production server does: is_replay written out, false.
            eto.is_replay = False
        data = payload.SerializeToString()
        # A payload that a replay replaces is logged as its gapfill, so that the
        # log (which outlives the connection) never holds a password or token.
        state.sent.append(seq, _gapfill(seq) if self._replaced_by_gapfill(payload) else data)
        state.next_outgoing_seq = seq + 1
        self._out.append(encode_frame(data))
        self.uncounted += 1
        self.last_sent = now
        return seq

    def send_heartbeat(self, now: float) -> int:
        return self.send(session_message(eto_pb2.PAYLOAD_HEARTBEAT), now)

    def send_ping(self, now: float) -> int:
        return self.send(session_message(eto_pb2.PAYLOAD_PING), now)

    def send_logout(self, now: float, reason: int = eto_pb2.LOGOUT_NONE) -> int:
        """Send a logout: LOGOUT_NONE for a client's clean logout (as the reference
        client writes it), a reason from the exchange."""
        payload = session_message(eto_pb2.PAYLOAD_LOGOUT)
        payload.eto_payload.logout.reason = reason  # type: ignore[assignment]
        self.logged_in = False
        return self.send(payload, now)

    def _send_replay_request(self, seq: int, now: float) -> None:
        payload = session_message(eto_pb2.PAYLOAD_REPLAY)
        payload.eto_payload.replay.seq = seq
        self.log.info("gap in incoming seqs: asking for a replay from {seq}", seq=seq)
        self.send(payload, now)

    # Login

    def start_login(
        self,
        now: float,
        *,
        username: str | None = None,
        password: str | None = None,
        cookie: bytes | None = None,
        account_sequence: int | None = None,
    ) -> int:
        """Client: send the login, resuming the session the state holds, if any."""
        state = self.state
        if state.session_id is None:
            state.reset()
        payload = login_message(username, password, cookie, account_sequence, state.session_id)
        return self.send(payload, now)

    def accept_login(
        self, login: Payload, now: float, *, email: str | None = None, account_id: int | None = None
    ) -> None:
        """Exchange: answer an authenticated login for the session in ``state``.

        The caller has checked the credentials and found (or created) the
        state.  `reset` tells the client the seq we expect next, so that it
        resends whatever we missed; our login_response goes at our own next
        seq, and the client asks for a replay if that leaves it a gap.
        """
        state = self.state
        if login.eto_payload.seq == state.next_incoming_seq:
            state.next_incoming_seq += 1
        self.last_received = now
        response = session_message(eto_pb2.PAYLOAD_LOGIN_RESPONSE)
        body = response.eto_payload.login_response
        assert state.session_id is not None, "accept_login needs a session id in the state"
        body.session = state.session_id
        body.reset = state.next_incoming_seq
        if email is not None:
            body.email = email
        if account_id is not None:
            body.id = account_id
        self.logged_in = True
        self.send(response, now)

    def _login_response(self, payload: Payload, now: float) -> None:
        state = self.state
        response = payload.eto_payload.login_response
        if not response.session:
            raise BadLoginResponse("login_response without a session id")
        if response.HasField("reset") and not 1 <= response.reset < SEQ_LIMIT:
            raise BadLoginResponse(f"login_response with an unusable reset {response.reset}")
        if payload.eto_payload.seq >= SEQ_LIMIT:
            raise BadLoginResponse(f"login_response at an unusable seq {payload.eto_payload.seq}")
        state.session_id = response.session
        self.logged_in = True
        if response.HasField("reset"):
            if response.reset < state.next_outgoing_seq:
                self.log.info(
                    "exchange expects seq {reset}, we are at {next}: resending",
                    reset=response.reset,
                    next=state.next_outgoing_seq,
                )
                self.resend_from(response.reset, now)
            else:
                state.next_outgoing_seq = response.reset

    # Input

    def receive(self, frame: bytes, now: float) -> list[Payload]:
        """Take one frame; return the payloads to deliver, in seq order.

        Raises ParseError (and changes nothing) when the frame is malformed.
        """
        return self.receive_payload(parse_payload(frame), now)

    def receive_payload(self, payload: Payload, now: float) -> list[Payload]:
        """As `receive`, for a payload already parsed."""
        self.last_received = now
        state = self.state
        eto = payload.eto_payload
        seq = eto.seq
        expected = state.next_incoming_seq
        is_session = payload.type == _ETO
        eto_type = eto.type if is_session else eto_pb2.PAYLOAD_NONE

        if seq == expected:
            state.next_incoming_seq = seq + 1
            if self.replay_until is not None and seq >= self.replay_until:
                self.replay_until = None
            if not is_session:
                return [payload]
            return self._session_payload(payload, eto_type, now)

        if seq < expected:
            if eto_type == eto_pb2.PAYLOAD_LOGOUT and not eto.is_replay:
                # A refused login answers at seq 1 whatever we expected.
                self.logged_in = False
                return [payload]
            if not eto.is_replay:
                self.log.warn(
                    "seq {seq} below the expected {expected} without is_replay: {type} ignored",
                    seq=seq,
                    expected=expected,
                    type=handler_name(payload),
                )
            return []

        # A gap: ask once for everything from `expected`, process nothing out of order.
        login_response = eto_type == eto_pb2.PAYLOAD_LOGIN_RESPONSE and self.role is Role.CLIENT
        if login_response:
            # The session is up even though earlier payloads are still to come.
            # Take its reset first (resending what the exchange missed), so that
            # our replay request goes out at the seq the exchange expects next.
            self._login_response(payload, now)
        if self.replay_until is None or now - self._replay_asked_at >= self.replay_retry:
            # First ask, or the answer never came (a peer may drop a request): ask again.
            self.replay_until = seq
            self._replay_asked_at = now
            self._send_replay_request(expected, now)
        elif seq > self.replay_until:
            self.replay_until = seq
        if login_response:
            return [payload]
        if eto_type == eto_pb2.PAYLOAD_REPLAY:
            # Answer the peer's replay request now: both sides may have gaps.
            self.resend_from(eto.replay.seq, now)
        elif eto_type == eto_pb2.PAYLOAD_LOGOUT:
            self.logged_in = False
            return [payload]
        return []

    def _session_payload(self, payload: Payload, eto_type: int, now: float) -> list[Payload]:
        eto = payload.eto_payload
        if eto_type == eto_pb2.PAYLOAD_GAPFILL:
            self.gapfilled += 1
            return []
        if eto_type == eto_pb2.PAYLOAD_HEARTBEAT:
            if self.role is Role.CLIENT and not eto.is_replay:
                self.send_heartbeat(now)
        elif eto_type == eto_pb2.PAYLOAD_PING:
            # Even when replayed: a ping is processed (here) once, and one that
            # arrived above a gap was not answered then.
            self.send(session_message(eto_pb2.PAYLOAD_PONG), now)
        elif eto_type == eto_pb2.PAYLOAD_REPLAY:
            self.resend_from(eto.replay.seq, now)
        elif eto_type == eto_pb2.PAYLOAD_LOGIN_RESPONSE:
            if self.role is Role.CLIENT:
                self._login_response(payload, now)
        elif eto_type == eto_pb2.PAYLOAD_LOGOUT:
            self.logged_in = False
        return [payload]

    # Replay

    def resend_from(self, start: int, now: float) -> None:
        """Resend everything sent from ``start`` on, with is_replay set.

        Login, login_response, replay and heartbeat payloads, and any payload
        no longer in the bounded log, are replaced by a gapfill at their seq.
        """
        state = self.state
        end = state.next_outgoing_seq
        if start < 1 or start >= end:
            self.log.warn(
                "replay requested from {start}, we have sent up to {last}: nothing to resend", start=start, last=end - 1
            )
            return
        if start < state.sent.floor or state.sent.next_seq != end:
            # The numbering jumped (a `reset` above what we sent): the seqs it skipped
            # were never sent, and the peer said it had the rest.  Gapfilling them
            # one by one could mean 2**64 payloads.
            raise SequenceError(f"replay requested from {start}, across seqs a reset skipped")
        first_held = state.sent.first_seq
        if start < first_held:
            self.unreplayable.append(range(start, first_held))
            self.log.warn(
                "replay from {start} reaches past the sent log (oldest {first}): gapfilling {count} payloads",
                start=start,
                first=first_held,
                count=first_held - start,
            )
        for seq in range(start, end):
            data = state.sent.get(seq)
            payload = Payload.FromString(data) if data is not None else None
            if payload is None or self._replaced_by_gapfill(payload):
                payload = session_message(eto_pb2.PAYLOAD_GAPFILL)
                payload.eto_payload.seq = seq
            payload.eto_payload.is_replay = True
            self._out.append(encode_frame(payload.SerializeToString()))
        self.uncounted += end - start
        self.last_sent = now

    @staticmethod
    def _replaced_by_gapfill(payload: Payload) -> bool:
        if payload.type == seto_pb2.PAYLOAD_LOGIN:
            return True
        return payload.type == seto_pb2.PAYLOAD_ETO and payload.eto_payload.type in _GAPFILLED_ETO_TYPES

    # Liveness

    def heartbeat_due(self, now: float) -> bool:
        """True when nothing has been sent for a heartbeat interval."""
        return now >= self.last_sent + self.heartbeat_interval

    def peer_silent(self, now: float) -> bool:
        """True when the peer has sent nothing for the peer timeout."""
        return now >= self.last_received + self.peer_timeout

    def next_check(self, now: float) -> float:
        """Seconds until a heartbeat may fall due (once logged in) or the peer may time out.

        Computed from the same deadlines as `heartbeat_due` and `peer_silent`,
        so that 0 always means one of them is true: a timer that trusts it
        cannot spin at one instant because of float rounding.
        """
        deadline = self.last_received + self.peer_timeout
        if self.logged_in:
            # Heartbeats start with the session; until then only silence matters.
            deadline = min(deadline, self.last_sent + self.heartbeat_interval)
        return max(0.0, deadline - now)
