"""Building, checking, naming and safely rendering protocol payloads.

Every frame carries one ``smarkets.seto.Payload`` (PROTOCOL.md section 3).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import EncodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from smarkets_twisted.errors import InvalidRequest, ParseError, UnknownMessageType
from smarkets_twisted.proto import eto_pb2, seto_pb2

Payload = seto_pb2.Payload
_from_string = Payload.FromString

#: seto PayloadType value → the Payload field that carries it ('order_create').
SETO_FIELDS: dict[int, str] = {
    value.number: value.name[len("PAYLOAD_") :].lower()
    for value in seto_pb2.PayloadType.DESCRIPTOR.values
    if value.number != seto_pb2.PAYLOAD_ETO
}

#: eto PayloadType value → its short name ('heartbeat').
ETO_NAMES: dict[int, str] = {
    value.number: value.name[len("PAYLOAD_") :].lower() for value in eto_pb2.PayloadType.DESCRIPTOR.values
}

#: eto types whose body lives in a field of eto.Payload.
_ETO_BODY_FIELDS: dict[int, str] = {
    eto_pb2.PAYLOAD_REPLAY: "replay",
    eto_pb2.PAYLOAD_LOGIN_RESPONSE: "login_response",
    eto_pb2.PAYLOAD_LOGOUT: "logout",
}

#: Those whose body must be present (a clean logout may come without one).
_ETO_REQUIRED_FIELDS = {k: v for k, v in _ETO_BODY_FIELDS.items() if k != eto_pb2.PAYLOAD_LOGOUT}

#: Every handler name a payload can be dispatched under.
HANDLER_NAMES: frozenset[str] = frozenset(
    [f"seto.{name}" for name in SETO_FIELDS.values()]
    + [f"eto.{name}" for number, name in ETO_NAMES.items() if number != eto_pb2.PAYLOAD_NONE]
)


def enum_name(enum: Any, value: int) -> str:
    """The schema's name for an enum value, or the number when the schema has none."""
    try:
        return str(enum.Name(value))
    except ValueError:
        return str(value)


def parse_payload(data: bytes) -> Payload:
    """Parse and check one payload; raise ParseError for anything malformed.

    A payload is malformed when it does not decode, lacks a required field,
    has a type this schema does not know, or lacks the field its type names.
    """
    try:
        payload = _from_string(data)
    except ProtobufDecodeError as e:
        raise ParseError(f"payload does not decode ({len(data)} bytes)") from e
    try:
        # The required-field check, sound and cheap: upb's encoder tests each
        # message present against its mini-table's required mask.  IsInitialized
        # says the same but walks every field of every message by reflection
        # (Payload alone has seventy), at twice the cost of the parse.
        payload.SerializeToString()
    except EncodeError:
        raise _lacking_required_fields(payload) from None
    field = SETO_FIELDS.get(payload.type)
    if field is not None:
        if not payload.HasField(field):
            raise ParseError(f"seto {field} payload lacks its body")
        return payload
    eto = payload.eto_payload
    if not eto.HasField("type") or eto.type == eto_pb2.PAYLOAD_NONE:
        raise UnknownMessageType("eto payload with no known eto type")
    needed = _ETO_REQUIRED_FIELDS.get(eto.type)
    if needed is not None and not eto.HasField(needed):
        raise ParseError(f"eto {ETO_NAMES[eto.type]} payload lacks its {needed} field")
    return payload


def _lacking_required_fields(payload: Payload) -> ParseError:
    """The error for a payload that lacks a required field, naming what it lacks."""
    unknown = UnknownFieldSet(payload)
    if not payload.HasField("type") and any(unknown[i].field_number == 1 for i in range(len(unknown))):
        # proto2 enums are closed: a type number this schema lacks lands in the unknown fields.
        return UnknownMessageType("payload of a seto type this schema does not know")
    missing = ", ".join(payload.FindInitializationErrors())  # type: ignore[attr-defined]
    if not payload.HasField("type") and "type" not in missing.split(", "):
        missing = "type"
    return ParseError(f"payload lacks required fields: {missing}")


#: seto type → (handler name, body field); eto type → (handler name, body field or None).
_SETO_DISPATCH = {number: ("seto." + field, field) for number, field in SETO_FIELDS.items()}
_ETO_DISPATCH = {number: ("eto." + name, _ETO_BODY_FIELDS.get(number)) for number, name in ETO_NAMES.items()}


def name_and_body(payload: Payload) -> tuple[str, Any]:
    """The reference client's name for a payload and the message its handlers get.

    ``('seto.order_accepted', <OrderAccepted>)``; for session payloads the eto
    body (``('eto.logout', <Logout>)``) or the eto payload itself (``'eto.pong'``).
    """
    dispatch = _SETO_DISPATCH.get(payload.type)
    if dispatch is not None:
        return dispatch[0], getattr(payload, dispatch[1])
    eto = payload.eto_payload
    name, field = _ETO_DISPATCH[eto.type]
    return name, getattr(eto, field) if field is not None else eto


def handler_name(payload: Payload) -> str:
    """The reference client's name for a payload: 'seto.order_accepted', 'eto.pong'."""
    return name_and_body(payload)[0]


def body(payload: Payload) -> Any:
    """The message a handler receives: the typed body, or the eto payload."""
    return name_and_body(payload)[1]


def session_message(eto_type: int) -> Payload:
    """A session-layer (seto type ETO) payload; seq is set when it is sent."""
    payload = Payload(type=seto_pb2.PAYLOAD_ETO)
    payload.eto_payload.seq = 0
    payload.eto_payload.type = eto_type  # type: ignore[assignment]
    return payload


def application_message(field: str, **fields: object) -> Payload:
    """An application (seto) payload carrying ``field`` with the given values.

    Values of None are left unset; message fields take a message, repeated
    fields a sequence.  A value its field cannot carry (a side the schema
    lacks, a negative uint, a str for a number, None for a required field)
    raises InvalidRequest naming it.
    """
    seto_type = _SETO_TYPES.get(field)
    if seto_type is None:
        raise ValueError(f"no seto payload type carries {field!r}")
    required = _REQUIRED[field]
    if None in map(fields.get, required):  # (one C loop: this is on every request's path)
        # Left unset, it would fail only when serialized, maybe queued and sent later.
        name = next(name for name in required if fields.get(name) is None)
        raise InvalidRequest(f"{field} {name} None cannot be sent: the schema requires a value", name)
    try:
        # protobuf's constructor fills the body from the dict in C, leaving None
        # values unset (and an empty body present): twice as fast as field by field.
        return Payload(type=seto_type, eto_payload=_UNSENT, **{field: fields})  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise _refused(field, fields) from None


def _refused(field: str, fields: dict[str, object]) -> InvalidRequest:
    """Which value protobuf refused: its error names none, so try each alone (only on the way to raising)."""
    for name, value in fields.items():
        try:
            Payload(**{field: {name: value}})  # type: ignore[arg-type]
        except (ValueError, TypeError) as e:
            return InvalidRequest(f"{field} {name} {value!r} cannot be sent: {e}", name)
    return InvalidRequest(f"{field} cannot be sent with these values", field)


_SETO_TYPES = {field: number for number, field in SETO_FIELDS.items()}

#: seto field → the required fields of its body ('order_create' → side, quantity, market_id, contract_id).
_REQUIRED: dict[str, tuple[str, ...]] = {
    field: tuple(
        item.name
        for item in getattr(Payload(), field).DESCRIPTOR.fields
        if item.label == item.LABEL_REQUIRED
    )
    for field in SETO_FIELDS.values()
}

#: The eto payload of a payload not yet sent: `Session.send` sets its seq.
_UNSENT = {"seq": 0}


def login_message(
    username: str | None = None,
    password: str | None = None,
    cookie: bytes | None = None,
    account_sequence: int | None = None,
    session: str | None = None,
) -> Payload:
    """The login payload: credentials in seto ``login``, resume data in eto ``login``."""
    payload = Payload(type=seto_pb2.PAYLOAD_LOGIN)
    eto = payload.eto_payload
    eto.seq = 0
    eto.type = eto_pb2.PAYLOAD_LOGIN
    login = payload.login
    login.SetInParent()
    if username is not None:
        login.username = username
    if password is not None:
        login.password = password
    if cookie is not None:
        login.cookie = cookie
    if account_sequence is not None:
        login.account_sequence_64 = account_sequence
    if session is not None:
        eto.login.session = session
    return payload


_REDACTED = "<redacted>"


def without_secrets(payload: Payload) -> Payload:
    """The payload with the password, cookie and session tokens replaced.

    Only logins and login responses hold any: they are copied, every other
    payload is returned itself (a journal renders thousands a second).
    """
    eto = payload.eto_payload
    if not (payload.HasField("login") or eto.HasField("login") or eto.HasField("login_response")):
        return payload
    copy = Payload()
    copy.CopyFrom(payload)
    if copy.HasField("login"):
        if copy.login.HasField("password"):
            copy.login.password = _REDACTED
        if copy.login.HasField("cookie"):
            copy.login.cookie = _REDACTED.encode()
    eto = copy.eto_payload
    if eto.HasField("login"):
        eto.login.session = _REDACTED
    if eto.HasField("login_response"):
        eto.login_response.session = _REDACTED
    return copy
