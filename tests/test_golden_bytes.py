"""Golden bytes: frames derived by hand from the protobuf wire rules.

Each expected frame below was worked out from the schema (PROTOCOL.md
section 1), not produced by running the code:

- a field's key is one varint, ``field_number << 3 | wire_type``; wire type 0
  is a varint (uint32, uint64, bool, enum), 2 is length-delimited (string,
  bytes, embedded message);
- a varint holds 7 bits per byte, least significant group first, high bit
  set on every byte but the last (2500 → ``c4 13``, 400000 → ``80 b5 18``);
- fields are written in field-number order; unset optional fields are not
  written, even when they have a default;
- a frame is ULEB128(len(payload)) ‖ payload ‖ zero padding to 4 bytes.

A wrong field number, wire type or enum value changes these bytes.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.framing import Deframer, encode_frame
from smarkets_twisted.payloads import application_message, login_message, parse_payload, session_message
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.session import Role, Session, SessionState


def h(text: str) -> bytes:
    """Hex with spaces and # comments, one item per line."""
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


LOGIN_FRAME = h(
    """
    16              # frame header: payload length 22
    08 02           # seto.Payload.type (1, varint) = PAYLOAD_LOGIN (2)
    12 04           # seto.Payload.eto_payload (2, length-delimited), 4 bytes
      08 01         #   eto.Payload.seq (1, varint) = 1
      10 07         #   eto.Payload.type (2, varint) = eto PAYLOAD_LOGIN (7)
    1a 0c           # seto.Payload.login (3, length-delimited), 12 bytes
      0a 04 75 73 65 72   # Login.username (1, length-delimited) = "user"
      12 04 70 61 73 73   # Login.password (2, length-delimited) = "pass"
    """
)

ORDER_CREATE_FRAME = h(
    """
    1e              # frame header: payload length 30
    08 03           # seto.Payload.type (1) = PAYLOAD_ORDER_CREATE (3)
    12 02           # eto_payload (2), 2 bytes
      08 02         #   seq = 2
    22 16           # seto.Payload.order_create (4, length-delimited), 22 bytes
      20 01         #   OrderCreate.side (4, varint) = SIDE_BUY (1)
      30 80 b5 18   #   OrderCreate.quantity (6, varint) = 400000
      40 c4 13      #   OrderCreate.price (8, varint) = 2500
      50 02         #   OrderCreate.tif (10, varint) = IMMEDIATE_OR_CANCEL (2)
      58 2a         #   OrderCreate.reference (11, varint) = 42
      60 ac 02      #   OrderCreate.market_id (12, varint) = 300
      68 07         #   OrderCreate.contract_id (13, varint) = 7
      72 02 61 62   #   OrderCreate.label (14, length-delimited) = "ab"
    """
)

HEARTBEAT_FRAME = h(
    """
    08              # frame header: payload length 8
    08 01           # seto.Payload.type = PAYLOAD_ETO (1)
    12 04           # eto_payload, 4 bytes
      08 05         #   seq = 5
      10 05         #   type = PAYLOAD_HEARTBEAT (5)
    """
)

REPLAY_REQUEST_FRAME = h(
    """
    0c              # frame header: payload length 12
    08 01           # seto type = PAYLOAD_ETO
    12 08           # eto_payload, 8 bytes
      08 06         #   seq = 6
      10 06         #   type = PAYLOAD_REPLAY (6)
      22 02         #   eto.Payload.replay (4, length-delimited), 2 bytes
        08 03       #     Replay.seq (1, varint) = 3
    """
)

LOGOUT_WITH_REASON_FRAME = h(
    """
    0e              # frame header: payload length 14
    08 01           # seto type = PAYLOAD_ETO
    12 0a           # eto_payload, 10 bytes
      08 07         #   seq = 7
      10 09         #   type = PAYLOAD_LOGOUT (9)
      18 00         #   is_replay (3, varint) = false, written by the exchange
      3a 02         #   eto.Payload.logout (7, length-delimited), 2 bytes
        08 03       #     Logout.reason (1, varint) = LOGOUT_CONFIRMATION (3)
    """
)

LOGOUT_WITHOUT_REASON_FRAME = h(
    """
    0c              # frame header: payload length 12
    08 01           # seto type = PAYLOAD_ETO
    12 08           # eto_payload, 8 bytes
      08 03         #   seq = 3
      10 09         #   type = PAYLOAD_LOGOUT (9)
      3a 02         #   logout (7, length-delimited), 2 bytes
        08 01       #     Logout.reason = LOGOUT_NONE (1): the reference client's clean logout
    """
)

LOGIN_RESPONSE_FRAME = h(
    """
    12              # frame header: payload length 18
    08 01           # seto type = PAYLOAD_ETO
    12 0e           # eto_payload, 14 bytes
      08 01         #   seq = 1
      10 08         #   type = PAYLOAD_LOGIN_RESPONSE (8)
      18 00         #   is_replay (3, varint) = false: the exchange writes it out, as production does
      32 06         #   eto.Payload.login_response (6, length-delimited), 6 bytes
        0a 02 73 31 #     LoginResponse.session (1, length-delimited) = "s1"
        10 02       #     LoginResponse.reset (2, varint) = 2
    """
)

GAPFILL_REPLAY_FRAME = h(
    """
    0a              # frame header: payload length 10
    08 01           # seto type = PAYLOAD_ETO
    12 06           # eto_payload, 6 bytes
      08 01         #   seq = 1
      10 04         #   type = PAYLOAD_GAPFILL (4)
      18 01         #   eto.Payload.is_replay (3, varint) = true
    """
)

REPLAYED_ORDER_CREATE_FRAME = h(
    """
    20              # frame header: payload length 32
    08 03           # seto type = PAYLOAD_ORDER_CREATE
    12 04           # eto_payload, 4 bytes
      08 02         #   seq = 2
      18 01         #   is_replay = true
    22 16           # order_create, 22 bytes, exactly as first sent
      20 01 30 80 b5 18 40 c4 13 50 02 58 2a 60 ac 02 68 07 72 02 61 62
    """
)


def order_create() -> seto_pb2.Payload:
    return application_message(
        "order_create",
        market_id=300,
        contract_id=7,
        side=seto_pb2.SIDE_BUY,
        quantity=400000,
        price=2500,
        tif=seto_pb2.IMMEDIATE_OR_CANCEL,
        reference=42,
        label="ab",
    )


def client(next_outgoing_seq: int = 1) -> Session:
    state = SessionState()
    state.next_outgoing_seq = next_outgoing_seq
    return Session(state, Role.CLIENT, now=0.0)


def only_payload(frame: bytes) -> seto_pb2.Payload:
    frames = Deframer().feed(frame)
    assert len(frames) == 1, frames
    return parse_payload(frames[0])


class GoldenBytesTests(SynchronousTestCase):
    def test_hand_derived_lengths_are_consistent(self) -> None:
        # Guards the hex above against a miscounted header: header + payload.
        for frame in (
            LOGIN_FRAME,
            ORDER_CREATE_FRAME,
            HEARTBEAT_FRAME,
            REPLAY_REQUEST_FRAME,
            LOGOUT_WITH_REASON_FRAME,
            LOGOUT_WITHOUT_REASON_FRAME,
            LOGIN_RESPONSE_FRAME,
            GAPFILL_REPLAY_FRAME,
            REPLAYED_ORDER_CREATE_FRAME,
        ):
            self.assertEqual(frame[0], len(frame) - 1, frame.hex(" "))

    def test_login_new_session(self) -> None:
        session = client()
        self.assertEqual(session.start_login(0.0, username="user", password="pass"), 1)
        self.assertEqual(session.data_to_send(), LOGIN_FRAME)
        self.assertEqual(login_message("user", "pass").eto_payload.type, eto_pb2.PAYLOAD_LOGIN)

    def test_login_parses_back(self) -> None:
        payload = only_payload(LOGIN_FRAME)
        self.assertEqual(payload.type, seto_pb2.PAYLOAD_LOGIN)
        self.assertEqual(payload.eto_payload.seq, 1)
        self.assertEqual(payload.eto_payload.type, eto_pb2.PAYLOAD_LOGIN)
        self.assertFalse(payload.eto_payload.HasField("login"))
        self.assertEqual((payload.login.username, payload.login.password), ("user", "pass"))

    def test_order_create(self) -> None:
        session = client(next_outgoing_seq=2)
        self.assertEqual(session.send(order_create(), 0.0), 2)
        self.assertEqual(session.data_to_send(), ORDER_CREATE_FRAME)

    def test_order_create_parses_back(self) -> None:
        payload = only_payload(ORDER_CREATE_FRAME)
        self.assertEqual(payload.type, seto_pb2.PAYLOAD_ORDER_CREATE)
        self.assertEqual(payload.eto_payload.seq, 2)
        self.assertFalse(payload.eto_payload.HasField("type"))
        order = payload.order_create
        self.assertEqual(
            (order.market_id, order.contract_id, order.side, order.quantity, order.price, order.tif),
            (300, 7, seto_pb2.SIDE_BUY, 400000, 2500, seto_pb2.IMMEDIATE_OR_CANCEL),
        )
        self.assertEqual((order.reference, order.label), (42, "ab"))
        # Defaults that were not written read back as the schema says.
        self.assertEqual(order.type, seto_pb2.ORDER_CREATE_LIMIT)
        self.assertEqual(order.price_type, seto_pb2.PRICE_PERCENT_ODDS)
        self.assertFalse(order.HasField("quantity_type"))

    def test_order_create_by_hand_framing(self) -> None:
        payload = order_create()
        payload.eto_payload.seq = 2
        self.assertEqual(encode_frame(payload.SerializeToString()), ORDER_CREATE_FRAME)

    def test_heartbeat(self) -> None:
        session = client(next_outgoing_seq=5)
        self.assertEqual(session.send_heartbeat(0.0), 5)
        self.assertEqual(session.data_to_send(), HEARTBEAT_FRAME)
        payload = only_payload(HEARTBEAT_FRAME)
        self.assertEqual((payload.type, payload.eto_payload.seq), (seto_pb2.PAYLOAD_ETO, 5))
        self.assertEqual(payload.eto_payload.type, eto_pb2.PAYLOAD_HEARTBEAT)
        self.assertFalse(payload.eto_payload.is_replay)

    def test_replay_request_sent_on_a_gap(self) -> None:
        # Expecting 3 and receiving 4: the session asks for a replay from 3.
        session = client(next_outgoing_seq=6)
        session.state.next_incoming_seq = 3
        gap = session_message(eto_pb2.PAYLOAD_PONG)
        gap.eto_payload.seq = 4
        self.assertEqual(session.receive(gap.SerializeToString(), 0.0), [])
        self.assertEqual(session.data_to_send(), REPLAY_REQUEST_FRAME)

    def test_replay_request_parses_back(self) -> None:
        payload = only_payload(REPLAY_REQUEST_FRAME)
        self.assertEqual(payload.eto_payload.type, eto_pb2.PAYLOAD_REPLAY)
        self.assertEqual((payload.eto_payload.seq, payload.eto_payload.replay.seq), (6, 3))

    def test_logout_with_a_reason(self) -> None:
        exchange = Session(SessionState(), Role.EXCHANGE, now=0.0)
        exchange.state.next_outgoing_seq = 7
        self.assertEqual(exchange.send_logout(0.0, eto_pb2.LOGOUT_CONFIRMATION), 7)
        self.assertEqual(exchange.data_to_send(), LOGOUT_WITH_REASON_FRAME)
        payload = only_payload(LOGOUT_WITH_REASON_FRAME)
        self.assertEqual(payload.eto_payload.type, eto_pb2.PAYLOAD_LOGOUT)
        self.assertEqual(payload.eto_payload.logout.reason, eto_pb2.LOGOUT_CONFIRMATION)

    def test_client_logout_without_a_reason(self) -> None:
        session = client(next_outgoing_seq=3)
        self.assertEqual(session.send_logout(0.0), 3)
        self.assertEqual(session.data_to_send(), LOGOUT_WITHOUT_REASON_FRAME)
        payload = only_payload(LOGOUT_WITHOUT_REASON_FRAME)
        self.assertEqual(payload.eto_payload.logout.reason, eto_pb2.LOGOUT_NONE)

    def test_login_response(self) -> None:
        state = SessionState()
        state.session_id = "s1"
        exchange = Session(state, Role.EXCHANGE, now=0.0)
        login = only_payload(LOGIN_FRAME)
        exchange.accept_login(login, 0.0)
        self.assertEqual(exchange.data_to_send(), LOGIN_RESPONSE_FRAME)
        payload = only_payload(LOGIN_RESPONSE_FRAME)
        response = payload.eto_payload.login_response
        self.assertEqual((response.session, response.reset), ("s1", 2))

    def test_replay_answer_gapfills_the_login_and_resends_the_order(self) -> None:
        session = client()
        session.start_login(0.0, username="user", password="pass")
        session.send(order_create(), 0.0)
        session.data_to_send()
        request = session_message(eto_pb2.PAYLOAD_REPLAY)
        request.eto_payload.seq = 1
        request.eto_payload.replay.seq = 1
        delivered = session.receive(request.SerializeToString(), 0.0)
        self.assertEqual(len(delivered), 1)
        self.assertEqual(session.data_to_send(), GAPFILL_REPLAY_FRAME + REPLAYED_ORDER_CREATE_FRAME)
