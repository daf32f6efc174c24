"""--state-file: a restarted client gets the fills it missed, each once."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smarkets_twisted import tap
from smarkets_twisted.exchange.server import ExchangeFactory
from smarkets_twisted.exchange.service import Exchange
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.framing import encode_frame
from smarkets_twisted.payloads import application_message
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.state import StateFile, StateFileError
from smarkets_twisted.testing import InMemoryConnection, InMemoryExchange
from tests.exchange_helpers import HOME, MARKET, markets, two_accounts
from tests.scripted import logged_in

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RestartTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.market = InMemoryExchange(accounts=two_accounts(), catalogue=markets())
        self.bob, _ = self.market.client("bob", "bob-pw")
        self.market.flush()
        os.environ[tap.PASSWORD_VARIABLE] = "alice-pw"
        self.addCleanup(os.environ.pop, tap.PASSWORD_VARIABLE)
        self.state_path = self.mktemp()
        #: Every fill alice's processes were told of: (order id, executed so far).
        self.fills: list[tuple[int, int]] = []

    def start_alice(self, *extra: str) -> tuple[SmarketsClientFactory, InMemoryConnection]:
        """A new `twistd smarkets` process for alice, built from its options."""
        options = tap.Options()
        options.parseOptions(["--endpoint", "tcp:127.0.0.1:1", "--username", "alice", *extra])
        factory = tap.build_client(options, self.market.clock)
        factory.add_handler("seto.order_executed",
                            lambda fill: self.fills.append((fill.order_id, fill.total_executed_quantity)))
        connection = self.market.connect(factory)
        self.market.flush()
        return factory, connection

    def bob_buys(self, quantity: int) -> None:
        d = self.bob.order(MARKET, HOME, seto_pb2.SIDE_BUY, quantity, 2500, tif=seto_pb2.IMMEDIATE_OR_CANCEL)
        self.market.flush()
        self.successResultOf(d)

    def run_with_a_restart(self, *extra: str) -> int:
        alice, connection = self.start_alice(*extra)
        d = alice.order(MARKET, HOME, seto_pb2.SIDE_SELL, 100000, 2500)
        self.market.flush()
        order_id: int = self.successResultOf(d).order_id
        self.bob_buys(10000)
        connection.drop()  # the process dies: no logout, its session is gone with it
        self.bob_buys(20000)  # fills while alice is down
        self.bob_buys(30000)
        restarted, _ = self.start_alice(*extra)
        self.assertIsNotNone(restarted.current)
        self.bob_buys(5000)  # and one after the restart
        return order_id

    def test_every_fill_counted_once_across_a_restart(self) -> None:
        order_id = self.run_with_a_restart("--state-file", self.state_path)
        self.assertEqual(self.fills, [(order_id, 10000), (order_id, 30000), (order_id, 60000), (order_id, 65000)])
        alice = self.market.exchange.accounts.get("alice")
        assert alice is not None
        self.assertEqual(StateFile(self.state_path, "alice").load(), alice.account_sequence)

    def test_without_a_state_file_the_missed_fills_are_lost(self) -> None:
        order_id = self.run_with_a_restart()
        self.assertEqual(self.fills, [(order_id, 10000), (order_id, 65000)])


class SavedPerReadTests(SynchronousTestCase):
    """The state file is saved once per read of the connection, after every handler of it ran."""

    def test_a_read_of_many_account_events_saves_once_after_their_handlers(self) -> None:
        exchange, factory, protocol = logged_in(Clock())
        handled: list[int] = []
        saves: list[tuple[int, int]] = []  # (sequence saved, events handled by then)
        factory.add_handler("seto.order_cancelled", lambda message: handled.append(message.account_sequence_64))

        class Counting(StateFile):
            def save(self, account_sequence: int) -> None:
                saves.append((account_sequence, len(handled)))
                super().save(account_sequence)

        path = self.mktemp()
        Counting(path, "user").attach(factory)
        cancels = [application_message("order_cancelled", order_id=n, reason=seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED,
                                       account_sequence_64=n) for n in range(1, 101)]
        frames = [encode_frame(body) for body in exchange.numbered(cancels)]
        protocol.dataReceived(b"".join(frames[:60]))
        self.assertEqual(saves, [(60, 60)])
        protocol.dataReceived(b"".join(frames[60:]))
        self.assertEqual(saves, [(60, 60), (100, 100)])
        exchange.send_session(eto_pb2.PAYLOAD_HEARTBEAT)  # no account event: nothing to save
        self.assertEqual(saves, [(60, 60), (100, 100)])
        self.assertEqual(StateFile(path, "user").load(), 100)


class StateFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp())

    def test_not_with_the_embedded_exchange(self) -> None:
        with self.assertRaises(usage.UsageError) as caught:
            tap.Options().parseOptions(["--state-file", str(self.path)])
        self.assertIn("needs --endpoint", str(caught.exception))

    def test_saved_atomically_and_read_back(self) -> None:
        state = StateFile(str(self.path), "alice")
        self.assertIsNone(state.load())
        state.save(41)
        state.save(42)
        self.assertEqual(state.load(), 42)
        self.assertEqual(os.listdir(self.path.parent), [self.path.name])

    def test_unusable_files_are_named(self) -> None:
        for text, words in [("{", "is not JSON"), ("{}", "has no account_sequence"),
                            ('{"username": "bob", "account_sequence": 3}', "is for 'bob', not 'alice'")]:
            self.path.write_text(text)
            with self.assertRaises(StateFileError) as caught:
                StateFile(str(self.path), "alice").load()
            self.assertIn(words, str(caught.exception))
            self.assertIn(str(self.path), str(caught.exception))

    def test_the_log_says_what_was_loaded_and_where_the_client_resumes(self) -> None:
        factory = SmarketsClientFactory(ClientSettings(username="alice", password="alice-pw"))
        for saved, said in [(None, f"state file {self.path}: none yet; it is written after the first account event"),
                            (42, f"state file {self.path}: account sequence 42; the exchange is asked for every"
                                 " account event after it")]:
            if saved is not None:
                StateFile(str(self.path), "alice").save(saved)
            state = StateFile(str(self.path), "alice")
            self.assertEqual(state.load(), saved)
            with capturedLogs() as events:
                state.attach(factory)
            self.assertEqual([formatEvent(event) for event in events], [said])

    def test_a_failed_save_is_logged_not_raised(self) -> None:
        state = StateFile(str(self.path / "no-such-directory" / "state"), "alice")
        with capturedLogs() as events:
            state.save(1)
            state.save(2)
        # One line for the trouble, not one per event.
        self.assertEqual(len(events), 1)
        self.assertIn("cannot save state file", formatEvent(events[0]))

    def test_bad_state_file_stops_start_up(self) -> None:
        self.path.write_text("garbage")
        with self.assertRaises(usage.UsageError) as caught:
            password = self.path.parent / "password"
            password.write_text("pw")
            tap.Options().parseOptions(["-e", "tcp:127.0.0.1:1", "-u", "me", "-p", str(password),
                                        "--state-file", str(self.path)])
        self.assertIn("is not JSON", str(caught.exception))


class _Child(protocol.ProcessProtocol):
    """A `twistd smarkets` process whose lines matching ``pattern`` (PLACED and FILL lines) are awaited."""

    def __init__(self, pattern: str = r"(PLACED|FILL) [\d ]+$") -> None:
        self.pattern = re.compile(pattern)
        self.lines: list[str] = []
        self._buffer = b""
        self._waiting: list[tuple[Callable[[list[str]], bool], defer.Deferred[None]]] = []
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *complete, self._buffer = self._buffer.split(b"\n")
        # twistd logs what the strategy prints: "... [stdout#info] FILL 1 10000".
        self.lines.extend(match.group(0) for line in complete
                          if (match := self.pattern.search(line.decode())) is not None)
        for entry in list(self._waiting):
            if entry[0](self.lines):
                self._waiting.remove(entry)
                entry[1].callback(None)

    def until(self, condition: Callable[[list[str]], bool]) -> defer.Deferred[None]:
        deferred: defer.Deferred[None] = defer.Deferred()
        if condition(self.lines):
            deferred.callback(None)
        else:
            self._waiting.append((condition, deferred))
        return deferred

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class ProcessRestartTests(TestCase):
    """The real thing: `twistd smarkets --state-file` killed and started again."""

    timeout = 60

    @defer.inlineCallbacks
    def test_a_killed_and_restarted_process_gets_every_fill_once(self) -> Any:
        exchange = Exchange(reactor, two_accounts(), markets())
        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(ExchangeFactory(exchange, reactor))
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [exchange.registry.end(s) for s in list(exchange.registry)])
        bob = SmarketsClientFactory(ClientSettings(username="bob", password="bob-pw"), reactor)
        yield clientFromString(reactor, f"tcp:127.0.0.1:{port.getHost().port}").connect(bob)
        yield bob.whenLoggedIn()
        self.addCleanup(lambda: bob.logout(timeout=5).addErrback(lambda _: None))
        state = os.path.abspath(self.mktemp())
        fills: list[str] = []

        def buy(quantity: int) -> Any:
            return bob.order(MARKET, HOME, seto_pb2.SIDE_BUY, quantity, 2500, tif=seto_pb2.IMMEDIATE_OR_CANCEL)

        first = self.spawn(port.getHost().port, state, place=True)
        yield first.until(lambda lines: any(line.startswith("PLACED") for line in lines))
        yield buy(10000)
        yield first.until(lambda lines: any(line.startswith("FILL") for line in lines))
        first.transport.signalProcess("KILL")  # no logout, nothing flushed on the way out
        yield first.ended
        fills += [line for line in first.lines if line.startswith("FILL")]
        yield buy(20000)  # while no process runs
        yield buy(30000)

        second = self.spawn(port.getHost().port, state, place=False)
        yield second.until(lambda lines: len(lines) >= 2)
        yield buy(5000)
        yield second.until(lambda lines: len(lines) >= 3)
        second.transport.signalProcess("TERM")
        yield second.ended
        fills += second.lines
        order_id = next(line.split()[1] for line in first.lines if line.startswith("PLACED"))
        self.assertEqual(fills, [f"FILL {order_id} {total}" for total in (10000, 30000, 60000, 65000)])

    def spawn(self, port: int, state: str, place: bool) -> _Child:
        child = _Child()
        environment = dict(os.environ, SMARKETS_PASSWORD="alice-pw", PYTHONPATH=ROOT)
        if place:
            environment["FILL_REPORTER_PLACE"] = "1"
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                "smarkets", "--endpoint", f"tcp:127.0.0.1:{port}", "--username", "alice", "--state-file", state,
                "--strategy", "tests.fill_reporter:start", "--status-interval", "0"]
        reactor.spawnProcess(child, sys.executable, argv, env=environment, path=os.path.dirname(state))
        return child
