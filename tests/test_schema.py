"""The generated schema: reproducible, and a faithful translation of the piqi.

The translation is checked two ways: spot checks of facts PROTOCOL.md section
1 states, and a complete comparison of every record, field and enum value of
schema/*.piqi (read here by a small parser of its own, independent of
tools/piqi2proto.py) against the descriptors of the generated modules.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor, FileDescriptor
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.proto import eto_pb2, seto_pb2

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schema"
PROTO = ROOT / "smarkets_twisted" / "proto"
GENERATED = ["eto.proto", "seto.proto", "eto_pb2.py", "seto_pb2.py", "eto_pb2.pyi", "seto_pb2.pyi"]


class RegenerationTests(SynchronousTestCase):
    def test_regenerated_files_match_the_committed_ones(self) -> None:
        """tools/generate_proto.generate writes exactly the committed files."""
        sys.path.insert(0, str(ROOT / "tools"))
        try:
            import generate_proto
        finally:
            sys.path.remove(str(ROOT / "tools"))
        with tempfile.TemporaryDirectory() as tmp:
            generate_proto.generate(Path(tmp))
            for name in GENERATED:
                fresh = (Path(tmp) / "smarkets_twisted" / "proto" / name).read_bytes()
                committed = (PROTO / name).read_bytes()
                self.assertEqual(fresh, committed, f"{name} differs from what tools/generate_proto.py produces")


# A minimal piqi reader, written independently of tools/piqi2proto.py.


def _read_piqi(path: Path) -> list[tuple[str, object]]:
    """Return the top-level entries of a piqi file as (key, value) pairs.

    A value is None (a flag such as ``.optional``), a string (``.name x``,
    ``.default.gtc`` gives ``".gtc"``), or a list of entries (``.key [ ... ]``).
    """
    text = re.sub(r"%[^\n]*", "", path.read_text())
    tokens = re.findall(r'"[^"]*"|\[|\]|[^\s\[\]]+', text)
    stack: list[list[list]] = [[]]
    for token in tokens:
        current = stack[-1]
        if token == "[":
            children: list = []
            current[-1][1] = children
            stack.append(children)
        elif token == "]":
            stack.pop()
        elif token.startswith("."):
            key, dot, inline = token[1:].partition(".")
            current.append([key, "." + inline if dot else None])
        else:
            current[-1][1] = token.strip('"')
    assert len(stack) == 1, f"unbalanced brackets in {path}"
    return [(k, v) for k, v in _tuples(stack[0])]


def _tuples(entries: list) -> list[tuple[str, object]]:
    return [(k, _tuples(v) if isinstance(v, list) else v) for k, v in entries]


def _get(entries, key):
    for k, v in entries:
        if k == key:
            return v
    return None


def _has(entries, key) -> bool:
    return any(k == key for k, _ in entries)


def _all(entries, key) -> list:
    return [v for k, v in entries if k == key]


_SCALARS = {
    "uint32": FieldDescriptor.TYPE_UINT32,
    "uint64": FieldDescriptor.TYPE_UINT64,
    "bool": FieldDescriptor.TYPE_BOOL,
    "string": FieldDescriptor.TYPE_STRING,
    "float64": FieldDescriptor.TYPE_DOUBLE,
    "binary": FieldDescriptor.TYPE_BYTES,
}


class _Module:
    def __init__(self, name: str, package: str, descriptor: FileDescriptor) -> None:
        self.entries = _read_piqi(SCHEMA / f"{name}.piqi")
        self.package = package
        self.descriptor = descriptor
        self.aliases = {_get(a, "name"): _get(a, "type") for a in _all(self.entries, "alias")}
        self.records = {_get(r, "name"): r for r in _all(self.entries, "record")}
        self.enums = {_get(e, "name"): e for e in _all(self.entries, "enum")}


MODULES = {
    "eto": _Module("eto", "smarkets.eto", eto_pb2.DESCRIPTOR),
    "seto": _Module("seto", "smarkets.seto", seto_pb2.DESCRIPTOR),
}


def _resolve(module: _Module, type_name: str) -> tuple[str, object]:
    """('scalar', TYPE_x) or ('message'/'enum', (module, piqi entries))."""
    if "/" in type_name:
        other, local = type_name.split("/", 1)
        return _resolve(MODULES[other], local)
    if type_name in _SCALARS:
        return "scalar", _SCALARS[type_name]
    if type_name in module.aliases:
        return _resolve(module, module.aliases[type_name])
    if type_name in module.records:
        return "message", (module, module.records[type_name])
    if type_name in module.enums:
        return "enum", (module, module.enums[type_name])
    raise AssertionError(f"unknown piqi type {type_name}")


def _enum_values(enum_entries) -> list[tuple[str, str, int]]:
    """(piqi option name, protobuf name, number) for each option."""
    out = []
    for index, option in enumerate(_all(enum_entries, "option"), start=1):
        code = _get(option, "code")
        out.append((_get(option, "name"), _get(option, "protobuf-name"), int(code) if code else index))
    return out


class PiqiTranslationTests(SynchronousTestCase):
    """Every record, field and enum value of the piqi, in the descriptors."""

    def test_every_record_and_enum_is_translated(self) -> None:
        for name, module in MODULES.items():
            piqi_messages = {_get(r, "protobuf-name") for r in module.records.values()}
            piqi_enums = {_get(e, "protobuf-name") for e in module.enums.values()}
            self.assertEqual(set(module.descriptor.message_types_by_name), piqi_messages, name)
            self.assertEqual(set(module.descriptor.enum_types_by_name), piqi_enums, name)
        # The counts, as grep finds them in the piqi files.
        self.assertEqual(len(eto_pb2.DESCRIPTOR.message_types_by_name), 8)
        self.assertEqual(len(eto_pb2.DESCRIPTOR.enum_types_by_name), 2)
        self.assertEqual(len(seto_pb2.DESCRIPTOR.message_types_by_name), 44)
        self.assertEqual(len(seto_pb2.DESCRIPTOR.enum_types_by_name), 20)

    def test_every_enum_value(self) -> None:
        for module in MODULES.values():
            for enum in module.enums.values():
                descriptor = module.descriptor.enum_types_by_name[_get(enum, "protobuf-name")]
                expected = [(proto_name, number) for _, proto_name, number in _enum_values(enum)]
                actual = [(v.name, v.number) for v in descriptor.values]
                self.assertEqual(actual, expected, descriptor.full_name)
                self.assertNotIn(0, [number for _, number in actual], descriptor.full_name)

    def test_every_field(self) -> None:
        checked = 0
        for module in MODULES.values():
            for record in module.records.values():
                message = module.descriptor.message_types_by_name[_get(record, "protobuf-name")]
                fields = _all(record, "field")
                self.assertEqual(len(message.fields), len(fields), message.full_name)
                for index, fld in enumerate(fields, start=1):
                    self._check_field(module, message.full_name, index, fld, message)
                    checked += 1
        self.assertEqual(checked, 21 + 293)

    def _check_field(self, module: _Module, where: str, index: int, fld, message) -> None:
        type_name = _get(fld, "type")
        name = (_get(fld, "name") or type_name.split("/")[-1]).replace("-", "_")
        where = f"{where}.{name}"
        self.assertIn(name, message.fields_by_name, where)
        descriptor = message.fields_by_name[name]
        code = _get(fld, "code")
        self.assertEqual(descriptor.number, int(code) if code else index, where)
        if _has(fld, "repeated"):
            label = FieldDescriptor.LABEL_REPEATED
        elif _has(fld, "optional"):
            label = FieldDescriptor.LABEL_OPTIONAL
        else:
            label = FieldDescriptor.LABEL_REQUIRED
        self.assertEqual(descriptor.label, label, where)
        if label == FieldDescriptor.LABEL_REPEATED:
            self.assertFalse(descriptor.GetOptions().packed, where)
        kind, target = _resolve(module, type_name)
        default = _get(fld, "default")
        if kind == "scalar":
            self.assertEqual(descriptor.type, target, where)
            if default is not None:
                self.assertTrue(descriptor.has_default_value, where)
                expected = {"false": False, "true": True}.get(default, default)
                if descriptor.type != FieldDescriptor.TYPE_BOOL:
                    expected = int(default)
                self.assertEqual(descriptor.default_value, expected, where)
        else:
            other, entries = target
            full_name = f"{other.package}.{_get(entries, 'protobuf-name')}"
            if kind == "message":
                self.assertEqual(descriptor.type, FieldDescriptor.TYPE_MESSAGE, where)
                self.assertEqual(descriptor.message_type.full_name, full_name, where)
                self.assertIsNone(default, where)
            else:
                self.assertEqual(descriptor.type, FieldDescriptor.TYPE_ENUM, where)
                self.assertEqual(descriptor.enum_type.full_name, full_name, where)
                if default is not None:
                    self.assertTrue(default.startswith("."), where)
                    numbers = {option: number for option, _, number in _enum_values(entries)}
                    self.assertTrue(descriptor.has_default_value, where)
                    self.assertEqual(descriptor.default_value, numbers[default[1:]], where)
        if default is None:
            self.assertFalse(descriptor.has_default_value, where)


class SpotChecks(SynchronousTestCase):
    """Facts stated in PROTOCOL.md section 1, read off the descriptors."""

    def _field(self, message, name: str) -> FieldDescriptor:
        return message.DESCRIPTOR.fields_by_name[name]

    def test_packages(self) -> None:
        self.assertEqual(eto_pb2.DESCRIPTOR.package, "smarkets.eto")
        self.assertEqual(seto_pb2.DESCRIPTOR.package, "smarkets.seto")
        for name in ("eto.proto", "seto.proto"):
            self.assertIn('syntax = "proto2";\n', (PROTO / name).read_text())

    def test_eto_payload(self) -> None:
        fields = [(f.name, f.number, f.label, f.type) for f in eto_pb2.Payload.DESCRIPTOR.fields]
        required, optional = FieldDescriptor.LABEL_REQUIRED, FieldDescriptor.LABEL_OPTIONAL
        self.assertEqual(
            fields,
            [
                ("seq", 1, required, FieldDescriptor.TYPE_UINT64),
                ("type", 2, optional, FieldDescriptor.TYPE_ENUM),
                ("is_replay", 3, optional, FieldDescriptor.TYPE_BOOL),
                ("replay", 4, optional, FieldDescriptor.TYPE_MESSAGE),
                ("login", 5, optional, FieldDescriptor.TYPE_MESSAGE),
                ("login_response", 6, optional, FieldDescriptor.TYPE_MESSAGE),
                ("logout", 7, optional, FieldDescriptor.TYPE_MESSAGE),
            ],
        )
        is_replay = self._field(eto_pb2.Payload, "is_replay")
        self.assertTrue(is_replay.has_default_value)
        self.assertIs(is_replay.default_value, False)

    def test_eto_payload_type_values(self) -> None:
        enum: EnumDescriptor = eto_pb2.PayloadType.DESCRIPTOR
        self.assertEqual(enum.values[0].name, "PAYLOAD_NONE")
        self.assertEqual(enum.values[0].number, 1)
        self.assertEqual(enum.values[-1].name, "PAYLOAD_THROTTLE_EXCEEDED")
        self.assertEqual(enum.values[-1].number, 10)
        self.assertEqual(eto_pb2.PAYLOAD_LOGIN, 7)
        self.assertEqual(eto_pb2.PAYLOAD_HEARTBEAT, 5)
        self.assertEqual(eto_pb2.LOGOUT_UNAUTHORISED, 7)

    def test_order_create(self) -> None:
        side = self._field(seto_pb2.OrderCreate, "side")
        self.assertEqual(side.number, 4)
        self.assertEqual(side.label, FieldDescriptor.LABEL_REQUIRED)
        self.assertEqual(side.enum_type.full_name, "smarkets.seto.Side")
        self.assertEqual(self._field(seto_pb2.OrderCreate, "type").number, 1)
        self.assertEqual(self._field(seto_pb2.OrderCreate, "quantity").number, 6)
        self.assertEqual(self._field(seto_pb2.OrderCreate, "quantity").type, FieldDescriptor.TYPE_UINT64)
        self.assertEqual(self._field(seto_pb2.OrderCreate, "price").number, 8)
        self.assertEqual(self._field(seto_pb2.OrderCreate, "market_id").number, 12)
        self.assertEqual(self._field(seto_pb2.OrderCreate, "contract_id").number, 13)
        tif = self._field(seto_pb2.OrderCreate, "tif")
        self.assertEqual(tif.number, 10)
        self.assertEqual(tif.label, FieldDescriptor.LABEL_OPTIONAL)
        self.assertEqual(tif.default_value, seto_pb2.GOOD_TIL_CANCELLED)
        self.assertEqual(seto_pb2.OrderCreate().tif, seto_pb2.GOOD_TIL_CANCELLED)

    def test_seto_payload_type_gap(self) -> None:
        numbers = [v.number for v in seto_pb2.PayloadType.DESCRIPTOR.values]
        self.assertIn(20, numbers)
        for missing in (21, 22, 23):
            self.assertNotIn(missing, numbers)
        self.assertEqual(seto_pb2.PAYLOAD_MARKET_MANAGED_STATE, 20)
        self.assertEqual(seto_pb2.PAYLOAD_PRICE_FEED_SUBSCRIBE, 24)
        self.assertEqual(seto_pb2.PAYLOAD_ETO, 1)
        self.assertEqual(seto_pb2.PAYLOAD_LOGIN, 2)
        self.assertEqual(seto_pb2.PAYLOAD_ORDER_CREATE, 3)

    def test_seto_payload_imports_eto(self) -> None:
        eto_payload = self._field(seto_pb2.Payload, "eto_payload")
        self.assertEqual(eto_payload.number, 2)
        self.assertEqual(eto_payload.label, FieldDescriptor.LABEL_REQUIRED)
        self.assertEqual(eto_payload.message_type.full_name, "smarkets.eto.Payload")
        self.assertIn("smarkets_twisted/proto/eto.proto", [d.name for d in seto_pb2.DESCRIPTOR.dependencies])

    def test_aliases(self) -> None:
        # microseconds → uint64, runningball-details → string, eto seq → uint64.
        self.assertEqual(self._field(seto_pb2.Execution, "microseconds").type, FieldDescriptor.TYPE_UINT64)
        self.assertEqual(self._field(seto_pb2.RunningballNotification, "details").type, FieldDescriptor.TYPE_STRING)
        self.assertEqual(self._field(seto_pb2.OrderRejected, "seq").type, FieldDescriptor.TYPE_UINT64)
        self.assertEqual(self._field(eto_pb2.Login, "session").type, FieldDescriptor.TYPE_STRING)

    def test_float64_and_binary(self) -> None:
        self.assertEqual(self._field(seto_pb2.BalanceChanged, "available_balance").type, FieldDescriptor.TYPE_DOUBLE)
        self.assertEqual(self._field(seto_pb2.Login, "cookie").type, FieldDescriptor.TYPE_BYTES)

    def test_numeric_default(self) -> None:
        pending = self._field(seto_pb2.OrderExecuted, "pending_timeout")
        self.assertTrue(pending.has_default_value)
        self.assertEqual(pending.default_value, 0)

    def test_repeated_is_not_packed(self) -> None:
        reasons = self._field(seto_pb2.OrderInvalid, "reasons")
        self.assertEqual(reasons.label, FieldDescriptor.LABEL_REPEATED)
        message = seto_pb2.OrderInvalid(seq=1, reasons=[1, 2])
        # Unpacked: one tag (field 2, varint → 0x10) per element.
        self.assertEqual(message.SerializeToString(), bytes.fromhex("0801 1001 1002"))
