"""Regenerate the .proto files and their Python modules from schema/*.piqi.

Run from the repository root with the ``dev`` extra installed::

    python tools/generate_proto.py

The protoc that compiles them is the one bundled with the pinned grpcio-tools
(see setup.cfg), so that everyone produces the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = "smarkets_twisted/proto"

sys.path.insert(0, str(ROOT / "tools"))
import piqi2proto  # noqa: E402


def generate(out_root: Path) -> None:
    """Write eto/seto .proto, _pb2.py and _pb2.pyi under out_root."""
    (out_root / PROTO_DIR).mkdir(parents=True, exist_ok=True)
    piqi2proto.main(["piqi2proto", str(ROOT / "schema"), str(out_root / PROTO_DIR), PROTO_DIR])
    for name in ("eto", "seto"):
        status = protoc.main(
            [
                "protoc",
                f"-I{out_root}",
                f"--python_out={out_root}",
                f"--pyi_out={out_root}",
                f"{PROTO_DIR}/{name}.proto",
            ]
        )
        if status != 0:
            raise SystemExit(f"protoc failed on {name}.proto")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
