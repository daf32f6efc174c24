"""journal replay: a recording against the simulated exchange, replayed, ends in the same state."""

from __future__ import annotations

import io
import sys
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import __main__ as command
from smarkets_twisted.exchange.accounts import default_accounts
from smarkets_twisted.exchange.liquidity import LiquiditySimulator, with_liquidity_account
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.journal import Journal, read_journal
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
    journal.start()
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
        factory = replay_factory(self.path, clock)
        replay = Replay(self.path, factory)
        replay.run(clock)
        self.assertEqual(replay.unmatched, 0)
        self.assertEqual(final_state(factory), self.recorded)

    def test_replay_with_the_strategy_makes_the_same_decisions(self) -> None:
        clock = Clock()
        factory = replay_factory(self.path, clock)
        replay = Replay(self.path, factory, reissue=False)
        MarketMaker(factory, MARKETS, interval=5).start()
        replay.run(clock)
        self.assertEqual(replay.unmatched, 0)
        self.assertEqual(final_state(factory), self.recorded)

    def test_realtime_keeps_the_recorded_pace(self) -> None:
        clock = Clock()
        clock.advance(1000)  # the replay's time need not be the recording's
        factory = replay_factory(self.path, clock)
        replay = Replay(self.path, factory)
        done = replay.run_realtime(clock)
        times = [entry["time"] for entry in read_journal(self.path)]
        for elapsed in (10, 45, 60):
            clock.advance(elapsed - (clock.seconds() - 1000))
            self.assertEqual(replay.entries, sum(1 for t in times if t - times[0] <= elapsed))
        clock.advance(times[-1] - times[0])
        self.successResultOf(done)
        self.assertEqual(final_state(factory), self.recorded)

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


def maker(factory: SmarketsClientFactory) -> MarketMaker:
    """The recording's strategy, for --strategy."""
    return MarketMaker(factory, MARKETS, interval=5)
