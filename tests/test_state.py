"""--state-file: a restarted client gets the fills it missed, each once."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import tap
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.state import StateFile, StateFileError
from smarkets_twisted.testing import InMemoryConnection, InMemoryExchange
from tests.exchange_helpers import HOME, MARKET, markets, two_accounts


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


class StateFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp())

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
        options = tap.Options()
        options.parseOptions(["--state-file", str(self.path)])
        with self.assertRaises(usage.UsageError) as caught:
            tap.build_client(options, Clock())
        self.assertIn("is not JSON", str(caught.exception))
