"""Translate the Smarkets .piqi schemas into proto2 .proto files.

The rules are those of PROTOCOL.md section 1. Run from the repository root::

    python tools/piqi2proto.py schema/eto.piqi smarkets_twisted/proto/eto.proto
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

BUILTINS = {
    "uint32": "uint32",
    "uint64": "uint64",
    "bool": "bool",
    "string": "string",
    "float64": "double",
    "binary": "bytes",
}

_TOKEN = re.compile(r'\s+|%[^\n]*|"(?:[^"\\]|\\.)*"|\[|\]|[^\s\[\]"]+')


@dataclass
class Node:
    """One `.key value` or `.key [ ... ]` entry of a piqi file."""

    key: str
    value: str | None = None
    children: list[Node] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        for child in self.children:
            if child.key == key:
                return child.value
        return None

    def has(self, key: str) -> bool:
        return any(child.key == key for child in self.children)

    def all(self, key: str) -> list[Node]:
        return [child for child in self.children if child.key == key]


def tokenize(text: str) -> list[str]:
    tokens = []
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token.isspace() or token.startswith("%"):
            continue
        tokens.append(token)
    return tokens


def parse(tokens: list[str], pos: int = 0) -> tuple[list[Node], int]:
    nodes: list[Node] = []
    while pos < len(tokens) and tokens[pos] != "]":
        token = tokens[pos]
        if not token.startswith("."):
            raise SystemExit(f"piqi: unexpected token {token!r}")
        key, _, inline_value = token[1:].partition(".")
        node = Node(key)
        pos += 1
        if inline_value:
            node.value = "." + inline_value
        elif pos < len(tokens) and tokens[pos] == "[":
            node.children, pos = parse(tokens, pos + 1)
            if tokens[pos] != "]":
                raise SystemExit("piqi: unbalanced brackets")
            pos += 1
        elif pos < len(tokens) and not tokens[pos].startswith(".") and tokens[pos] != "]":
            node.value = tokens[pos].strip('"')
            pos += 1
        nodes.append(node)
    return nodes, pos


def load(path: Path) -> list[Node]:
    nodes, pos = parse(tokenize(path.read_text()))
    if pos != len(tokenize(path.read_text())):
        raise SystemExit(f"piqi: trailing tokens in {path}")
    return nodes


def snake(name: str) -> str:
    return name.replace("-", "_")


class Module:
    """A loaded piqi module and what its type names mean in proto2."""

    def __init__(self, path: Path, imports: dict[str, Module]) -> None:
        self.nodes = load(path)
        self.imports = imports
        top = Node("module", children=self.nodes)
        self.package = top.get("protobuf-package") or top.get("proto-package")
        self.aliases = {a.get("name"): a.get("type") for a in top.all("alias")}
        self.records = {r.get("name"): r for r in top.all("record")}
        self.enums = {e.get("name"): e for e in top.all("enum")}
        self.import_names = [i.get("module") for i in top.all("import")]

    def resolve(self, type_name: str) -> tuple[str, Node | None]:
        """Return the proto type name and, for enums, the enum node."""
        if "/" in type_name:
            module_name, local = type_name.split("/", 1)
            module = self.imports[module_name]
            proto, enum = module.resolve(local)
            if proto in BUILTINS.values():
                return proto, enum
            return f"{module.package}.{proto}", enum
        if type_name in BUILTINS:
            return BUILTINS[type_name], None
        if type_name in self.aliases:
            return self.resolve(self.aliases[type_name])
        if type_name in self.records:
            return self.records[type_name].get("protobuf-name"), None
        if type_name in self.enums:
            enum = self.enums[type_name]
            return enum.get("protobuf-name"), enum
        raise SystemExit(f"piqi: unknown type {type_name!r}")


def enum_values(enum: Node) -> list[tuple[str, int]]:
    options = enum.all("option")
    coded = [o.has("code") for o in options]
    if any(coded) and not all(coded):
        raise SystemExit(f"piqi: enum {enum.get('name')} mixes coded and uncoded options")
    return [
        (o.get("protobuf-name"), int(o.get("code")) if o.has("code") else i) for i, o in enumerate(options, start=1)
    ]


def default_literal(value: str, enum: Node | None) -> str:
    if value.startswith("."):
        if enum is None:
            raise SystemExit(f"piqi: enum default {value} on a non-enum field")
        wanted = value[1:]
        for option in enum.all("option"):
            if option.get("name") == wanted:
                return option.get("protobuf-name")
        raise SystemExit(f"piqi: no option {wanted!r} in enum {enum.get('name')}")
    return value


def render(module: Module, source_name: str, import_paths: dict[str, str]) -> str:
    out = [
        f"// Generated from {source_name} by tools/piqi2proto.py; do not edit.",
        'syntax = "proto2";',
        "",
        f"package {module.package};",
        "",
    ]
    for name in module.import_names:
        out.append(f'import "{import_paths[name]}";')
    if module.import_names:
        out.append("")
    for node in module.nodes:
        if node.key == "record":
            fields = node.all("field")
            coded = [f.has("code") for f in fields]
            if any(coded) and not all(coded):
                raise SystemExit(f"piqi: record {node.get('name')} mixes coded and uncoded fields")
            out.append(f"message {node.get('protobuf-name')} {{")
            for number, fld in enumerate(fields, start=1):
                type_name = fld.get("type")
                proto_type, enum = module.resolve(type_name)
                name = snake(fld.get("name") or type_name.split("/")[-1])
                if fld.has("repeated"):
                    label = "repeated"
                elif fld.has("optional"):
                    label = "optional"
                else:
                    label = "required"
                code = int(fld.get("code")) if fld.has("code") else number
                default = fld.get("default")
                suffix = f" [default = {default_literal(default, enum)}]" if default else ""
                out.append(f"  {label} {proto_type} {name} = {code}{suffix};")
            out.append("}")
            out.append("")
        elif node.key == "enum":
            out.append(f"enum {node.get('protobuf-name')} {{")
            for value_name, number in enum_values(node):
                out.append(f"  {value_name} = {number};")
            out.append("}")
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str]) -> None:
    """Usage: piqi2proto.py SCHEMA_DIR OUT_DIR PROTO_IMPORT_PREFIX"""
    schema_dir, out_dir, prefix = Path(argv[1]), Path(argv[2]), argv[3]
    modules: dict[str, Module] = {}
    import_paths: dict[str, str] = {}
    for name in ("eto", "seto"):
        modules[name] = Module(schema_dir / f"{name}.piqi", modules)
        import_paths[name] = f"{prefix}/{name}.proto"
        text = render(modules[name], f"{name}.piqi", import_paths)
        (out_dir / f"{name}.proto").write_text(text)


if __name__ == "__main__":
    main(sys.argv)
