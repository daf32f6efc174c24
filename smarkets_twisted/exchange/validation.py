"""What the exchange refuses in a payload that parses: values the schema does not define.

proto2 parsing accepts two things that a request must not carry, and hides
them: an enum value the schema does not list is kept among the unknown
fields and the field reads as its default (an ``order_create`` with
``tif = 99`` would read as GOOD_TIL_CANCELLED), and a string that is not
UTF-8 reads as ``bytes``.  Acting on either would act on something the
client did not ask for, and the schema has no rejection reason for them
(``order_invalid`` knows only price and quantity), so such a payload is
malformed: a `ParseError`, which closes the connection with a log line
naming the field, like any other malformed payload.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from smarkets_twisted.errors import ParseError
from smarkets_twisted.payloads import SETO_FIELDS, Payload

_STRING = FieldDescriptor.TYPE_STRING


def check_request(payload: Payload) -> None:
    """Refuse a payload with an enum value or a string its schema does not allow.

    The envelope, the eto part, and the message the payload's type names are
    checked (requests nest no further messages).

    :raises ParseError: naming the message and the field.
    """
    field = SETO_FIELDS.get(payload.type)
    _check(payload, "payload")
    _check(payload.eto_payload, "eto_payload")
    if field is not None:
        _check(getattr(payload, field), field)


def _check(message: Message, where: str) -> None:
    descriptor = message.DESCRIPTOR
    unknown = UnknownFieldSet(message)
    for index in range(len(unknown)):
        item = unknown[index]
        known = descriptor.fields_by_number.get(item.field_number)
        if known is not None:
            # A declared field among the unknown ones: an enum value the schema does not list.
            raise ParseError(f"{where}.{known.name} = {item.data!r} is not a value the schema defines")
    for field, value in message.ListFields():
        if field.type == _STRING and isinstance(value, bytes):
            raise ParseError(f"{where}.{field.name} is not UTF-8 text")
