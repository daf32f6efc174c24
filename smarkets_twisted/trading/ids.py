"""Smarkets' tagged 128-bit ids, as the reference client's ``smarkets.uuid`` has them.

The API speaks plain integers (``order_id``, ``market_id``); the web site
shows the same ids as a tagged hex uuid (the number in hex, then four hex
digits naming its kind: ``...7bfff0`` is order 123) or as a slug (the tagged
number in base 36 behind a one-letter prefix: ``o-4u6eo``).  Same names and
same answers as the reference client, so code moving from it keeps working;
bad input raises ``InvalidId`` (a ``ValueError``) instead of its mix of
TypeError, ValueError and KeyError.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from smarkets_twisted.errors import InvalidId

_MASK64 = (1 << 64) - 1
_TAG_MULT = 1 << 16


class UuidTag(NamedTuple):
    """The kind of an id: its name, its 16-bit tag and its slug prefix."""

    name: str
    int_tag: int
    prefix: str

    @property
    def hex_str(self) -> str:
        """The tag as the last four hex digits of a uuid."""
        return f"{self.int_tag:04x}"

    def tag_number(self, number: int) -> int:
        """The number with this tag in its low 16 bits."""
        return number * _TAG_MULT + self.int_tag

    @staticmethod
    def split_int_tag(number: int) -> tuple[int, int]:
        """(number, int_tag) of a tagged number."""
        return divmod(number, _TAG_MULT)


TAGS = (
    UuidTag("Account", 0xACC1, "a"),
    UuidTag("ContractGroup", 0xC024, "m"),
    UuidTag("Contract", 0xCCCC, "c"),
    UuidTag("Order", 0xFFF0, "o"),
    UuidTag("Comment", 0xB1A4, "b"),
    UuidTag("Entity", 0x0444, "n"),
    UuidTag("Event", 0x1100, "e"),
    UuidTag("Session", 0x9999, "s"),
    UuidTag("User", 0x0F00, "u"),
    UuidTag("Referrer", 0x4E4E, "r"),
)

# The reference client's indexes of the tags (its ``Uuid.tags``, ``Uuid.tags_by_hex_str``...).
TAGS_BY_NAME = {tag.name: tag for tag in TAGS}
TAGS_BY_HEX_STR = {tag.hex_str: tag for tag in TAGS}
TAGS_BY_PREFIX = {tag.prefix: tag for tag in TAGS}
TAGS_BY_INT_TAG = {tag.int_tag: tag for tag in TAGS}

#: Digits of slugs: base 36 uses the first 36.
CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _alphabet(base: int, chars: str | None) -> str:
    chars = CHARS if chars is None else chars
    if not 2 <= base <= len(chars):
        raise InvalidId(f"base must be between 2 and {len(chars)}, not {base!r}")
    return chars[:base]


def _pad(text: str, pad: int) -> str:
    return text.rjust(pad, "0")


class Uuid(NamedTuple):
    """An id and its kind; ``number`` is what the API sends."""

    number: int
    tag: UuidTag

    @property
    def low(self) -> int:
        """The lower 64 bits of the number."""
        return self.number & _MASK64

    @property
    def high(self) -> int:
        """The higher 64 bits of the number."""
        return (self.number >> 64) & _MASK64

    @property
    def shorthex(self) -> str:
        """The number in hex, without the tag."""
        return f"{self.number:x}"

    def to_hex(self, pad: int = 32) -> str:
        """The tagged hex uuid, zero-padded to ``pad`` digits."""
        return _pad(f"{self.number:x}{self.tag.hex_str}", pad)

    def to_slug(self, prefix: bool = True, base: int = 36, chars: str | None = None, pad: int = 0) -> str:
        """The tagged number in ``base``, behind the tag's prefix unless ``prefix`` is False."""
        alphabet = _alphabet(base, chars)
        number, digits = self.tag.tag_number(self.number), []
        while True:
            number, digit = divmod(number, base)
            digits.append(alphabet[digit])
            if not number:
                break
        slug = _pad("".join(reversed(digits)), pad)
        return f"{self.tag.prefix}-{slug}" if prefix else slug

    @classmethod
    def from_int(cls, number: int | tuple[int, int], ttype: str) -> Uuid:
        """An id of kind ``ttype`` (a tag name) from its number or its (high, low) halves."""
        if isinstance(number, tuple):
            high, low = number
            number = ((high & _MASK64) << 64) | (low & _MASK64)
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise InvalidId(f"an id is a whole number, 0 or more, not {number!r}")
        tag = TAGS_BY_NAME.get(ttype)
        if tag is None:
            raise InvalidId(f"invalid type: {ttype!r}")
        return cls(number, tag)

    @classmethod
    def from_hex(cls, hex_str: str | bytes) -> Uuid:
        """An id from its tagged hex uuid."""
        text = hex_str.decode("ascii", "replace") if isinstance(hex_str, bytes) else hex_str
        if not isinstance(text, str):
            raise InvalidId(f"a hex uuid is a string, not {hex_str!r}")
        tag = TAGS_BY_HEX_STR.get(text[-4:])
        if tag is None:
            raise InvalidId(f"invalid hex tag: {text[-4:]!r}")
        try:
            return cls(int(text[:-4], 16), tag)
        except ValueError:
            raise InvalidId(f"not a hex uuid: {text!r}") from None

    @classmethod
    def from_slug(cls, slug: str, base: int = 36, chars: str | None = None) -> Uuid:
        """An id from its slug, with or without the prefix (which must then match)."""
        if not isinstance(slug, str):
            raise InvalidId(f"a slug is a string, not {slug!r}")
        alphabet = _alphabet(base, chars)
        text = slug.lower() if base <= 36 else slug
        prefix = None
        if len(text) > 1 and "-" in text:
            prefix, _, text = text.partition("-")
        values = {char: value for value, char in enumerate(alphabet)}
        number = 0
        for char in text:
            if char not in values:
                raise InvalidId(f"not a base-{base} slug: {slug!r}")
            number = number * base + values[char]
        number, int_tag = UuidTag.split_int_tag(number)
        tag = TAGS_BY_INT_TAG.get(int_tag)
        if tag is None:
            raise InvalidId(f"invalid integer tag: {int_tag!r}")
        if prefix and tag != TAGS_BY_PREFIX.get(prefix):
            raise InvalidId(f"prefix {prefix!r} did not match tag {tag.name!r}")
        return cls(number, tag)


_Number = int | tuple[int, int]
_ReturnTag = Literal["type", "int"] | None


def _tagged(uuid: Uuid, return_tag: _ReturnTag, split: bool) -> _Number | tuple[_Number, str | int]:
    number = (uuid.high, uuid.low) if split else uuid.number
    if return_tag == "type":
        return number, uuid.tag.name
    if return_tag == "int":
        return number, uuid.tag.int_tag
    return number


def int_to_uuid(number: int, ttype: str) -> str:
    """An API integer of kind ``ttype`` as a tagged hex uuid."""
    return Uuid.from_int(number, ttype).to_hex()


def int_to_slug(number: int, ttype: str) -> str:
    """An API integer of kind ``ttype`` as a slug."""
    return Uuid.from_int(number, ttype).to_slug()


def uuid_to_int(
    uuid: str | bytes, return_tag: _ReturnTag = None, split: bool = False
) -> _Number | tuple[_Number, str | int]:
    """A tagged hex uuid's integer; with ``return_tag``, also its tag name ("type") or int tag ("int")."""
    return _tagged(Uuid.from_hex(uuid), return_tag, split)


def slug_to_int(
    slug: str, return_tag: _ReturnTag = None, split: bool = False
) -> _Number | tuple[_Number, str | int]:
    """A slug's integer; ``return_tag`` and ``split`` as for ``uuid_to_int``."""
    return _tagged(Uuid.from_slug(slug), return_tag, split)


def uuid_to_slug(number: str | bytes, prefix: bool = True) -> str:
    """A tagged hex uuid as a slug."""
    return Uuid.from_hex(number).to_slug(prefix=prefix)


def slug_to_uuid(slug: str) -> str:
    """A slug as a tagged hex uuid."""
    return Uuid.from_slug(slug).to_hex()


def uuid_to_short(uuid: str) -> str:
    """A tagged hex uuid without its tag and leading zeros."""
    return uuid[:-4].lstrip("0")
