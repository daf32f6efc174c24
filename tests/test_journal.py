"""The journal: recording every payload, reading it back, summarising it."""

from __future__ import annotations

import io
import sys
import threading
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smarkets_twisted import __main__ as command
from smarkets_twisted import tap
from smarkets_twisted.exchange.accounts import Account, Accounts
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.journal import Journal, JournalError, journal_files, payload_of, read_journal, summarize
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.testing import InMemoryExchange

SECRET = "pa55-w0rd-only-here"


def trader_market() -> InMemoryExchange:
    """The simulated exchange with one account whose password is easy to look for."""
    return InMemoryExchange(accounts=Accounts([Account("trader", SECRET, 7, "t@example.invalid", 10_000_000)]))


def recorded_client(market: InMemoryExchange, journal: Journal) -> SmarketsClientFactory:
    factory = SmarketsClientFactory(ClientSettings(username="trader", password=SECRET), market.clock)
    factory.journal = journal
    market.connect(factory)
    market.flush()
    return factory


class RecordingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        self.journal = Journal(self.path)
        self.journal.start()
        self.market = trader_market()
        self.factory = recorded_client(self.market, self.journal)

    def test_every_payload_both_ways_secrets_redacted(self) -> None:
        accepted = self.successResultOf(self.trade())
        session = self.factory.state.session_id
        assert session is not None
        self.journal.close()

        text = Path(self.path).read_text()
        self.assertNotIn(SECRET, text)
        self.assertNotIn(session, text)
        entries = list(read_journal(self.path))
        self.assertEqual([entries[0]["event"], entries[1]["event"]], ["opened", "connected"])
        payloads = [e for e in entries if "dir" in e]
        for entry in payloads:
            self.assertEqual(set(entry), {"time", "dir", "seq", "is_replay", "type", "message"})
        received = [e["seq"] for e in payloads if e["dir"] == "in"]
        sent = [e["seq"] for e in payloads if e["dir"] == "out"]
        self.assertEqual(received, list(range(1, self.factory.state.next_incoming_seq)))
        self.assertEqual(sent, list(range(1, self.factory.state.next_outgoing_seq)))
        types = [(e["dir"], e["type"]) for e in payloads]
        self.assertEqual(types[:2], [("out", "seto.login"), ("in", "eto.login_response")])
        self.assertIn(("out", "seto.order_create"), types)
        self.assertIn(("in", "seto.order_accepted"), types)
        answer = next(e for e in payloads if e["type"] == "seto.order_accepted")
        self.assertEqual(int(answer["message"]["order_accepted"]["order_id"]), accepted.order_id)
        # What was recorded is the payload itself, back from its dict.
        self.assertEqual(payload_of(answer).order_accepted.order_id, accepted.order_id)

    def test_replays_and_connections_are_recorded(self) -> None:
        connection = self.market.connections[0]
        connection.drop()
        self.market.connect(self.factory)
        self.market.flush()
        self.successResultOf(self.trade())
        self.journal.close()
        entries = list(read_journal(self.path))
        self.assertEqual([e["event"] for e in entries if "event" in e],
                         ["opened", "connected", "disconnected", "connected"])
        logins = [e["message"] for e in entries if e.get("type") == "seto.login"]
        self.assertNotIn("login", logins[0]["eto_payload"])
        self.assertEqual(logins[1]["eto_payload"]["login"]["session"], "<redacted>")

    def trade(self) -> defer.Deferred[Any]:
        d = self.factory.order(100, 1001, seto_pb2.SIDE_BUY, 20000, 2500)
        self.market.flush()
        return d


class WriterTests(SynchronousTestCase):
    def test_full_queue_drops_and_counts_without_waiting(self) -> None:
        path = self.mktemp()
        journal = Journal(path, queue_size=2)  # writer not started: nothing drains the queue
        for n in range(5):
            journal.event("connected", float(n))
        self.assertEqual(journal.dropped, 3)
        journal.close()
        entries = list(read_journal(path))
        self.assertEqual([(e["event"], e.get("count")) for e in entries],
                         [("connected", None), ("connected", None), ("dropped", 3)])

    def test_a_stuck_disk_never_stalls_the_client(self) -> None:
        path = self.mktemp()
        journal = Journal(path, queue_size=50)
        stuck = threading.Event()
        write = journal._file.write
        journal._file.write = lambda data: (stuck.wait(), write(data))
        journal.start()
        market = trader_market()
        factory = recorded_client(market, journal)
        for _ in range(100):  # each answered: in and out payloads, far more than the queue holds
            self.successResultOf(_ping(factory, market))
        self.assertGreater(journal.dropped, 0)
        stuck.set()
        journal.close()
        entries = list(read_journal(path))
        payloads = [e for e in entries if "dir" in e]
        dropped = sum(e["count"] for e in entries if e.get("event") == "dropped")
        self.assertEqual(dropped, journal.dropped)
        connected = [e for e in entries if e.get("event") == "connected"]
        recorded_or_counted = len(payloads) + len(connected) + dropped
        payloads_in, payloads_out = factory.state.next_incoming_seq - 1, factory.state.next_outgoing_seq - 1
        self.assertEqual(recorded_or_counted, 1 + payloads_in + payloads_out)  # nothing lost without a word

    def test_rotated_by_size_and_read_back_in_order(self) -> None:
        path = self.mktemp()
        journal = Journal(path, rotate_bytes=1024, rotated_files=100)
        journal.start()
        for n in range(200):
            journal.event("connected", float(n))
        journal.close()
        files = journal_files(path)
        self.assertGreater(len(files), 3)
        self.assertEqual(files[-1], path)
        for name in files[:-1]:
            self.assertLess(Path(name).stat().st_size, 2 * 1024 + 100)
        entries = list(read_journal(path))
        self.assertEqual(entries[0]["event"], "opened")
        self.assertEqual([e["time"] for e in entries[1:]], [float(n) for n in range(200)])

    def test_an_unwritable_journal_is_a_usage_error(self) -> None:
        with self.assertRaises(usage.UsageError) as caught:
            tap.Options().parseOptions(["--journal", "/nonexistent/dir/j.jsonl"])
        self.assertIn("/nonexistent/dir is not a writable directory", str(caught.exception))

    def test_unreadable_journals(self) -> None:
        self.assertRaises(JournalError, lambda: list(read_journal(self.mktemp())))
        path = Path(self.mktemp())
        path.write_text('{"time": 1, "event": "connected"}\nnot json\n')
        with self.assertRaises(JournalError) as caught:
            list(read_journal(str(path)))
        self.assertIn("line 2", str(caught.exception))
        path.write_text('{"time": "x"}\n')
        self.assertRaises(JournalError, lambda: list(read_journal(str(path))))

    def test_a_last_line_cut_short_is_said_not_fatal(self) -> None:
        path = Path(self.mktemp())
        path.write_text('{"time": 1, "event": "connected"}\n{"time": 2, "dir": "in", "se')
        entries = list(read_journal(str(path)))
        self.assertEqual([e["event"] for e in entries], ["connected", "truncated"])
        self.assertIn("1 line cut short", summarize(iter(entries))[0])

    def test_a_restarted_process_marks_its_run_after_a_line_cut_short(self) -> None:
        path = self.mktemp()
        first = Journal(path)
        first.start(1.0)
        first.event("connected", 2.0)
        first.close()
        with open(path, "a") as f:
            f.write('{"time": 3, "dir": "in", "se')  # killed while writing
        second = Journal(path)
        second.start(10.0)
        second.event("connected", 11.0)
        second.close()
        entries = list(read_journal(path))
        self.assertEqual([(e["event"], e["time"]) for e in entries],
                         [("opened", 1.0), ("connected", 2.0), ("truncated", 2.0), ("opened", 10.0),
                          ("connected", 11.0)])
        self.assertIn("recorded by 2 runs of the client; 1 line cut short", summarize(iter(entries))[0])
        # A line that is not JSON anywhere else is an error, as before.
        Path(path).write_text('{"time": 1, "event": "opened"}\nnot json\n{"time": 2, "event": "connected"}\n')
        with self.assertRaises(JournalError) as caught:
            list(read_journal(path))
        self.assertIn("line 2 is not JSON", str(caught.exception))


def entry(seq: int, type_: str, direction: str = "in", is_replay: bool = False, **message: Any) -> dict[str, Any]:
    return {"time": float(seq), "dir": direction, "seq": seq, "is_replay": is_replay, "type": type_,
            "message": message}


class SummaryTests(SynchronousTestCase):
    def test_gaps_replays_sessions_and_fills_counted_once(self) -> None:
        fill = {"order_executed": {"quantity": "20000"}}
        entries = [
            {"time": 0.0, "event": "connected"},
            entry(1, "seto.login", "out", eto_payload={}),
            entry(1, "eto.login_response"),
            entry(2, "seto.order_create", "out"),
            entry(2, "seto.order_accepted"),
            entry(5, "seto.order_executed", **fill),  # above a gap: recorded, then replayed
            entry(3, "eto.heartbeat", is_replay=True),
            entry(4, "eto.heartbeat", is_replay=True),
            entry(5, "seto.order_executed", is_replay=True, **fill),
            {"time": 6.0, "event": "disconnected", "reason": "lost"},
            {"time": 7.0, "event": "connected"},
            entry(3, "seto.login", "out", eto_payload={"login": {"session": "<redacted>"}}),
            entry(6, "eto.login_response"),
            {"time": 7.0, "event": "dropped", "count": 4},
        ]
        text = "\n".join(summarize(iter(entries)))
        self.assertIn("2 connections, 1 session, 1 resume; 4 entries dropped", text)
        self.assertIn("session 1: in seqs 1-6 (1 gap, 2 missing), out seqs 1-3", text)
        self.assertIn("in: 7 payloads, 3 replayed", text)
        self.assertIn("orders: 1 sent, 1 accepted, 0 refused, 0 cancelled; 1 fill for £2.00 in payoff", text)

    def test_a_resume_the_exchange_refused_is_not_counted_as_one(self) -> None:
        """The exchange restarted: it answers the resume with a logout, and the client starts a new session."""
        entries = [
            {"time": 0.0, "event": "connected"},
            entry(1, "seto.login", "out", eto_payload={}),
            entry(1, "eto.login_response"),
            {"time": 2.0, "event": "disconnected", "reason": "lost"},
            {"time": 3.0, "event": "connected"},
            entry(2, "seto.login", "out", eto_payload={"login": {"session": "<redacted>"}}),
            entry(1, "eto.logout", eto_payload={"logout": {"reason": "LOGOUT_UNKNOWN_SESSION"}}),
            {"time": 3.0, "event": "disconnected", "reason": "login refused"},
            {"time": 4.0, "event": "connected"},
            entry(1, "seto.login", "out", eto_payload={}),
            entry(1, "eto.login_response"),
        ]
        text = "\n".join(summarize(iter(entries)))
        self.assertIn("3 connections, 2 sessions, 0 resumes (1 resume refused by the exchange)", text)

    def test_command_prints_summary_or_one_line_error(self) -> None:
        path = self.mktemp()
        journal = Journal(path)
        recorded_client(trader_market(), journal)
        journal.close()
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        self.assertEqual(command.main(["journal", "summary", path]), 0)
        self.assertIn("1 connection, 1 session, 0 resumes", out.getvalue())
        self.assertEqual(command.main(["journal", "summary", path + ".missing"]), 1)
        self.assertEqual(err.getvalue().count("\n"), 1)
        self.assertIn("no journal at", err.getvalue())

    def test_a_malformed_entry_is_a_one_line_error_naming_it(self) -> None:
        """A line that is JSON but not a journal entry (hand-edited, another tool's) fails the command in one
        line, as a line that is not JSON does: summary and replay read the entries' fields."""
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        connected = '{"time": 0, "event": "connected"}\n'
        lines = {
            '{"time": 1, "dir": "in", "seq": 1, "is_replay": false, "message": {}}': "line 2",  # no type
            '{"time": 1, "dir": "sideways", "seq": 1, "is_replay": false, "type": "eto.pong", "message": {}}': "line 2",
            '{"time": 1, "event": "dropped"}': "line 2",  # no count
            '{"time": 1, "event": ["connected"]}': "line 2",
        }
        for line, said in lines.items():
            path = Path(self.mktemp())
            path.write_text(connected + line + "\n")
            for action in ("summary", "replay"):
                err.truncate(0)
                err.seek(0)
                self.assertEqual(command.main(["journal", action, str(path)]), 1, (action, line))
                self.assertEqual(err.getvalue().count("\n"), 1, err.getvalue())
                self.assertIn(f"{path} {said} is not a journal entry", err.getvalue())
        path = Path(self.mktemp())
        path.write_text(connected + '{"time": 1, "dir": "in", "seq": 1, "is_replay": false, "type": "eto.pong",'
                        ' "message": {"no_such_field": 1}}\n')
        err.truncate(0)
        err.seek(0)
        self.assertEqual(command.main(["journal", "replay", str(path)]), 1)
        self.assertEqual(err.getvalue().count("\n"), 1, err.getvalue())
        self.assertIn("does not parse", err.getvalue())

    def test_help_says_what_the_command_is_for(self) -> None:
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        self.assertRaises(SystemExit, command.main, ["--help"])
        help_text = " ".join(out.getvalue().split())
        self.assertIn("Tools for the journals that `twistd smarkets --journal PATH` records", help_text)


class ServiceTests(TestCase):
    """`twistd smarkets --journal`, flushed and closed once the client logged out."""

    timeout = 30

    def service(self, *argv: str) -> tuple[Any, str]:
        """The service `twistd smarkets --journal PATH *argv` runs (not started), and PATH."""
        path = self.mktemp()
        options = tap.Options()
        options.parseOptions(["--journal", path, *argv])
        return tap.makeService(options), path

    @defer.inlineCallbacks
    def test_journal_closed_after_the_client_logs_out(self) -> Any:
        service, path = self.service("--strategy", "tests.test_journal:no_strategy")
        service.startService()
        yield _client(service).whenLoggedIn()
        yield service.stopService()
        types = [e["type"] for e in read_journal(path) if "type" in e]
        self.assertEqual(types[:2], ["seto.login", "eto.login_response"])
        self.assertIn("eto.logout", types[-3:])

    @defer.inlineCallbacks
    def test_a_recorder_records_the_markets_and_places_no_order(self) -> Any:
        service, path = self.service("--strategy", "none", "--market", "200")
        quoted: defer.Deferred[None] = defer.Deferred()
        _client(service).add_handler("seto.market_quotes", lambda quotes: quoted.called or quoted.callback(None))
        service.startService()
        yield quoted
        yield service.stopService()
        sent = [e["type"] for e in read_journal(path) if e.get("dir") == "out"]
        received = [e["type"] for e in read_journal(path) if e.get("dir") == "in"]
        self.assertIn("seto.market_subscribe", sent)
        self.assertNotIn("seto.order_create", sent)
        self.assertIn("seto.market_quotes", received)
        subscriptions = [e["message"]["market_subscribe"]["market_id"] for e in read_journal(path)
                         if e.get("type") == "seto.market_subscribe"]
        self.assertEqual(subscriptions, [200])


def _ping(factory: SmarketsClientFactory, market: InMemoryExchange) -> defer.Deferred[float]:
    d = factory.ping()
    market.flush()
    return d


def no_strategy(factory: SmarketsClientFactory) -> None:
    """A strategy that does nothing."""


def _client(service: Any) -> SmarketsClientFactory:
    """The client factory of the first service under ``service`` that has one."""
    for child in getattr(service, "services", ()):
        factory = getattr(child, "factory", None)
        if isinstance(factory, SmarketsClientFactory):
            return factory
        try:
            return _client(child)
        except AssertionError:
            pass
    raise AssertionError("no client factory in the service")
