"""Run every benchmark in bench/, one after the other, each in its own process.

    python bench/run_all.py

Each script prints its own figures as ratios measured in its own run; a
script that fails makes this one exit non-zero, after the others have run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(BENCH.glob("*.py")):
        if script.name == Path(__file__).name:
            continue
        print(f"== {script.relative_to(BENCH.parent)}", flush=True)
        if subprocess.run([sys.executable, str(script)]).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
