"""Parsing, naming and redacting payloads (smarkets_twisted.payloads)."""

from __future__ import annotations

from typing import Any

from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.errors import InvalidRequest, ParseError, UnknownMessageType
from smarkets_twisted.payloads import (
    ETO_NAMES,
    HANDLER_NAMES,
    SETO_FIELDS,
    Payload,
    application_message,
    body,
    handler_name,
    login_message,
    parse_payload,
    session_message,
    without_secrets,
)
from smarkets_twisted.proto import eto_pb2, seto_pb2


def serialized(payload: seto_pb2.Payload, seq: int = 1) -> bytes:
    payload.eto_payload.seq = seq
    return payload.SerializeToString()


class ParsePayloadTests(SynchronousTestCase):
    def test_valid_application_payload(self) -> None:
        data = serialized(application_message("market_subscribe", market_id=12))
        payload = parse_payload(data)
        self.assertEqual(payload.type, seto_pb2.PAYLOAD_MARKET_SUBSCRIBE)
        self.assertEqual(payload.market_subscribe.market_id, 12)

    def test_valid_session_payload(self) -> None:
        payload = parse_payload(serialized(session_message(eto_pb2.PAYLOAD_PING), seq=9))
        self.assertEqual((payload.eto_payload.type, payload.eto_payload.seq), (eto_pb2.PAYLOAD_PING, 9))

    def test_undecodable_bytes(self) -> None:
        for data in (b"\xff", b"\x08", b"\x12\x05\x08", b"\x0a\xff\xff\xff\xff\x0f"):
            self.assertRaises(ParseError, parse_payload, data)

    def test_empty_payload_lacks_required_fields(self) -> None:
        error = self.assertRaises(ParseError, parse_payload, b"")
        self.assertNotIsInstance(error, UnknownMessageType)
        self.assertIn("type", str(error))
        self.assertIn("eto_payload", str(error))

    def test_missing_eto_payload(self) -> None:
        error = self.assertRaises(ParseError, parse_payload, bytes.fromhex("0801"))
        self.assertIn("eto_payload", str(error))

    def test_missing_seq(self) -> None:
        # seto type ETO, eto_payload { type: HEARTBEAT } without its required seq.
        error = self.assertRaises(ParseError, parse_payload, bytes.fromhex("0801 1202 1005"))
        self.assertIn("seq", str(error))

    def test_missing_required_field_in_the_body(self) -> None:
        # An order_create without its required side.
        order = seto_pb2.Payload(type=seto_pb2.PAYLOAD_ORDER_CREATE)
        order.eto_payload.seq = 1
        order.order_create.market_id = 1
        order.order_create.contract_id = 2
        order.order_create.quantity = 3
        data = order.SerializePartialToString()
        error = self.assertRaises(ParseError, parse_payload, data)
        self.assertIn("side", str(error))

    def test_unknown_seto_type(self) -> None:
        # type = 99 (no such seto PayloadType), eto_payload { seq: 1 }.
        self.assertRaises(UnknownMessageType, parse_payload, bytes.fromhex("0863 1202 0801"))
        # 21..23 are the gap in seto PayloadType.
        self.assertRaises(UnknownMessageType, parse_payload, bytes.fromhex("0815 1202 0801"))

    def test_eto_payload_without_eto_type(self) -> None:
        self.assertRaises(UnknownMessageType, parse_payload, bytes.fromhex("0801 1202 0801"))

    def test_eto_payload_with_type_none(self) -> None:
        self.assertRaises(UnknownMessageType, parse_payload, bytes.fromhex("0801 1204 0801 1001"))

    def test_eto_payload_with_unknown_eto_type(self) -> None:
        self.assertRaises(UnknownMessageType, parse_payload, bytes.fromhex("0801 1204 0801 1063"))

    def test_application_payload_without_its_body(self) -> None:
        # seto type ORDER_ACCEPTED with no order_accepted field.
        error = self.assertRaises(ParseError, parse_payload, bytes.fromhex("0805 1202 0801"))
        self.assertNotIsInstance(error, UnknownMessageType)
        self.assertIn("order_accepted", str(error))

    def test_login_without_credentials_body(self) -> None:
        self.assertRaises(ParseError, parse_payload, bytes.fromhex("0802 1204 0801 1007"))

    def test_replay_without_replay_body(self) -> None:
        self.assertRaises(ParseError, parse_payload, bytes.fromhex("0801 1204 0801 1006"))

    def test_login_response_without_its_body(self) -> None:
        self.assertRaises(ParseError, parse_payload, bytes.fromhex("0801 1204 0801 1008"))

    def test_logout_without_a_body_is_accepted(self) -> None:
        payload = parse_payload(bytes.fromhex("0801 1204 0801 1009"))
        self.assertEqual(handler_name(payload), "eto.logout")

    def test_parse_error_does_not_echo_a_password(self) -> None:
        login = login_message("user", "hunter2-secret")
        login.eto_payload.seq = 1
        data = login.SerializeToString()
        for broken in (data[:-1], data + b"\xff", data.replace(b"\x08\x02", b"\x08\x05", 1)):
            try:
                parse_payload(broken)
            except ParseError as e:
                self.assertNotIn("hunter2", str(e))
                self.assertNotIn("hunter2", repr(e))


Path = tuple[tuple[str, int | None], ...]

_SCALARS = {
    FieldDescriptor.CPPTYPE_STRING: "x",
    FieldDescriptor.CPPTYPE_BOOL: True,
    FieldDescriptor.CPPTYPE_DOUBLE: 1.5,
    FieldDescriptor.CPPTYPE_FLOAT: 1.5,
}


def _fill(message: Message, seen: frozenset[str] = frozenset()) -> list[Path]:
    """Set every required field, and every message field (two elements when
    repeated), all the way down; return the path of each required field set."""
    required: list[Path] = []
    descriptor = message.DESCRIPTOR
    for field in descriptor.fields:
        is_required = field.label == FieldDescriptor.LABEL_REQUIRED
        if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            if field.message_type.full_name in seen:
                continue
            inner = seen | {descriptor.full_name}
            if field.label == FieldDescriptor.LABEL_REPEATED:
                container = getattr(message, field.name)
                _fill(container.add(), inner)
                # The second element's fields are the ones taken away: every element is checked.
                required += [((field.name, 1), *path) for path in _fill(container.add(), inner)]
            else:
                sub = getattr(message, field.name)
                sub.SetInParent()
                required += [((field.name, None), *path) for path in _fill(sub, inner)]
            if is_required:
                required.append(((field.name, None),))
        elif is_required:
            if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
                value: object = field.enum_type.values[0].number
            elif field.type == FieldDescriptor.TYPE_BYTES:
                value = b"x"
            else:
                value = _SCALARS.get(field.cpp_type, 1)
            setattr(message, field.name, value)
            required.append(((field.name, None),))
    return required


def _without(payload: Payload, path: Path) -> bytes:
    """The payload serialized with the field at ``path`` taken away."""
    copy = Payload()
    copy.CopyFrom(payload)
    message: Any = copy
    for name, index in path[:-1]:
        message = getattr(message, name) if index is None else getattr(message, name)[index]
    message.ClearField(path[-1][0])
    return copy.SerializePartialToString()


def _complete_payloads() -> list[tuple[str, Payload, list[Path]]]:
    """One payload of each seto type, and one of each eto type, with every field
    that can carry a required one present; and the paths of its required fields."""
    cases = []
    for number, field in SETO_FIELDS.items():
        payload = Payload(type=number)  # type: ignore[arg-type]
        required = [(("type", None),), (("eto_payload", None),)]
        required += [(("eto_payload", None), *path) for path in _fill(payload.eto_payload)]
        body = getattr(payload, field)
        body.SetInParent()
        required += [((field, None), *path) for path in _fill(body)]
        cases.append((f"seto.{field}", payload, required))
    for number, name in ETO_NAMES.items():
        if number == eto_pb2.PAYLOAD_NONE:
            continue
        payload = session_message(number)
        required = [(("type", None),), (("eto_payload", None),)]
        required += [(("eto_payload", None), *path) for path in _fill(payload.eto_payload)]
        cases.append((f"eto.{name}", payload, required))
    return cases


class RequiredFieldTests(SynchronousTestCase):
    """The required-field check is sound: whatever required field a payload
    lacks, at any depth, in any element, parse_payload says ParseError."""

    def test_each_required_field_taken_away_is_a_parse_error(self) -> None:
        checked = 0
        for name, payload, required in _complete_payloads():
            parse_payload(payload.SerializeToString())
            for path in required:
                data = _without(payload, path)
                with self.subTest(payload=name, path=path):
                    self.assertRaises(ParseError, parse_payload, data)
                checked += 1
        # Every seto and eto type, and the required fields nested in their bodies.
        self.assertGreater(checked, 300)

    def test_quote_without_its_quantity_is_named(self) -> None:
        payload = application_message("contract_quotes", market_id=1, contract_id=2)
        payload.eto_payload.seq = 1
        payload.contract_quotes.bids.add(price=2500, quantity=1)
        payload.contract_quotes.bids.add(price=2500)
        error = self.assertRaises(ParseError, parse_payload, payload.SerializePartialToString())
        self.assertIn("contract_quotes.bids[1].quantity", str(error))


class NamingTests(SynchronousTestCase):
    def test_handler_names(self) -> None:
        cases = [
            (application_message("order_accepted", seq=1, order_id=2), "seto.order_accepted"),
            (application_message("order_create", side=1, quantity=1, market_id=1, contract_id=2),
             "seto.order_create"),
            (application_message("market_quotes", market_id=1), "seto.market_quotes"),
            (application_message("price_feed_subscribe"), "seto.price_feed_subscribe"),
            (login_message("u", "p"), "seto.login"),
            (session_message(eto_pb2.PAYLOAD_HEARTBEAT), "eto.heartbeat"),
            (session_message(eto_pb2.PAYLOAD_PONG), "eto.pong"),
            (session_message(eto_pb2.PAYLOAD_LOGIN_RESPONSE), "eto.login_response"),
            (session_message(eto_pb2.PAYLOAD_THROTTLE_EXCEEDED), "eto.throttle_exceeded"),
        ]
        for payload, name in cases:
            self.assertEqual(handler_name(payload), name)
            self.assertIn(name, HANDLER_NAMES)

    def test_handler_names_cover_every_type(self) -> None:
        self.assertEqual(len(HANDLER_NAMES), (len(seto_pb2.PayloadType.DESCRIPTOR.values) - 1) + 9)
        self.assertNotIn("eto.none", HANDLER_NAMES)
        self.assertNotIn("seto.eto", HANDLER_NAMES)

    def test_body(self) -> None:
        accepted = application_message("order_accepted", seq=3, order_id=77)
        self.assertEqual(body(accepted).order_id, 77)
        replay = session_message(eto_pb2.PAYLOAD_REPLAY)
        replay.eto_payload.replay.seq = 4
        self.assertEqual(body(replay).seq, 4)
        heartbeat = session_message(eto_pb2.PAYLOAD_HEARTBEAT)
        self.assertIs(body(heartbeat), heartbeat.eto_payload)

    def test_application_message_unknown_field(self) -> None:
        self.assertRaises(ValueError, application_message, "no_such_thing")

    def test_application_message_refuses_none_for_a_required_field(self) -> None:
        # Left unset, the payload would fail only when serialized: maybe later, queued, inside a read.
        error = self.assertRaises(InvalidRequest, application_message, "order_cancel", order_id=None)
        self.assertEqual(error.field, "order_id")
        self.assertIsInstance(error, ValueError)
        optional_unset = application_message("order_cancel", order_id=7, reference=None)
        self.assertFalse(optional_unset.order_cancel.HasField("reference"))

    def test_application_message_empty_body_is_present(self) -> None:
        payload = application_message("market_feed_subscribe")
        self.assertTrue(payload.HasField("market_feed_subscribe"))
        self.assertEqual(parse_payload(serialized(payload)).type, seto_pb2.PAYLOAD_MARKET_FEED_SUBSCRIBE)


def rendered(payload: seto_pb2.Payload) -> str:
    """A payload as a log or journal shows it: secrets removed."""
    return text_format.MessageToString(without_secrets(payload), as_one_line=True)


class WithoutSecretsTests(SynchronousTestCase):
    SECRETS = ("hunter2-secret", "c00kie-secret", "session-secret")

    def assertNoSecrets(self, text: str) -> None:
        for secret in self.SECRETS:
            self.assertNotIn(secret, text)

    def test_login_password_cookie_and_session(self) -> None:
        login = login_message(
            "alice", "hunter2-secret", cookie=b"c00kie-secret", account_sequence=5, session="session-secret"
        )
        login.eto_payload.seq = 3
        text = rendered(login)
        self.assertNoSecrets(text)
        self.assertIn("alice", text)
        self.assertIn("seq: 3", text)
        # The original is untouched.
        self.assertEqual(login.login.password, "hunter2-secret")
        self.assertEqual(login.eto_payload.login.session, "session-secret")

    def test_login_response_session(self) -> None:
        response = session_message(eto_pb2.PAYLOAD_LOGIN_RESPONSE)
        response.eto_payload.login_response.session = "session-secret"
        response.eto_payload.login_response.reset = 2
        text = rendered(response)
        self.assertNoSecrets(text)
        self.assertIn("reset: 2", text)
        self.assertEqual(without_secrets(response).eto_payload.login_response.reset, 2)
        self.assertEqual(response.eto_payload.login_response.session, "session-secret")  # a copy was redacted

    def test_a_payload_without_secrets_is_not_copied(self) -> None:
        order = application_message("order_create", side=1, market_id=5, contract_id=6, quantity=7, price=8)
        self.assertIs(without_secrets(order), order)

    def test_other_payloads_are_shown_in_full(self) -> None:
        order = application_message("order_create", side=1, market_id=5, contract_id=6, quantity=7, price=8)
        self.assertIn("market_id: 5", rendered(order))
