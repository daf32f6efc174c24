"""journal replay: a recording against the simulated exchange, replayed, ends in the same state."""

from __future__ import annotations

import io
import sys
from collections import Counter
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import __main__ as command
from smarkets_twisted.exchange.accounts import default_accounts
from smarkets_twisted.exchange.liquidity import LiquiditySimulator, with_liquidity_account
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.journal import Journal, read_journal, starts_session
from smarkets_twisted.replay import Replay, replay_factory
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.testing import InMemoryExchange
from smarkets_twisted.trading.demo import MarketMaker

MARKETS = [100, 200]


def final_state(factory: SmarketsClientFactory) -> dict[str, Any]:
    """What a replay must reproduce: books, orders, positions and the balance."""
    books = {
        market_id: {contract_id: (dict(book.bids), dict(book.offers)) for contract_id, book in market.contracts.items()}
        for market_id in MARKETS
        if (market := factory.books.get(market_id)) is not None
    }
    orders = sorted(
        (order.order_id or 0, order.state.value, order.side, order.price, order.quantity, order.executed_quantity,
         order.remaining_quantity, order.reference)
        for order in factory.orders
    )
    positions = {
        market_id: ({contract_id: (held.bought, held.sold, held.bought_stake, held.sold_stake)
                     for contract_id, held in market.contracts.items()}, factory.positions.worst_loss(market_id))
        for market_id, market in factory.positions.markets.items()
    }
    return {"books": books, "orders": orders, "positions": positions, "balance": factory.positions.balance}


def record(path: str) -> SmarketsClientFactory:
    """The demo market maker trading for 80 s with the liquidity bot, through a dropped connection."""
    market = InMemoryExchange(accounts=with_liquidity_account(default_accounts()))
    liquidity = LiquiditySimulator(market.exchange, market.clock)
    liquidity.startService()
    journal = Journal(path)
    journal.start(market.clock.seconds())
    factory = SmarketsClientFactory(ClientSettings(username="demo", password="demo"), market.clock)
    factory.journal = journal
    demo = MarketMaker(factory, MARKETS, interval=5)
    demo.start()
    connection = market.connect(factory)
    market.advance(41)
    connection.drop()
    market.advance(3)
    market.connect(factory)
    market.advance(40)
    demo.stop()
    liquidity.stopService()
    journal.close()
    return factory


class ReplayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        recorded = record(self.path)
        self.recorded = final_state(recorded)
        # The recording is worth replaying: fills, a resume, both markets' books.
        self.assertGreater(len([order for order in recorded.orders if order.executed_quantity]), 5)
        self.assertEqual(set(self.recorded["books"]), set(MARKETS))
        self.assertTrue(self.recorded["positions"])
        self.assertIsNotNone(self.recorded["balance"])

    def test_replay_remakes_the_recorded_requests(self) -> None:
        clock = Clock()
        replay = Replay(self.path, lambda: replay_factory(self.path, clock))
        replay.run(clock)
        self.assertEqual(replay.unmatched, 0)
        self.assertEqual(final_state(replay.factory), self.recorded)

    def test_replay_with_the_strategy_makes_the_same_decisions(self) -> None:
        clock = Clock()

        def client() -> SmarketsClientFactory:
            factory = replay_factory(self.path, clock)
            MarketMaker(factory, MARKETS, interval=5).start()
            return factory

        replay = Replay(self.path, client, reissue=False)
        replay.run(clock)
        self.assertEqual(replay.unmatched, 0)
        self.assertEqual(final_state(replay.factory), self.recorded)

    def test_realtime_keeps_the_recorded_pace(self) -> None:
        clock = Clock()
        clock.advance(1000)  # the replay's time need not be the recording's
        replay = Replay(self.path, lambda: replay_factory(self.path, clock))
        done = replay.run_realtime(clock)
        times = [entry["time"] for entry in read_journal(self.path)]
        for elapsed in (10, 45, 60):
            clock.advance(elapsed - (clock.seconds() - 1000))
            self.assertEqual(replay.entries, sum(1 for t in times if t - times[0] <= elapsed))
        clock.advance(times[-1] - times[0])
        self.successResultOf(done)
        self.assertEqual(final_state(replay.factory), self.recorded)

    def test_replay_command_prints_the_final_state(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        self.assertEqual(command.main(["journal", "replay", self.path]), 0)
        text = out.getvalue()
        self.assertTrue(text.startswith("replayed "), text)
        self.assertIn("market 100 [1001 ", text)
        self.assertRegex(text, r"\d+ orders: .*filled")
        out.truncate(0)
        out.seek(0)
        self.assertEqual(command.main(["journal", "replay", self.path, "--strategy", "tests.test_replay:maker"]), 0)
        self.assertEqual(out.getvalue(), text)  # the strategy, built and started, made the same orders
        self.assertEqual(command.main(["journal", "replay", self.path, "--strategy", "nowhere:nothing"]), 1)
        self.assertIn("cannot load --strategy", err.getvalue())

    def test_the_log_bears_the_recorded_times(self) -> None:
        """As fast as it can, the replay's clock is the recording's: so are its log lines' times."""
        events: list[dict[str, Any]] = []
        test = self

        class Beginner:
            def beginLoggingTo(self, observers: list[Any], redirectStandardIO: bool) -> None:
                for observer in observers:
                    globalLogPublisher.addObserver(observer)
                    test.addCleanup(globalLogPublisher.removeObserver, observer)

        self.patch(command, "globalLogBeginner", Beginner())
        self.patch(command, "textFileLogObserver", lambda f: events.append)
        self.patch(sys, "stdout", io.StringIO())
        self.assertEqual(command.main(["journal", "replay", "--log", self.path]), 0)
        times = [entry["time"] for entry in read_journal(self.path)]
        logged = [event["log_time"] for event in events]
        self.assertGreater(len(logged), 10)
        self.assertTrue(all(times[0] <= t <= times[-1] for t in logged), (times[0], times[-1], logged[:3]))


class RefusedResumeTests(SynchronousTestCase):
    def test_a_new_session_after_a_refused_resume_is_followed(self) -> None:
        """The exchange restarted: it refuses the client's resume and the client starts a new session, where
        the factory renews the strategy's setting by itself before the strategy asks again (a trial's
        recording). The replayed client renews it too: the replay makes the recorded renewal no second time."""
        path = self.mktemp()
        first = InMemoryExchange()
        journal = Journal(path)
        journal.start(first.clock.seconds())
        factory = SmarketsClientFactory(ClientSettings(username="demo", password="demo"), first.clock)
        factory.journal = journal
        MarketMaker(factory, MARKETS, interval=5).start()
        first.connect(factory)
        first.advance(12)
        first.connections[0].drop()
        restarted = InMemoryExchange(first.clock)
        restarted.connect(factory)  # the resume, refused
        restarted.connect(factory)
        restarted.advance(12)
        journal.close()
        sent = [entry["type"] for entry in read_journal(path) if entry.get("dir") == "out"]
        self.assertEqual(sent.count("seto.settings"), 3)  # the strategy's; the factory's and the strategy's
        clock = Clock()
        replay = Replay(path, lambda: replay_factory(path, clock))
        replay.run(clock)
        self.assertEqual(replay.unmatched, 0)
        self.assertEqual(final_state(replay.factory), final_state(factory))


def maker(factory: SmarketsClientFactory) -> MarketMaker:
    """The recording's strategy, for --strategy."""
    return MarketMaker(factory, MARKETS, interval=5)


def record_two_runs(path: str) -> tuple[SmarketsClientFactory, SmarketsClientFactory, dict[str, Any]]:
    """The demo trading, its process killed (kill -9) and restarted on the same journal and state.

    The second run starts a new session that asks for the account events
    since the last one the first run saw (as its state file has it): the
    exchange cancelled the first run's quotes when its session failed, and
    the liquidity bot may fill them first.  Returns both runs' factories and
    the final state of the second when it was killed.
    """
    market = InMemoryExchange(accounts=with_liquidity_account(default_accounts()))
    liquidity = LiquiditySimulator(market.exchange, market.clock)
    liquidity.startService()
    runs = []
    account_sequence = None
    for seconds in (41, 40):
        journal = Journal(path)
        journal.start(market.clock.seconds())
        factory = SmarketsClientFactory(
            ClientSettings(username="demo", password="demo", account_sequence=account_sequence), market.clock)
        factory.journal = journal
        demo = MarketMaker(factory, MARKETS, interval=5)
        demo.start()
        connection = market.connect(factory)
        market.advance(seconds)
        runs.append(factory)
        account_sequence = factory.account_sequence
        journal.close()  # killed: the journal has what was written, no disconnection, no logout
        killed = final_state(factory)
        connection.drop()
        demo.stop()
        factory.stop()
        market.advance(20)  # down long enough for the exchange to end the session
    liquidity.stopService()
    return runs[0], runs[1], killed


class TwoRunsTests(SynchronousTestCase):
    """A journal written by a process and its restarted successor replays as the two runs were."""

    def setUp(self) -> None:
        self.path = self.mktemp()
        first, second, self.recorded = record_two_runs(self.path)
        entries = list(read_journal(self.path))
        # Worth replaying: two runs, each a new session, the second told of the first's orders.
        self.assertEqual([e["event"] for e in entries if "event" in e], ["opened", "connected"] * 2)
        self.assertEqual(sum(1 for e in entries if starts_session(e)), 2)
        restarted = [n for n, e in enumerate(entries) if e.get("event") == "opened"][1]
        told = {e["message"][e["type"][len("seto."):]]["order_id"] for e in entries[restarted:]
                if e.get("dir") == "in" and e["type"] in ("seto.order_cancelled", "seto.order_executed")}
        self.assertTrue({str(order.order_id) for order in first.orders} & told)
        self.assertTrue(any(order.executed_quantity for order in second.orders))

    def replay(self, path: str) -> Replay:
        clock = Clock()
        replay = Replay(path, lambda: replay_factory(path, clock))
        replay.run(clock)
        return replay

    def test_the_second_run_is_replayed_from_a_fresh_client(self) -> None:
        replay = self.replay(self.path)
        self.assertEqual(replay.runs, 2)
        self.assertEqual(replay.unmatched, 0)
        self.assertEqual(final_state(replay.factory), self.recorded)

    def without_marks(self, *runs: int) -> str:
        """A copy of the journal without the ``opened`` lines of these runs (1: the first)."""
        copy = self.mktemp()
        with open(self.path) as recorded, open(copy, "w") as f:
            marks = 0
            for line in recorded:
                marks += '"event":"opened"' in line
                if '"event":"opened"' not in line or marks not in runs:
                    f.write(line)
        return copy

    def run_command(self, *arguments: str) -> tuple[int, str, str]:
        """``python -m smarkets_twisted`` with these arguments: its exit status, stdout and stderr."""
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        return command.main(list(arguments)), out.getvalue(), err.getvalue()

    def test_a_journal_older_than_the_run_marks_is_replayed_the_same(self) -> None:
        replay = self.replay(self.without_marks(1, 2))
        self.assertEqual(replay.runs, 2)
        self.assertEqual(final_state(replay.factory), self.recorded)

    def test_the_command_prints_the_second_runs_orders(self) -> None:
        status, out, err = self.run_command("journal", "replay", self.path)
        self.assertEqual((status, err), (0, ""))
        states = Counter(state for _, state, *_ in self.recorded["orders"])
        orders = f"{sum(states.values())} orders: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        self.assertIn(orders + "\n", out)

    def test_what_the_replay_cannot_follow_stops_it_with_a_line(self) -> None:
        # The second run's mark lost: a new session while the replayed client holds one.
        status, out, err = self.run_command("journal", "replay", self.without_marks(2))
        self.assertEqual((status, out), (1, ""))
        self.assertRegex(err, r"^error: at [0-9.]+: the recording starts a new session where the replayed"
                                         r" client still holds one: the replay cannot follow\n$")
