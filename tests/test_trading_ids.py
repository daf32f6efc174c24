"""trading.ids: the tagged uuids of the reference client, same names, same answers."""

from __future__ import annotations

import smarkets.uuid as reference  # the reference client, smk-python-sdk 9.4.4
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.errors import InvalidId, SmarketsError
from smarkets_twisted.trading import ids
from smarkets_twisted.trading.ids import Uuid

numbers = st.integers(min_value=0, max_value=(1 << 112) - 1)
tag_names = st.sampled_from([tag.name for tag in ids.TAGS])


class DocsExampleTests(SynchronousTestCase):
    def test_the_ten_tags(self) -> None:
        """The tags table of the reference docs: name, int tag, prefix, hex."""
        table = {
            "Account": (44225, "a", "acc1"), "Comment": (45476, "b", "b1a4"),
            "Contract": (52428, "c", "cccc"), "ContractGroup": (49188, "m", "c024"),
            "Entity": (1092, "n", "0444"), "Event": (4352, "e", "1100"),
            "Order": (65520, "o", "fff0"), "Referrer": (20046, "r", "4e4e"),
            "Session": (39321, "s", "9999"), "User": (3840, "u", "0f00"),
        }
        self.assertEqual({tag.name: (tag.int_tag, tag.prefix, tag.hex_str) for tag in ids.TAGS}, table)
        for name, (int_tag, prefix, hex_str) in table.items():
            tag = ids.TAGS_BY_NAME[name]
            self.assertIs(ids.TAGS_BY_INT_TAG[int_tag], tag)
            self.assertIs(ids.TAGS_BY_PREFIX[prefix], tag)
            self.assertIs(ids.TAGS_BY_HEX_STR[hex_str], tag)

    def test_an_order_id(self) -> None:
        uuid = Uuid.from_int(123, "Order")
        self.assertEqual(uuid.to_hex(), "000000000000000000000000007bfff0")
        self.assertEqual(uuid.to_slug(), "o-4u6eo")
        self.assertEqual(uuid.shorthex, "7b")
        self.assertEqual(Uuid.from_slug("O-4U6EO"), uuid)
        self.assertEqual(Uuid.from_hex(b"7bfff0"), uuid)
        self.assertEqual(ids.uuid_to_short(uuid.to_hex()), "7b")
        self.assertEqual(ids.uuid_to_int(uuid.to_hex(), return_tag="type"), (123, "Order"))
        self.assertEqual(ids.slug_to_int("o-4u6eo", return_tag="int", split=True), ((0, 123), 0xFFF0))

    def test_high_and_low(self) -> None:
        uuid = Uuid.from_int((5, 7), "Contract")
        self.assertEqual((uuid.number, uuid.high, uuid.low), ((5 << 64) | 7, 5, 7))


class ReferenceAnswersTests(SynchronousTestCase):
    @given(numbers, tag_names)
    def test_uuid(self, number: int, name: str) -> None:
        ours, theirs = Uuid.from_int(number, name), reference.Uuid.from_int(number, name)
        self.assertEqual((ours.number, ours.high, ours.low, ours.shorthex),
                         (theirs.number, theirs.high, theirs.low, theirs.shorthex))
        self.assertEqual(tuple(ours.tag), tuple(theirs.tag))
        self.assertEqual(ours.to_hex(), theirs.to_hex())
        self.assertEqual(ours.to_hex(pad=40), theirs.to_hex(pad=40))
        for kwargs in ({}, {"prefix": False}, {"base": 62}, {"base": 16, "pad": 30}):
            self.assertEqual(ours.to_slug(**kwargs), theirs.to_slug(**kwargs), kwargs)  # type: ignore[arg-type]
        self.assertEqual(Uuid.from_slug(theirs.to_slug(base=62), base=62), ours)

    @given(numbers, tag_names, st.sampled_from([None, "type", "int"]), st.booleans())
    def test_module_functions(self, number: int, name: str, return_tag: str | None, split: bool) -> None:
        hex_uuid, slug = reference.int_to_uuid(number, name), reference.int_to_slug(number, name)
        self.assertEqual(ids.int_to_uuid(number, name), hex_uuid)
        self.assertEqual(ids.int_to_slug(number, name), slug)
        self.assertEqual(ids.uuid_to_slug(hex_uuid), reference.uuid_to_slug(hex_uuid))
        self.assertEqual(ids.uuid_to_slug(hex_uuid, prefix=False), reference.uuid_to_slug(hex_uuid, prefix=False))
        self.assertEqual(ids.slug_to_uuid(slug), reference.slug_to_uuid(slug))
        self.assertEqual(ids.uuid_to_short(hex_uuid), reference.uuid_to_short(hex_uuid))
        self.assertEqual(ids.uuid_to_int(hex_uuid, return_tag, split),  # type: ignore[arg-type]
                         reference.uuid_to_int(hex_uuid, return_tag, split))
        self.assertEqual(ids.slug_to_int(slug, return_tag, split),  # type: ignore[arg-type]
                         reference.slug_to_int(slug, return_tag, split))


class BadInputTests(SynchronousTestCase):
    def test_each_is_a_typed_error(self) -> None:
        for call in (
            lambda: Uuid.from_int(-1, "Order"),
            lambda: Uuid.from_int(1, "Horse"),
            lambda: Uuid.from_int("12", "Order"),  # type: ignore[arg-type]
            lambda: Uuid.from_hex("7bffff"),
            lambda: Uuid.from_hex("fff0"),
            lambda: Uuid.from_hex("zzfff0"),
            lambda: Uuid.from_slug("o-4u6e!"),
            lambda: Uuid.from_slug("c-4u6eo"),
            lambda: Uuid.from_slug("o-4u6eo", base=99),
            lambda: Uuid.from_slug(12),  # type: ignore[arg-type]
        ):
            with self.assertRaises(InvalidId) as raised:
                call()
            self.assertIsInstance(raised.exception, SmarketsError)
            self.assertIsInstance(raised.exception, ValueError)
