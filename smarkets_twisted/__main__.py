"""``python -m smarkets_twisted journal summary|replay PATH``: tools for journals.

``summary`` prints a few lines on a journal recorded with ``twistd smarkets
--journal PATH`` (its rotated files included).  ``replay`` feeds its inbound
side through a fresh client (see `smarkets_twisted.replay`), as fast as it
can or at the recorded pace (``--realtime``), with the recorded requests made
again or a strategy making its own (``--strategy module:callable``), and
prints the books and orders it ends with (those of the last run, when the
journal was written by a restarted process too).  Either exits 1 with a
one-line message when the journal or the strategy cannot be read, or the
replayed client cannot follow the recording.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, cast

from twisted.internet import task
from twisted.logger import ILogObserver, globalLogBeginner, textFileLogObserver
from twisted.python import usage
from twisted.python.failure import Failure

from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.journal import JournalError, read_journal, summarize
from smarkets_twisted.replay import Replay, ReplayError, replay_factory, report
from smarkets_twisted.strategies import load_strategy
from smarkets_twisted.tradelog import TradeLog
from smarkets_twisted.trading.strategy import Strategy


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m smarkets_twisted",
        description="Tools for the journals that `twistd smarkets --journal PATH` records (every payload, both"
                    " directions, one JSON line each). The client itself runs as `twistd smarkets`; see"
                    " `twistd smarkets --help`.",
        epilog="Example: python -m smarkets_twisted journal summary smarkets.jsonl",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    journal = commands.add_parser("journal", help="summarise or replay a journal",
                                  description="Summarise a journal, or replay its inbound side through a client.")
    actions = journal.add_subparsers(dest="action", required=True, metavar="action")
    summary = actions.add_parser("summary", help="counts, seqs, gaps, sessions, orders and fills")
    summary.add_argument("path", help="the journal (its rotated files PATH.1, PATH.2... are read too)")
    replay = actions.add_parser("replay", help="feed the recorded payloads through a client")
    replay.add_argument("path", help="the journal (its rotated files are read too)")
    replay.add_argument("--realtime", action="store_true", help="at the recorded pace (default: as fast as it can)")
    replay.add_argument("--strategy", help="module:callable making the requests (default: the recorded ones)")
    replay.add_argument("--log", action="store_true", help="print the client's log (orders in words...) to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        if arguments.action == "summary":
            lines = summarize(read_journal(arguments.path))
        else:
            lines = _replay(arguments)
    except (JournalError, ReplayError, usage.UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def _replay(arguments: Any) -> list[str]:
    strategy = load_strategy(arguments.strategy) if arguments.strategy else None
    if arguments.realtime:
        from twisted.internet import reactor

        clock: Any = reactor
        observer: ILogObserver = textFileLogObserver(sys.stderr)
    else:
        # The replay's time is the recording's: its log lines bear the recorded times.
        clock = task.Clock()
        clock.advance(next(read_journal(arguments.path), {"time": 0.0})["time"])
        observer = _at(clock, textFileLogObserver(sys.stderr))
    if arguments.log:
        globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)

    def client() -> SmarketsClientFactory:
        """One run's client, as `twistd smarkets` builds it: the factory, the trade log, the strategy."""
        factory = replay_factory(arguments.path, clock)
        factory.orders.add_listener(TradeLog())
        if strategy is not None:
            started = strategy(factory)
            if isinstance(started, Strategy):  # a Strategy class was named: built, now started
                started.start()
        return factory

    replay = Replay(arguments.path, client, reissue=strategy is None)
    if arguments.realtime:
        failures: list[Failure] = []
        done = replay.run_realtime(clock)
        done.addErrback(failures.append)
        done.addBoth(lambda _: clock.stop())
        clock.run()
        if failures:
            failures[0].raiseException()
    else:
        replay.run(clock)
    return report(replay)


def _at(clock: task.Clock, observer: ILogObserver) -> ILogObserver:
    """``observer``, with each event's time taken from ``clock`` instead of the wall clock."""
    return cast(ILogObserver, lambda event: observer({**event, "log_time": clock.seconds()}))


if __name__ == "__main__":
    sys.exit(main())
