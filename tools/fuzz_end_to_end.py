"""Run many seeds of the randomized end-to-end test and print each one's findings.

::

    python tools/fuzz_end_to_end.py 0 500            # seeds 0..499, 300 steps, plain
    python tools/fuzz_end_to_end.py 0 500 --wide     # the tight limits and two clients
    python tools/fuzz_end_to_end.py 0 500 --wide --service   # the second under SmarketsClientService

Exits 1 when any seed found something, so that it can gate a longer run.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.test_end_to_end import run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=int)
    parser.add_argument("stop", type=int)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--wide", action="store_true")
    parser.add_argument("--service", action="store_true",
                        help="with --wide: the second client under SmarketsClientService")
    args = parser.parse_args()
    kinds: collections.Counter[str] = collections.Counter()
    for seed in range(args.first, args.stop):
        findings, _ = run(seed, args.steps, wide=args.wide, service=args.service)
        for finding in findings:
            print(f"seed {seed}: {finding[:200]}")
            kinds[re.sub(r"\(.*?\)|\[.*?\]|'.*?'|[0-9.=t]+\b", "", finding)[:60].strip()] += 1
    print(f"{args.stop - args.first} seeds, {sum(kinds.values())} findings: {dict(kinds)}")
    return 1 if kinds else 0


if __name__ == "__main__":
    sys.exit(main())
