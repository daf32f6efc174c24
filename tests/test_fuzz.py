"""No byte sequence makes the wire core raise anything but a SmarketsError.

Random and mutated bytes go through Deframer → parse_payload → Session, at
either end; every exception must be a SmarketsError subclass (the caller
then drops the connection).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.errors import SmarketsError
from smarkets_twisted.framing import Deframer, encode_frame
from smarkets_twisted.payloads import Payload, application_message, login_message, session_message
from smarkets_twisted.proto import eto_pb2
from smarkets_twisted.session import Role, Session, SessionState

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

U64 = 2**64 - 1
seqs = st.one_of(st.integers(0, 12), st.integers(0, U64))


def _session(kind: str, value: int) -> Payload:
    eto_type = getattr(eto_pb2, kind)
    payload = session_message(eto_type)
    if eto_type == eto_pb2.PAYLOAD_REPLAY:
        payload.eto_payload.replay.seq = value
    elif eto_type == eto_pb2.PAYLOAD_LOGIN_RESPONSE:
        payload.eto_payload.login_response.session = "s"
        payload.eto_payload.login_response.reset = value
    elif eto_type == eto_pb2.PAYLOAD_LOGOUT:
        payload.eto_payload.logout.reason = 1 + value % 10  # type: ignore[assignment]
    return payload


session_payloads = st.builds(
    _session,
    st.sampled_from(
        [
            "PAYLOAD_PING",
            "PAYLOAD_PONG",
            "PAYLOAD_GAPFILL",
            "PAYLOAD_HEARTBEAT",
            "PAYLOAD_REPLAY",
            "PAYLOAD_LOGIN_RESPONSE",
            "PAYLOAD_LOGOUT",
            "PAYLOAD_THROTTLE_EXCEEDED",
        ]
    ),
    seqs,
)
app_payloads = st.one_of(
    st.builds(lambda m: application_message("market_subscribe", market_id=m), st.integers(0, 2**32 - 1)),
    st.builds(lambda s, o: application_message("order_accepted", seq=s, order_id=o), seqs, seqs),
    st.builds(lambda: login_message("user", "pass", session="s")),
    st.builds(lambda: application_message("price_feed_subscribe")),
)


@st.composite
def payload_streams(draw: st.DrawFn) -> list[bytes]:
    """Valid payloads with plausible or hostile seqs, is_replay flags and fields."""
    out = []
    for _ in range(draw(st.integers(0, 25))):
        payload = draw(st.one_of(session_payloads, app_payloads))
        payload.eto_payload.seq = draw(seqs)
        if draw(st.booleans()):
            payload.eto_payload.is_replay = True
        out.append(payload.SerializeToString())
    return out


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip" and buf:
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] ^= draw(st.integers(1, 255))
        elif op == "insert":
            i = draw(st.integers(0, len(buf)))
            buf[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and buf:
            i = draw(st.integers(0, len(buf) - 1))
            del buf[i : i + draw(st.integers(1, 4))]
        elif op == "truncate" and buf:
            del buf[draw(st.integers(0, len(buf) - 1)) :]
    return bytes(buf)


class Wire:
    """One end: a Deframer feeding a Session, as a protocol would."""

    def __init__(self, role: Role, logged_in: bool) -> None:
        state = SessionState(sent_log_size=8)
        state.session_id = "s"
        self.session = Session(state, role, now=0.0)
        self.session.logged_in = logged_in
        self.deframer = Deframer(max_frame_size=4096)
        self.now = 0.0

    def feed(self, chunk: bytes) -> None:
        self.now += 1.0
        for frame in self.deframer.feed(chunk):
            self.session.receive(frame, self.now)
            # Whatever the session wants sent must itself be well-formed.
            Deframer().feed(self.session.data_to_send())
        # The liveness calls take any time.
        self.session.next_check(self.now)
        self.session.heartbeat_due(self.now)
        self.session.peer_silent(self.now)


def run(wire: Wire, chunks: list[bytes]) -> None:
    for chunk in chunks:
        try:
            wire.feed(chunk)
        except SmarketsError:
            return  # the protocol drops the connection here


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    out, start = [], 0
    for point in [*points, len(data)]:
        out.append(data[start:point])
        start = point
    return out


class FuzzTests(SynchronousTestCase):
    @FUZZ
    @given(role=st.sampled_from(list(Role)), chunks=st.lists(st.binary(max_size=64), max_size=20))
    def test_random_bytes(self, role: Role, chunks: list[bytes]) -> None:
        run(Wire(role, logged_in=False), chunks)

    @FUZZ
    @given(role=st.sampled_from(list(Role)), frames=st.lists(st.binary(max_size=40), max_size=20))
    def test_random_payloads_in_valid_frames(self, role: Role, frames: list[bytes]) -> None:
        run(Wire(role, logged_in=True), [encode_frame(f) for f in frames])

    @FUZZ
    @given(role=st.sampled_from(list(Role)), stream=payload_streams())
    def test_valid_payloads_with_hostile_numbers(self, role: Role, stream: list[bytes]) -> None:
        wire = Wire(role, logged_in=True)
        run(wire, [encode_frame(p) for p in stream])
        # Replies included: the session keeps working afterwards or fails typed.
        try:
            wire.session.send_heartbeat(wire.now)
            wire.session.send(application_message("market_subscribe", market_id=1), wire.now)
        except SmarketsError:
            pass

    @FUZZ
    @given(role=st.sampled_from(list(Role)), stream=payload_streams(), data=st.data())
    def test_mutated_frames(self, role: Role, stream: list[bytes], data: st.DataObject) -> None:
        wire_bytes = b"".join(encode_frame(p) for p in stream)
        damaged = data.draw(mutated(wire_bytes))
        cuts = data.draw(st.lists(st.integers(0, 10_000), max_size=8))
        run(Wire(role, logged_in=data.draw(st.booleans())), chunked(damaged, cuts))

    @FUZZ
    @given(role=st.sampled_from(list(Role)), stream=payload_streams(), data=st.data())
    def test_mutated_payloads(self, role: Role, stream: list[bytes], data: st.DataObject) -> None:
        frames = [encode_frame(data.draw(mutated(p))) for p in stream]
        run(Wire(role, logged_in=True), frames)

    def test_seto_login_sent_to_the_client(self) -> None:
        # A payload type the client never expects (a login) is still handled.
        login = login_message("u", "p")
        login.eto_payload.seq = 1
        run(Wire(Role.CLIENT, logged_in=True), [encode_frame(login.SerializeToString())])

    def test_huge_reset_in_a_login_response(self) -> None:
        wire = Wire(Role.CLIENT, logged_in=False)
        response = _session("PAYLOAD_LOGIN_RESPONSE", U64)
        response.eto_payload.seq = 1
        heartbeat = session_message(eto_pb2.PAYLOAD_HEARTBEAT)
        chunks = [encode_frame(response.SerializeToString())]
        for seq in (2, 3, 4):
            heartbeat.eto_payload.seq = seq
            chunks.append(encode_frame(heartbeat.SerializeToString()))
        run(wire, chunks)
        self.assertLessEqual(wire.session.state.next_outgoing_seq - 1, U64)

    def test_run_lets_untyped_errors_through(self) -> None:
        # Sanity: run() swallows only SmarketsError, so the fuzz sees anything else.
        wire = Wire(Role.CLIENT, logged_in=True)
        self.assertRaises(TypeError, run, wire, [object()])
