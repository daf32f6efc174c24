"""``python -m smarkets_twisted journal summary|replay PATH``: tools for journals.

``summary`` prints a few lines on a journal recorded with ``twistd smarkets
--journal PATH`` (its rotated files included).  Exits 1 with a one-line
message when the journal cannot be read.
"""

from __future__ import annotations

import argparse
import sys

from smarkets_twisted.journal import JournalError, read_journal, summarize


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m smarkets_twisted")
    commands = parser.add_subparsers(dest="command", required=True)
    journal = commands.add_parser("journal", help="summarise or replay a journal")
    actions = journal.add_subparsers(dest="action", required=True)
    summary = actions.add_parser("summary", help="counts, seqs, gaps, sessions, orders and fills")
    summary.add_argument("path", help="the journal (its rotated files PATH.1, PATH.2... are read too)")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        for line in summarize(read_journal(arguments.path)):
            print(line)
    except JournalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
