"""factory.books: kept for every subscribed market, stale when they cannot be trusted."""

from __future__ import annotations

from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.handlers import ClientListener
from smarkets_twisted.payloads import Payload, handler_name, session_message
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.trading.books import BookListener, Level, MarketBook
from tests.exchange_helpers import AWAY, HOME, MARKET
from tests.test_exchange_client import Recorder as Messages
from tests.trading_helpers import ExchangeOutput, TradingTestCase

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


class BookTestCase(TradingTestCase):
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


class BookTests(BookTestCase):
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


class Gaps(ClientListener):
    def __init__(self) -> None:
        self.events: list[str] = []

    def gap_opened(self) -> None:
        self.events.append("opened")

    def gapfilled(self) -> None:
        self.events.append("gapfilled")

    def gap_closed(self) -> None:
        self.events.append("closed")


class ReplayGapTests(BookTestCase):
    """A gap in what the exchange sent: the books wait for the replay, and for a snapshot if it gapfilled."""

    def setUp(self) -> None:
        super().setUp()
        self.recorder = Recorder()
        self.bob.books.add_listener(self.recorder)
        self.settle(self.bob.subscribe(MARKET))
        self.lost: list[Payload] = []

    def lose_the_next_delta(self, payload: Payload) -> list[Payload]:
        """The network loses the first contract_quotes to bob; the replay brings it back."""
        if handler_name(payload) == "seto.contract_quotes" and not payload.eto_payload.is_replay and not self.lost:
            self.lost.append(payload)
            return []
        return [payload]

    def test_stale_while_the_replay_is_outstanding_live_when_it_resent_everything(self) -> None:
        held: list[Payload] = []

        def hold_the_replay(payload: Payload) -> list[Payload]:
            if payload.eto_payload.is_replay:
                held.append(payload)
                return []
            return self.lose_the_next_delta(payload)

        output = ExchangeOutput(self.bob_connection, hold_the_replay)
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000))  # lost on its way to bob
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4100))  # bob sees the gap, asks for a replay
        self.assertTrue(held)
        self.assertTrue(self.bob.books[MARKET].stale)
        self.assertEqual(self.recorder.events[2:], [("stale", MARKET, None)])
        output.rewrite = lambda payload: [payload]
        output.send(held)
        self.market.flush()
        self.assertEqual(self.recorder.events[3:], [("live", MARKET, None), ("changed", MARKET, None)])
        self.assertBookMatchesExchange(self.bob)
        self.assertEqual(self.bob.books[MARKET].contracts[HOME].best_bid, Level(4100, 10_000))

    def test_a_replay_that_gapfilled_market_data_is_followed_by_a_new_snapshot(self) -> None:
        snapshots = Messages(self.bob, "seto.market_quotes")

        def gapfill_the_lost_delta(payload: Payload) -> list[Payload]:
            """An exchange that no longer holds the lost delta: a gapfill stands in for it."""
            if payload.eto_payload.is_replay and payload.eto_payload.seq == self.lost[0].eto_payload.seq:
                gapfill = session_message(eto_pb2.PAYLOAD_GAPFILL)
                gapfill.eto_payload.seq = payload.eto_payload.seq
                gapfill.eto_payload.is_replay = True
                return [gapfill]
            return self.lose_the_next_delta(payload)

        ExchangeOutput(self.bob_connection, gapfill_the_lost_delta)
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000))
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4100))
        self.assertEqual(len(snapshots["seto.market_quotes"]), 1)  # the books asked for one
        self.assertEqual(self.recorder.events[2:], [("stale", MARKET, None), ("live", MARKET, None),
                                                    ("changed", MARKET, None)])
        self.assertBookMatchesExchange(self.bob)
        self.assertEqual(self.bob.books[MARKET].contracts[HOME].depth(BUY),
                         [Level(4100, 10_000), Level(4000, 10_000)])

    def test_a_resume_waits_for_its_own_snapshot_without_asking_again(self) -> None:
        snapshots = Messages(self.bob, "seto.market_quotes")
        gaps = Gaps()
        self.bob.add_listener(gaps)
        ExchangeOutput(self.bob_connection, self.lose_the_next_delta)
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000))  # lost in the drop
        self.bob_connection.drop()
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4100))
        self.market.connect(self.bob)
        self.market.flush()
        self.assertEqual(gaps.events, ["opened", "gapfilled", "closed"])  # the login_response's seq
        self.assertEqual(len(snapshots["seto.market_quotes"]), 1)
        self.assertEqual(self.recorder.events[2:], [("stale", MARKET, None), ("live", MARKET, None),
                                                    ("changed", MARKET, None)])
        self.assertBookMatchesExchange(self.bob)
