"""factory.books: kept for every subscribed market, stale when they cannot be trusted."""

from __future__ import annotations

from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.trading.books import BookListener, Level, MarketBook
from tests.exchange_helpers import AWAY, HOME, MARKET
from tests.trading_helpers import TradingTestCase

BUY = seto_pb2.SIDE_BUY
SELL = seto_pb2.SIDE_SELL


class Recorder(BookListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, int, int | None]] = []

    def book_changed(self, book: MarketBook, contract_id: int | None) -> None:
        self.events.append(("changed", book.market_id, contract_id))

    def book_stale(self, book: MarketBook) -> None:
        self.events.append(("stale", book.market_id, None))

    def book_live(self, book: MarketBook) -> None:
        self.events.append(("live", book.market_id, None))


class BookTests(TradingTestCase):
    def assertBookMatchesExchange(self, factory: SmarketsClientFactory) -> None:
        theirs = self.exchange.book(MARKET)
        assert theirs is not None
        ours = factory.books[MARKET]
        self.assertFalse(ours.stale)
        self.assertEqual(ours.executed_volume, theirs.executed_volume)
        for contract in theirs.contracts:
            mine = ours.contracts[contract.contract_id]
            self.assertEqual(mine.bids, {level.price: level.quantity for level in contract.bids})
            self.assertEqual(mine.offers, {level.price: level.quantity for level in contract.offers})

    def test_kept_from_quotes_for_a_subscribed_market(self) -> None:
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000))
        self.assertNotIn(MARKET, self.bob.books)
        self.settle(self.bob.subscribe(MARKET))
        self.assertBookMatchesExchange(self.bob)
        for price in (4100, 4200, 3900):
            self.settle(self.alice.order(MARKET, HOME, BUY, 5_000, price))
        self.settle(self.alice.order(MARKET, HOME, SELL, 7_000, 4500))
        home = self.bob.books[MARKET].contracts[HOME]
        self.assertEqual((home.best_bid, home.best_offer, home.mid), (Level(4200, 5_000), Level(4500, 7_000), 4350))
        self.assertEqual(home.depth(BUY, 2), [Level(4200, 5_000), Level(4100, 5_000)])
        self.assertEqual(home.depth(SELL), [Level(4500, 7_000)])
        self.settle(self.bob.order(MARKET, HOME, SELL, 12_000, 4000))
        self.assertBookMatchesExchange(self.bob)
        self.assertEqual((home.last_execution.price, home.traded_volume) if home.last_execution else None,
                         (4000, 12_000))
        self.assertEqual(self.bob.books[MARKET].contracts[AWAY].best_bid, None)

    def test_stale_on_a_drop_live_at_the_snapshot_on_resume(self) -> None:
        recorder = Recorder()
        self.bob.books.add_listener(recorder)
        self.settle(self.bob.subscribe(MARKET))
        self.assertEqual(recorder.events, [("live", MARKET, None), ("changed", MARKET, None)])
        self.bob_connection.drop()
        self.assertTrue(self.bob.books[MARKET].stale)
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000))  # while bob sees nothing
        self.assertEqual(recorder.events[2:], [("stale", MARKET, None)])
        self.market.connect(self.bob)
        self.market.flush()
        self.assertEqual(recorder.events[3:], [("live", MARKET, None), ("changed", MARKET, None)])
        self.assertBookMatchesExchange(self.bob)
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4100))
        self.assertEqual(recorder.events[5:], [("changed", MARKET, HOME)])
        self.assertBookMatchesExchange(self.bob)

    def test_stale_when_the_session_ends_and_live_in_the_next(self) -> None:
        self.settle(self.bob.subscribe(MARKET))
        self.bob.stop()
        self.assertTrue(self.bob.books[MARKET].stale)
        self.bob_connection.drop()
        self.market.connect(self.bob)  # a new session renews the subscription
        self.market.flush()
        self.assertBookMatchesExchange(self.bob)

    def test_unsubscribed_markets_are_forgotten(self) -> None:
        recorder = Recorder()
        self.bob.books.add_listener(recorder)
        self.settle(self.bob.subscribe(MARKET))
        self.settle(self.bob.unsubscribe(MARKET))
        self.assertNotIn(MARKET, self.bob.books)
        self.assertEqual(recorder.events[-1], ("stale", MARKET, None))

    def test_a_snapshot_arriving_after_the_unsubscribe_makes_no_book(self) -> None:
        """Else the book would look live while no quote moves it again."""
        subscribed = self.bob.subscribe(MARKET)
        self.bob.unsubscribe(MARKET)  # before the snapshot answering the subscription is in
        self.settle(subscribed)
        self.assertNotIn(MARKET, self.bob.books)
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000))
        self.assertNotIn(MARKET, self.bob.books)
