"""Tests for smarkets_twisted.exchange.engine: matching, money, market states."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.exchange.accounts import Account, Accounts
from smarkets_twisted.exchange.catalogue import Catalogue, Contract, Market
from smarkets_twisted.exchange.engine import MarketStateError, MatchingEngine
from smarkets_twisted.exchange.events import (
    AccountEvent,
    BalanceChanged,
    BookChanged,
    CancelAllAccepted,
    CancelAllRejected,
    CancelRejected,
    ContractBook,
    EngineEvent,
    Execution,
    ExecutionVoided,
    Level,
    MarketBook,
    MarketStateChanged,
    OrderAccepted,
    OrderCancelled,
    OrderEvent,
    OrderExecuted,
    OrderInvalid,
    OrderRejected,
    PendingReplace,
    QuantityReduced,
    ReduceRejected,
    ReplaceAccepted,
    ReplaceRejected,
)
from smarkets_twisted.proto import seto_pb2 as seto
from smarkets_twisted.trading.prices import TICKS, is_tick

BUY, SELL = seto.SIDE_BUY, seto.SIDE_SELL
GTC, IOC, KIP, GTH = seto.GOOD_TIL_CANCELLED, seto.IMMEDIATE_OR_CANCEL, seto.KEEP_IN_PLAY, seto.GOOD_TILL_HALTED
LIVE, OPEN, HALTED = seto.MARKET_STATE_LIVE, seto.MARKET_STATE_OPEN, seto.MARKET_STATE_HALTED
SETTLED, VOIDED, NEW = seto.MARKET_STATE_SETTLED, seto.MARKET_STATE_VOIDED, seto.MARKET_STATE_NEW
HOME, AWAY, DRAW = 1001, 1002, 1003
POUND = 10_000

_E = TypeVar("_E", bound=EngineEvent)


def of(kind: type[_E], events: list[EngineEvent]) -> list[_E]:
    """The events of one kind, in order."""
    return [event for event in events if isinstance(event, kind)]


def one(kind: type[_E], events: list[EngineEvent]) -> _E:
    """The single event of one kind."""
    found = of(kind, events)
    assert len(found) == 1, f"expected one {kind.__name__}, got {events}"
    return found[0]


def make_catalogue() -> Catalogue:
    return Catalogue(
        [
            Market(100, "Match odds", (Contract(HOME, "Home"), Contract(AWAY, "Away"), Contract(DRAW, "Draw")), LIVE),
            Market(200, "Pre-play", (Contract(2001, "Yes"), Contract(2002, "No")), OPEN),
            Market(300, "Not yet", (Contract(3001, "Yes"), Contract(3002, "No")), NEW),
        ]
    )


class EngineTestCase(SynchronousTestCase):
    """Four accounts with 1000.00 each, and a live, an open and a new market."""

    depth: int | None = 10

    def setUp(self) -> None:
        self.alice, self.bob, self.carol, self.dave = (
            Account(name, "pw", number, f"{name}@example.com", 1000 * POUND, history_limit=50)
            for number, name in enumerate(("alice", "bob", "carol", "dave"), start=1)
        )
        self.catalogue = make_catalogue()
        # Any price: these tests are about matching and money, in round figures; TickTests keep to the ladder.
        self.engine = MatchingEngine(
            Accounts([self.alice, self.bob, self.carol, self.dave]), self.catalogue, depth=self.depth, any_price=True
        )

    def order(
        self,
        account: Account,
        side: seto.Side,
        quantity: int,
        price: int,
        contract: int = HOME,
        market: int = 100,
        tif: seto.TimeInForceType = GTC,
    ) -> list[EngineEvent]:
        return self.engine.create_order(account, market, contract, side, quantity, price, tif)

    def place(self, account: Account, side: seto.Side, quantity: int, price: int, **kwargs: Any) -> int:
        """Place an order that must be accepted; return its id."""
        events = self.order(account, side, quantity, price, **kwargs)
        return one(OrderAccepted, events).order_id

    def bids_offers(self, contract: int = HOME, market: int = 100) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        book = self.engine.book(market)
        assert book is not None
        for contract_book in book.contracts:
            if contract_book.contract_id == contract:
                return contract_book.bids, contract_book.offers
        raise AssertionError(contract)


class CreateOrderTests(EngineTestCase):
    """order_create answered by accepted, invalid or rejected."""

    def test_accepted(self) -> None:
        events = self.engine.create_order(
            self.alice, 100, HOME, BUY, 40 * POUND, 2500, GTC, reference=77, label="mine", request_seq=5
        )
        self.assertEqual(
            events[0],
            OrderAccepted(
                username="alice",
                account_sequence=1,
                order_id=1,
                market_id=100,
                contract_id=HOME,
                side=BUY,
                price=2500,
                quantity=40 * POUND,
                tif=GTC,
                request_seq=5,
                reference=77,
                label="mine",
                available_balance=990 * POUND,
                exposure=10 * POUND,
            ),
        )
        self.assertEqual(
            events[1:],
            [
                BookChanged(market_id=100, contract_id=HOME, bids=(Level(2500, 40 * POUND),), offers=(), executions=()),
                BalanceChanged(
                    username="alice",
                    account_sequence=2,
                    reason="order",
                    balance=1000 * POUND,
                    available_balance=990 * POUND,
                    exposure=10 * POUND,
                ),
            ],
        )
        self.assertEqual(self.alice.exposure, 10 * POUND)
        self.assertEqual(self.alice.balance, 1000 * POUND)

    def test_order_ids_increase(self) -> None:
        engine = MatchingEngine(Accounts([self.alice]), make_catalogue(), first_order_id=500)
        ids = [
            one(OrderAccepted, engine.create_order(self.alice, 100, HOME, BUY, POUND, price)).order_id
            for price in (1000, 1020, 1042)  # decimal odds 10, 9.8, 9.6: on the ladder
        ]
        self.assertEqual(ids, [500, 501, 502])

    def test_invalid(self) -> None:
        """Every problem is listed; nothing is sequenced or reserved."""
        cases = [
            (0, POUND, (seto.ORDER_INVALID_INVALID_PRICE,)),
            (10000, POUND, (seto.ORDER_INVALID_INVALID_PRICE,)),
            (5000, 0, (seto.ORDER_INVALID_INVALID_QUANTITY,)),
            (5000, -3, (seto.ORDER_INVALID_INVALID_QUANTITY,)),
            (-1, 0, (seto.ORDER_INVALID_INVALID_PRICE, seto.ORDER_INVALID_INVALID_QUANTITY)),
        ]
        for price, quantity, reasons in cases:
            events = self.engine.create_order(self.alice, 100, HOME, BUY, quantity, price, reference=3, request_seq=9)
            self.assertEqual(events, [OrderInvalid(username="alice", reasons=reasons, request_seq=9, reference=3)])
        self.assertEqual(self.alice.account_sequence, 0)
        self.assertEqual(self.alice.exposure, 0)

    def test_extreme_prices_valid(self) -> None:
        self.place(self.alice, BUY, POUND, 1)
        self.place(self.alice, SELL, POUND, 9999)

    def test_rejected(self) -> None:
        """Unknown market or contract, or a market not open for trading."""
        self.engine.set_market_state(200, HALTED)
        cases = [
            (999, HOME, seto.ORDER_REJECTED_MARKET_NOT_FOUND),
            (100, 9999, seto.ORDER_REJECTED_CONTRACT_NOT_FOUND),
            (100, 2001, seto.ORDER_REJECTED_CONTRACT_NOT_FOUND),
            (300, 3001, seto.ORDER_REJECTED_MARKET_NOT_OPEN),
            (200, 2001, seto.ORDER_REJECTED_MARKET_HALTED),
        ]
        for sequence, (market, contract, reason) in enumerate(cases, start=1):
            events = self.engine.create_order(
                self.alice, market, contract, BUY, POUND, 5000, reference=4, label="l", request_seq=sequence
            )
            self.assertEqual(
                events,
                [
                    OrderRejected(
                        username="alice",
                        account_sequence=sequence,
                        reason=reason,
                        request_seq=sequence,
                        reference=4,
                        label="l",
                    )
                ],
            )
        self.assertEqual(self.alice.exposure, 0)

    def test_rejected_when_settled_or_voided(self) -> None:
        self.engine.set_market_state(100, SETTLED, winner=HOME)
        self.engine.set_market_state(200, VOIDED)
        for market, contract in ((100, HOME), (200, 2001)):
            events = self.order(self.alice, BUY, POUND, 5000, contract=contract, market=market)
            self.assertEqual(one(OrderRejected, events).reason, seto.ORDER_REJECTED_MARKET_SETTLED)

    def test_funds_exactly_enough(self) -> None:
        """A buy whose liability is the whole available balance is accepted; one unit more is not."""
        self.place(self.alice, BUY, 2000 * POUND, 5000)
        self.assertEqual(self.alice.available_balance, 0)
        rejected = one(OrderRejected, self.order(self.bob, BUY, 2000 * POUND + 2, 5000))
        self.assertEqual(rejected.reason, seto.ORDER_REJECTED_INSUFFICIENT_FUNDS)
        self.assertEqual(self.bob.exposure, 0)
        self.assertEqual(self.bids_offers()[0], (Level(5000, 2000 * POUND),))

    def test_seller_liability(self) -> None:
        """A seller risks quantity * (1 - price)."""
        self.place(self.alice, SELL, 40 * POUND, 2500)
        self.assertEqual(self.alice.exposure, 30 * POUND)
        rejected = one(OrderRejected, self.order(self.bob, SELL, 1001 * POUND, 1))
        self.assertEqual(rejected.reason, seto.ORDER_REJECTED_INSUFFICIENT_FUNDS)

    def test_liabilities_round_up(self) -> None:
        """3 units at 33.33%: the buyer risks 0.9999 units, the seller 2.0001: reserve 1 and 3."""
        self.place(self.alice, BUY, 3, 3333)
        self.place(self.bob, SELL, 3, 3334, contract=AWAY)
        self.assertEqual((self.alice.exposure, self.bob.exposure), (1, 2))
        self.place(self.carol, SELL, 3, 3333, contract=DRAW)
        self.assertEqual(self.carol.exposure, 3)

    def test_insufficient_funds_counts_other_markets(self) -> None:
        self.place(self.alice, BUY, 1000 * POUND, 5000)
        self.place(self.alice, SELL, 1000 * POUND, 5000, contract=2001, market=200)
        self.assertEqual(self.alice.available_balance, 0)
        rejected = one(OrderRejected, self.order(self.alice, BUY, 2, 5000, contract=AWAY))
        self.assertEqual(rejected.reason, seto.ORDER_REJECTED_INSUFFICIENT_FUNDS)


class TickTests(EngineTestCase):
    """Production trades on the decimal-odds ladder: other prices are invalid, unless the engine allows any."""

    def setUp(self) -> None:
        super().setUp()
        self.ticked = MatchingEngine(Accounts([self.alice, self.bob]), make_catalogue())

    def test_every_tick_is_accepted(self) -> None:
        for price in TICKS:
            events = self.ticked.create_order(self.alice, 100, HOME, BUY, 1, price, IOC)
            self.assertFalse(of(OrderInvalid, events), price)

    def test_off_tick_order_is_invalid(self) -> None:
        for price in (3000, 4750, 5001, 9998):
            self.assertFalse(is_tick(price))
            (invalid,) = self.ticked.create_order(self.alice, 100, HOME, BUY, POUND, price, request_seq=3)
            self.assertEqual(
                invalid,
                OrderInvalid(
                    username="alice", reasons=(seto.ORDER_INVALID_INVALID_PRICE,), request_seq=3, reference=None
                ),
            )
        self.assertEqual(self.alice.account_sequence, 0)

    def test_off_tick_replace_is_refused(self) -> None:
        order_id = one(OrderAccepted, self.ticked.create_order(self.alice, 100, HOME, BUY, POUND, 2500)).order_id
        rejected = one(ReplaceRejected, self.ticked.replace(self.alice, order_id, 2600, POUND))
        self.assertEqual(rejected.detail, "invalid price")
        self.assertEqual([o.price for o in self.ticked.open_orders(self.alice)], [2500])

    def test_any_price_option(self) -> None:
        self.assertEqual(len(of(OrderAccepted, self.order(self.alice, BUY, POUND, 3001))), 1)


class MatchingTests(EngineTestCase):
    """Price-time priority, execution at the resting price, partial fills."""

    def test_no_cross_both_rest(self) -> None:
        self.place(self.alice, BUY, 10 * POUND, 4000)
        events = self.order(self.bob, SELL, 10 * POUND, 4100)
        self.assertEqual(of(OrderExecuted, events), [])
        self.assertEqual(self.bids_offers(), ((Level(4000, 10 * POUND),), (Level(4100, 10 * POUND),)))

    def test_buy_crosses_at_resting_price(self) -> None:
        sell = self.place(self.alice, SELL, 10 * POUND, 4000)
        events = self.order(self.bob, BUY, 10 * POUND, 4500)
        buy = one(OrderAccepted, events).order_id
        executed = of(OrderExecuted, events)
        self.assertEqual(
            [(e.username, e.order_id, e.price, e.quantity) for e in executed],
            [
                ("bob", buy, 4000, 10 * POUND),
                ("alice", sell, 4000, 10 * POUND),
            ],
        )
        self.assertEqual(executed[0].orig_price, 4500)
        self.assertEqual(self.bids_offers(), ((), ()))
        self.assertEqual(
            one(BookChanged, events),
            BookChanged(
                market_id=100,
                contract_id=HOME,
                bids=(),
                offers=(Level(4000, 0),),
                executions=(Execution(4000, 10 * POUND, BUY),),
            ),
        )

    def test_sell_crosses_at_resting_price(self) -> None:
        self.place(self.alice, BUY, 10 * POUND, 4500)
        events = self.order(self.bob, SELL, 10 * POUND, 4000)
        self.assertEqual({e.price for e in of(OrderExecuted, events)}, {4500})
        self.assertEqual(one(BookChanged, events).executions, (Execution(4500, 10 * POUND, SELL),))

    def test_price_time_priority(self) -> None:
        """Best price first, then the earliest order at that price."""
        first_at_40 = self.place(self.alice, SELL, 10 * POUND, 4000)
        second_at_40 = self.place(self.carol, SELL, 10 * POUND, 4000)
        best = self.place(self.bob, SELL, 10 * POUND, 3900)
        events = self.order(self.dave, BUY, 25 * POUND, 4000)
        fills = [(e.order_id, e.price, e.quantity) for e in of(OrderExecuted, events) if e.username != "dave"]
        self.assertEqual(
            fills, [(best, 3900, 10 * POUND), (first_at_40, 4000, 10 * POUND), (second_at_40, 4000, 5 * POUND)]
        )
        self.assertEqual(self.bids_offers(), ((), (Level(4000, 5 * POUND),)))
        self.assertEqual(one(BookChanged, events).offers, (Level(3900, 0), Level(4000, 5 * POUND)))

    def test_partial_fill_of_resting(self) -> None:
        sell = self.place(self.alice, SELL, 10 * POUND, 4000)
        events = self.order(self.bob, BUY, 4 * POUND, 4000)
        bob_fill, alice_fill = of(OrderExecuted, events)
        self.assertEqual((bob_fill.total_executed_quantity, bob_fill.available_quantity), (4 * POUND, 0))
        self.assertEqual((alice_fill.order_id, alice_fill.total_executed_quantity), (sell, 4 * POUND))
        self.assertEqual(alice_fill.available_quantity, 6 * POUND)
        self.assertEqual(self.bids_offers(), ((), (Level(4000, 6 * POUND),)))
        self.assertEqual(self.engine.open_orders(self.bob), [])

    def test_partial_fill_of_incoming_rests(self) -> None:
        self.place(self.alice, SELL, 4 * POUND, 4000)
        events = self.order(self.bob, BUY, 10 * POUND, 4200)
        bob_fill = one(OrderExecuted, [e for e in events if isinstance(e, AccountEvent) and e.username == "bob"])
        self.assertEqual((bob_fill.quantity, bob_fill.available_quantity), (4 * POUND, 6 * POUND))
        self.assertEqual(self.bids_offers(), ((Level(4200, 6 * POUND),), ()))
        self.assertEqual(
            one(BookChanged, events),
            BookChanged(
                market_id=100,
                contract_id=HOME,
                bids=(Level(4200, 6 * POUND),),
                offers=(Level(4000, 0),),
                executions=(Execution(4000, 4 * POUND, BUY),),
            ),
        )
        (open_order,) = self.engine.open_orders(self.bob)
        self.assertEqual((open_order.available_quantity, open_order.executed_quantity), (6 * POUND, 4 * POUND))

    def test_average_price(self) -> None:
        self.place(self.alice, SELL, 1 * POUND, 4000)
        self.place(self.carol, SELL, 2 * POUND, 4100)
        events = self.order(self.bob, BUY, 3 * POUND, 4100)
        bob_fills = [e for e in of(OrderExecuted, events) if e.username == "bob"]
        self.assertEqual([e.executed_avg_price for e in bob_fills], [4000, 4067])

    def test_ioc_remainder_cancelled(self) -> None:
        self.place(self.alice, SELL, 4 * POUND, 4000)
        events = self.order(self.bob, BUY, 10 * POUND, 4200, tif=IOC)
        accepted = one(OrderAccepted, events)
        cancelled = one(OrderCancelled, events)
        self.assertEqual(cancelled.order_id, accepted.order_id)
        self.assertEqual(cancelled.reason, seto.ORDER_CANCELLED_INSUFFICIENT_LIQUIDITY)
        self.assertEqual((cancelled.cancelled_quantity, cancelled.executed_quantity), (6 * POUND, 4 * POUND))
        self.assertEqual(self.bids_offers(), ((), ()))
        self.assertEqual(self.bob.exposure, 16_000)  # 4 * 0.40 matched, nothing open
        self.assertEqual(one(BookChanged, events).bids, ())

    def test_ioc_without_liquidity(self) -> None:
        events = self.order(self.bob, BUY, 10 * POUND, 4200, tif=IOC)
        self.assertEqual([type(e) for e in events], [OrderAccepted, OrderCancelled])
        self.assertEqual(self.bob.exposure, 0)
        self.assertEqual(self.engine.open_orders(self.bob), [])

    def test_ioc_fully_filled(self) -> None:
        self.place(self.alice, SELL, 10 * POUND, 4000)
        events = self.order(self.bob, BUY, 10 * POUND, 4000, tif=IOC)
        self.assertEqual(of(OrderCancelled, events), [])

    def test_self_cross_rejected(self) -> None:
        self.place(self.alice, SELL, 10 * POUND, 4000)
        events = self.order(self.alice, BUY, 1 * POUND, 4000)
        self.assertEqual(one(OrderRejected, events).reason, seto.ORDER_REJECTED_CROSSED_SELF)
        self.assertEqual(len(events), 1)
        self.place(self.alice, BUY, 1 * POUND, 3900)

    def test_self_cross_only_if_reached(self) -> None:
        """An order that others' orders fill before it reaches the account's own is fine."""
        self.place(self.bob, SELL, 10 * POUND, 3900)
        self.place(self.alice, SELL, 10 * POUND, 4000)
        self.assertEqual(one(OrderAccepted, self.order(self.alice, BUY, 5 * POUND, 4000)).quantity, 5 * POUND)
        rejected = one(OrderRejected, self.order(self.alice, BUY, 6 * POUND, 4000))
        self.assertEqual(rejected.reason, seto.ORDER_REJECTED_CROSSED_SELF)

    def test_self_cross_ioc(self) -> None:
        self.place(self.alice, BUY, 10 * POUND, 4000)
        rejected = one(OrderRejected, self.order(self.alice, SELL, 10 * POUND, 3000, tif=IOC))
        self.assertEqual(rejected.reason, seto.ORDER_REJECTED_CROSSED_SELF)

    def test_contracts_are_separate_books(self) -> None:
        self.place(self.alice, SELL, 10 * POUND, 4000, contract=AWAY)
        events = self.order(self.bob, BUY, 10 * POUND, 4500)
        self.assertEqual(of(OrderExecuted, events), [])


class DepthTests(EngineTestCase):
    """Market data shows a configurable number of levels; deltas keep a copy exact."""

    depth = 2

    def test_snapshot(self) -> None:
        for price in (3000, 3100, 3200):
            self.place(self.alice, BUY, POUND, price)
        self.place(self.bob, SELL, POUND, 5000, contract=AWAY)
        self.assertEqual(
            self.engine.book(100),
            MarketBook(
                100,
                (
                    ContractBook(HOME, (Level(3200, POUND), Level(3100, POUND)), ()),
                    ContractBook(AWAY, (), (Level(5000, POUND),)),
                    ContractBook(DRAW, (), ()),
                ),
                0,
            ),
        )
        deeper = self.engine.book(100, depth=5)
        assert deeper is not None
        self.assertEqual(len(deeper.contracts[0].bids), 3)
        self.assertIsNone(self.engine.book(12345))

    def test_level_enters_from_beyond_depth(self) -> None:
        self.place(self.alice, BUY, POUND, 3000)
        self.place(self.alice, BUY, POUND, 3100)
        best = self.place(self.alice, BUY, POUND, 3200)
        events = self.engine.cancel(self.alice, best)
        self.assertEqual(one(BookChanged, events).bids, (Level(3200, 0), Level(3000, POUND)))

    def test_change_beyond_depth_not_sent(self) -> None:
        self.place(self.alice, BUY, POUND, 3100)
        self.place(self.alice, BUY, POUND, 3200)
        events = self.order(self.alice, BUY, POUND, 3000)
        self.assertEqual(of(BookChanged, events), [])

    def test_volume(self) -> None:
        self.place(self.alice, SELL, 3 * POUND, 4000)
        self.order(self.bob, BUY, 2 * POUND, 4000)
        book = self.engine.book(100)
        assert book is not None
        self.assertEqual(book.executed_volume, 2 * POUND)


class ExposureTests(EngineTestCase):
    """Balance and exposure, exact to the unit, after fills, cancels and settlement."""

    def test_after_fill(self) -> None:
        """Seller of 40 at 25% risks 30; buyer of 50 at 30% filled 40 at 25%: 10 matched + 3 open."""
        self.place(self.alice, SELL, 40 * POUND, 2500)
        events = self.order(self.bob, BUY, 50 * POUND, 3000)
        self.assertEqual((self.alice.exposure, self.bob.exposure), (30 * POUND, 13 * POUND))
        changed = of(BalanceChanged, events)
        self.assertEqual(
            [(c.username, c.exposure, c.available_balance) for c in changed],
            [
                ("bob", 13 * POUND, 987 * POUND),
            ],
        )

    def test_hedged_open_orders_net(self) -> None:
        """Buying both outcomes of a two-way market can only lose one of the two stakes."""
        self.place(self.alice, BUY, 10 * POUND, 5000, contract=2001, market=200)
        self.place(self.alice, BUY, 10 * POUND, 4000, contract=2002, market=200)
        self.assertEqual(self.alice.exposure, 5 * POUND)
        # Three-way: the draw loses both stakes (2 + 5), the worst outcome.
        self.place(self.alice, BUY, 10 * POUND, 5000, contract=HOME)
        self.place(self.alice, BUY, 10 * POUND, 2000, contract=AWAY)
        self.assertEqual(self.alice.exposure, 12 * POUND)

    def test_back_and_lay_same_contract(self) -> None:
        """A resting buy and a resting sell on one contract: the worse of the two."""
        self.place(self.alice, BUY, 10 * POUND, 4000)
        self.place(self.alice, SELL, 10 * POUND, 6000)
        self.assertEqual(self.alice.exposure, 4 * POUND)

    def test_matched_dutch_book_has_no_exposure(self) -> None:
        for contract in (HOME, AWAY):
            self.place(self.bob, SELL, 10 * POUND, 5000, contract=contract)
            self.place(self.alice, BUY, 10 * POUND, 5000, contract=contract)
        self.place(self.bob, SELL, 10 * POUND, 1, contract=DRAW)
        self.place(self.alice, BUY, 10 * POUND, 1, contract=DRAW)
        # Alice paid 5 + 5 + 0.001 and wins 10 whatever happens: she is down at most 0.001.
        self.assertEqual(self.alice.exposure, 10)
        self.assertEqual(self.bob.exposure, 0)

    def test_cancel_releases(self) -> None:
        order_id = self.place(self.alice, BUY, 10 * POUND, 4000)
        events = self.engine.cancel(self.alice, order_id, reference=8)
        self.assertEqual(self.alice.exposure, 0)
        cancelled = one(OrderCancelled, events)
        self.assertEqual(
            (cancelled.reason, cancelled.reference, cancelled.cancelled_quantity, cancelled.exposure),
            (seto.ORDER_CANCELLED_MEMBER_REQUESTED, 8, 10 * POUND, 0),
        )
        self.assertEqual(one(BalanceChanged, events).reason, "cancel")
        self.assertEqual(one(BookChanged, events).bids, (Level(4000, 0),))

    def test_cancel_after_partial_fill_keeps_matched(self) -> None:
        order_id = self.place(self.alice, BUY, 10 * POUND, 4000)
        self.order(self.bob, SELL, 4 * POUND, 4000)
        self.assertEqual(self.alice.exposure, 4 * POUND)
        self.engine.cancel(self.alice, order_id)
        self.assertEqual(self.alice.exposure, 16_000)
        self.assertEqual(self.bob.exposure, 24_000)

    def test_settlement_pays_winner(self) -> None:
        self.place(self.alice, SELL, 40 * POUND, 2500)
        self.order(self.bob, BUY, 50 * POUND, 3000)
        events = self.engine.set_market_state(100, SETTLED, winner=HOME)
        self.assertEqual((self.alice.balance, self.alice.exposure), (970 * POUND, 0))
        self.assertEqual((self.bob.balance, self.bob.exposure), (1030 * POUND, 0))
        self.assertEqual(
            {(c.username, c.balance, c.exposure, c.reason) for c in of(BalanceChanged, events)},
            {("alice", 970 * POUND, 0, "market settled"), ("bob", 1030 * POUND, 0, "market settled")},
        )
        cancelled = one(OrderCancelled, events)
        self.assertEqual((cancelled.username, cancelled.reason), ("bob", seto.ORDER_CANCELLED_ADMIN_REQUESTED))
        self.assertEqual(self.bids_offers(), ((), ()))

    def test_settlement_loser(self) -> None:
        self.place(self.alice, SELL, 40 * POUND, 2500)
        self.order(self.bob, BUY, 40 * POUND, 3000)
        self.engine.set_market_state(100, SETTLED, winner=AWAY)
        self.assertEqual((self.alice.balance, self.bob.balance), (1010 * POUND, 990 * POUND))

    def test_settlement_rounding(self) -> None:
        """3 units at 33.33%: the buyer wins 2.0001 and gets 2; the seller loses 2.0001 and pays 3."""
        self.place(self.alice, SELL, 3, 3333)
        self.order(self.bob, BUY, 3, 3333)
        self.assertEqual((self.alice.exposure, self.bob.exposure), (3, 1))
        self.engine.set_market_state(100, SETTLED, winner=HOME)
        self.assertEqual((self.alice.balance, self.bob.balance), (1000 * POUND - 3, 1000 * POUND + 2))

    def test_settlement_only_touches_its_market(self) -> None:
        self.place(self.alice, BUY, 10 * POUND, 5000, contract=2001, market=200)
        self.place(self.bob, SELL, 10 * POUND, 5000)
        self.order(self.alice, BUY, 10 * POUND, 5000)
        self.engine.set_market_state(100, SETTLED, winner=HOME)
        self.assertEqual((self.alice.balance, self.alice.exposure), (1005 * POUND, 5 * POUND))
        self.assertEqual(len(self.engine.open_orders(self.alice)), 1)

    def test_void(self) -> None:
        sell = self.place(self.alice, SELL, 40 * POUND, 2500)
        buy = one(OrderAccepted, self.order(self.bob, BUY, 50 * POUND, 3000)).order_id
        events = self.engine.set_market_state(100, VOIDED)
        self.assertEqual(events[0], MarketStateChanged(market_id=100, state=VOIDED, winner=None))
        voided = of(ExecutionVoided, events)
        self.assertEqual(
            [(v.username, v.order_id, v.price, v.quantity, v.exposure) for v in voided],
            [("bob", buy, 2500, 40 * POUND, 0), ("alice", sell, 2500, 40 * POUND, 0)],
        )
        self.assertEqual(one(OrderCancelled, events).order_id, buy)
        for account in (self.alice, self.bob):
            self.assertEqual((account.balance, account.exposure), (1000 * POUND, 0))

    def test_void_reports_each_account_side_once(self) -> None:
        # Trades are not kept one by one until settlement: voiding reports the
        # total per account, contract and side, at the average price.
        last_sell = 0
        for price in (2500, 2600, 2700):
            last_sell = self.place(self.alice, SELL, 10 * POUND, price)
        last_buy = 0
        for _ in range(3):
            last_buy = one(OrderAccepted, self.order(self.bob, BUY, 10 * POUND, 3000)).order_id
        self.place(self.carol, SELL, 5 * POUND, 5000, contract=AWAY)
        self.place(self.bob, BUY, 5 * POUND, 5000, contract=AWAY)
        voided = of(ExecutionVoided, self.engine.set_market_state(100, VOIDED))
        self.assertEqual(
            [(v.username, v.order_id, v.contract_id, v.side, v.price, v.quantity) for v in voided],
            [
                ("bob", last_buy, HOME, BUY, 2600, 30 * POUND),
                ("alice", last_sell, HOME, SELL, 2600, 30 * POUND),
                ("bob", last_buy + 2, AWAY, BUY, 5000, 5 * POUND),
                ("carol", last_buy + 1, AWAY, SELL, 5000, 5 * POUND),
            ],
        )
        for account in (self.alice, self.bob, self.carol):
            self.assertEqual((account.balance, account.exposure), (1000 * POUND, 0))


class CancelTests(EngineTestCase):
    """order_cancel and order_cancel_all."""

    def test_unknown(self) -> None:
        events = self.engine.cancel(self.alice, 4242, reference=1)
        self.assertEqual(
            events,
            [
                CancelRejected(
                    username="alice",
                    account_sequence=1,
                    order_id=4242,
                    reason=seto.ORDER_CANCEL_REJECTED_NOT_FOUND,
                    reference=1,
                )
            ],
        )

    def test_other_accounts_order(self) -> None:
        order_id = self.place(self.bob, BUY, POUND, 4000)
        rejected = one(CancelRejected, self.engine.cancel(self.alice, order_id))
        self.assertEqual(rejected.reason, seto.ORDER_CANCEL_REJECTED_NOT_FOUND)
        self.assertEqual(len(self.engine.open_orders(self.bob)), 1)

    def test_finished_order_too_late(self) -> None:
        filled = self.place(self.alice, SELL, POUND, 4000)
        self.order(self.bob, BUY, POUND, 4000)
        cancelled = self.place(self.alice, SELL, POUND, 4000)
        self.engine.cancel(self.alice, cancelled)
        for order_id in (filled, cancelled):
            rejected = one(CancelRejected, self.engine.cancel(self.alice, order_id))
            self.assertEqual(rejected.reason, seto.ORDER_CANCEL_REJECTED_TOO_LATE)
        self.assertEqual(
            one(CancelRejected, self.engine.cancel(self.bob, filled)).reason, seto.ORDER_CANCEL_REJECTED_NOT_FOUND
        )

    def test_finished_memory_bounded(self) -> None:
        engine = MatchingEngine(Accounts([self.alice]), make_catalogue(), finished_order_memory=1)
        first = one(OrderAccepted, engine.create_order(self.alice, 100, HOME, BUY, POUND, 4000)).order_id
        second = one(OrderAccepted, engine.create_order(self.alice, 100, HOME, BUY, POUND, 4000)).order_id
        engine.cancel(self.alice, first)
        engine.cancel(self.alice, second)
        self.assertEqual(
            one(CancelRejected, engine.cancel(self.alice, first)).reason, seto.ORDER_CANCEL_REJECTED_NOT_FOUND
        )
        self.assertEqual(
            one(CancelRejected, engine.cancel(self.alice, second)).reason, seto.ORDER_CANCEL_REJECTED_TOO_LATE
        )

    def test_cancel_while_halted(self) -> None:
        order_id = self.place(self.alice, BUY, POUND, 4000)
        self.engine.set_market_state(100, HALTED)
        self.assertEqual(one(OrderCancelled, self.engine.cancel(self.alice, order_id)).order_id, order_id)

    def test_cancel_all_in_market(self) -> None:
        first = self.place(self.alice, BUY, POUND, 4000)
        second = self.place(self.alice, SELL, POUND, 6000, contract=AWAY)
        elsewhere = self.place(self.alice, BUY, POUND, 4000, contract=2001, market=200)
        others = self.place(self.bob, BUY, POUND, 4100)
        events = self.engine.cancel_all(self.alice, 100, reference=6)
        accepted = events[0]
        assert isinstance(accepted, CancelAllAccepted)
        self.assertEqual((accepted.username, accepted.market_id, accepted.reference), ("alice", 100, 6))
        self.assertEqual([c.order_id for c in of(OrderCancelled, events)], [first, second])
        self.assertEqual({b.contract_id for b in of(BookChanged, events)}, {HOME, AWAY})
        self.assertEqual([o.order_id for o in self.engine.open_orders(self.alice)], [elsewhere])
        self.assertEqual([o.order_id for o in self.engine.open_orders(self.bob)], [others])
        self.assertEqual(self.alice.exposure, 4_000)  # 1 at 40% in market 200

    def test_cancel_all_everywhere(self) -> None:
        self.place(self.alice, BUY, POUND, 4000)
        self.place(self.alice, BUY, POUND, 4000, contract=2001, market=200)
        events = self.engine.cancel_all(self.alice)
        self.assertEqual(len(of(OrderCancelled, events)), 2)
        self.assertEqual(self.engine.open_orders(self.alice), [])
        self.assertEqual(self.alice.exposure, 0)

    def test_cancel_all_nothing_open(self) -> None:
        events = self.engine.cancel_all(self.alice, 100)
        self.assertEqual([type(e) for e in events], [CancelAllAccepted])

    def test_cancel_all_unknown_market(self) -> None:
        rejected = one(CancelAllRejected, self.engine.cancel_all(self.alice, 999, reference=2))
        self.assertEqual((rejected.reason, rejected.reference), (seto.ORDER_CANCEL_ALL_REJECTED_UNKNOWN_ERROR, 2))


class ReduceTests(EngineTestCase):
    """order_quantity_reduce."""

    def test_reduce(self) -> None:
        order_id = self.place(self.alice, BUY, 10 * POUND, 4000)
        events = self.engine.reduce(self.alice, order_id, 4 * POUND, reference=3)
        reduced = one(QuantityReduced, events)
        self.assertEqual(
            (reduced.order_id, reduced.new_quantity, reduced.reason, reduced.reference, reduced.exposure),
            (order_id, 4 * POUND, seto.ORDER_QUANTITY_REDUCED_MEMBER_REQUESTED, 3, 16_000),
        )
        self.assertEqual(self.alice.exposure, 16_000)
        self.assertEqual(one(BookChanged, events).bids, (Level(4000, 4 * POUND),))
        self.assertEqual(one(BalanceChanged, events).reason, "reduce")

    def test_reduce_keeps_priority(self) -> None:
        first = self.place(self.alice, SELL, 10 * POUND, 4000)
        self.place(self.carol, SELL, 10 * POUND, 4000)
        self.engine.reduce(self.alice, first, 5 * POUND)
        events = self.order(self.bob, BUY, 5 * POUND, 4000)
        self.assertEqual({e.username for e in of(OrderExecuted, events)}, {"alice", "bob"})

    def test_reduce_after_partial_fill(self) -> None:
        order_id = self.place(self.alice, SELL, 10 * POUND, 4000)
        self.order(self.bob, BUY, 4 * POUND, 4000)
        reduced = one(QuantityReduced, self.engine.reduce(self.alice, order_id, 1 * POUND))
        self.assertEqual((reduced.new_quantity, reduced.executed_quantity), (POUND, 4 * POUND))

    def test_rejections(self) -> None:
        order_id = self.place(self.alice, BUY, 10 * POUND, 4000)
        filled = self.place(self.alice, SELL, POUND, 6000)
        self.order(self.bob, BUY, POUND, 6000)
        invalid = seto.ORDER_QUANTITY_REDUCE_REJECTED_INVALID_NEW_QUANTITY
        cases = [
            (self.alice, order_id, 0, invalid),
            (self.alice, order_id, 10 * POUND, invalid),
            (self.alice, order_id, 11 * POUND, invalid),
            (self.alice, 999, POUND, seto.ORDER_QUANTITY_REDUCE_REJECTED_NOT_FOUND),
            (self.bob, order_id, POUND, seto.ORDER_QUANTITY_REDUCE_REJECTED_NOT_FOUND),
            (self.alice, filled, 1, seto.ORDER_QUANTITY_REDUCE_REJECTED_NOT_LIVE),
        ]
        for account, target, quantity, reason in cases:
            events = self.engine.reduce(account, target, quantity, reference=5)
            self.assertEqual(len(events), 1)
            rejected = one(ReduceRejected, events)
            self.assertEqual((rejected.order_id, rejected.new_quantity, rejected.reason), (target, quantity, reason))
        self.assertEqual(self.bids_offers()[0], (Level(4000, 10 * POUND),))


class ReplaceTests(EngineTestCase):
    """order_cancel_replace."""

    def test_replace(self) -> None:
        orig = self.place(self.alice, BUY, 10 * POUND, 4000)
        events = self.engine.replace(self.alice, orig, 4100, 6 * POUND, reference=12, label="new")
        pending, accepted = events[0], events[1]
        assert isinstance(pending, PendingReplace) and isinstance(accepted, ReplaceAccepted)
        self.assertEqual((pending.orig_order_id, pending.price, pending.quantity), (orig, 4100, 6 * POUND))
        self.assertEqual(accepted.order_id, pending.order_id)
        self.assertGreater(accepted.order_id, orig)
        self.assertEqual((accepted.quantity_left, accepted.label, accepted.reference), (10 * POUND, "new", 12))
        self.assertEqual(self.bids_offers()[0], (Level(4100, 6 * POUND),))
        self.assertEqual(one(BookChanged, events).bids, (Level(4100, 6 * POUND), Level(4000, 0)))
        self.assertEqual(self.alice.exposure, 24_600)
        self.assertEqual(
            one(CancelRejected, self.engine.cancel(self.alice, orig)).reason, seto.ORDER_CANCEL_REJECTED_TOO_LATE
        )
        (open_order,) = self.engine.open_orders(self.alice)
        self.assertEqual((open_order.order_id, open_order.tif), (accepted.order_id, GTC))

    def test_replace_loses_priority(self) -> None:
        first = self.place(self.alice, SELL, 10 * POUND, 4000)
        self.place(self.carol, SELL, 10 * POUND, 4000)
        self.engine.replace(self.alice, first, 4000, 10 * POUND)
        events = self.order(self.bob, BUY, 10 * POUND, 4000)
        self.assertEqual({e.username for e in of(OrderExecuted, events)}, {"carol", "bob"})

    def test_replace_executes(self) -> None:
        self.place(self.bob, SELL, 3 * POUND, 4100)
        orig = self.place(self.alice, BUY, 10 * POUND, 4000)
        events = self.engine.replace(self.alice, orig, 4100, 5 * POUND)
        accepted = one(ReplaceAccepted, events)
        fill = [e for e in of(OrderExecuted, events) if e.username == "alice"][0]
        self.assertEqual(
            (fill.order_id, fill.quantity, fill.available_quantity), (accepted.order_id, 3 * POUND, 2 * POUND)
        )

    def test_replace_uses_released_funds(self) -> None:
        """The original's reserve counts towards the replacement."""
        orig = self.place(self.alice, BUY, 2000 * POUND, 5000)
        self.assertEqual(self.alice.available_balance, 0)
        accepted = one(ReplaceAccepted, self.engine.replace(self.alice, orig, 4000, 2500 * POUND))
        self.assertEqual(self.alice.available_balance, 0)
        rejected = one(ReplaceRejected, self.engine.replace(self.alice, accepted.order_id, 4000, 2500 * POUND + 3))
        self.assertEqual(rejected.reason, seto.ORDER_CANCEL_REPLACE_REJECTED_SERVICE_TEMPORARILY_UNAVAILABLE)
        self.assertEqual(rejected.detail, "insufficient funds")
        self.assertEqual(self.bids_offers()[0], (Level(4000, 2500 * POUND),))
        self.assertEqual(self.alice.exposure, 1000 * POUND)

    def test_not_found(self) -> None:
        other = self.place(self.bob, BUY, POUND, 4000)
        for order_id in (999, other):
            events = self.engine.replace(self.alice, order_id, 4000, POUND, reference=2)
            self.assertEqual(len(events), 1)
            rejected = one(ReplaceRejected, events)
            self.assertEqual(
                (rejected.order_id, rejected.orig_order_id, rejected.reason, rejected.market_id),
                (None, order_id, seto.ORDER_CANCEL_REPLACE_REJECTED_TOO_LATE, None),
            )

    def test_rejections_leave_original(self) -> None:
        self.place(self.bob, SELL, POUND, 4500)
        orig = self.place(self.alice, BUY, 10 * POUND, 4000)
        self.place(self.alice, SELL, POUND, 4600)
        unavailable = seto.ORDER_CANCEL_REPLACE_REJECTED_SERVICE_TEMPORARILY_UNAVAILABLE
        cases = [
            (0, POUND, unavailable, "invalid price"),
            (4000, 0, unavailable, "invalid quantity"),
            (10000, 0, unavailable, "invalid price and invalid quantity"),
            (4700, 2 * POUND, seto.ORDER_CANCEL_REPLACE_REJECTED_CROSSED_SELF, "would cross own order"),
        ]
        for price, quantity, reason, detail in cases:
            events = self.engine.replace(self.alice, orig, price, quantity)
            self.assertEqual([type(e) for e in events], [PendingReplace, ReplaceRejected])
            rejected = one(ReplaceRejected, events)
            self.assertEqual((rejected.reason, rejected.detail, rejected.orig_order_id), (reason, detail, orig))
            self.assertEqual(rejected.order_id, one(PendingReplace, events).order_id)
        self.assertEqual(self.bids_offers()[0], (Level(4000, 10 * POUND),))

    def test_halted(self) -> None:
        orig = self.place(self.alice, BUY, 10 * POUND, 4000)
        self.engine.set_market_state(100, HALTED)
        rejected = one(ReplaceRejected, self.engine.replace(self.alice, orig, 4100, POUND))
        self.assertEqual(
            (rejected.reason, rejected.detail), (seto.ORDER_CANCEL_REPLACE_REJECTED_MARKET_HALTED, "market is halted")
        )
        self.assertEqual(self.bids_offers()[0], (Level(4000, 10 * POUND),))


class MarketStateTests(EngineTestCase):
    """Market state changes and what each time-in-force does with them."""

    def place_every_tif(self, contract: int, market: int) -> dict[int, int]:
        return {
            tif: self.place(self.alice, BUY, POUND, 1000 + tif, contract=contract, market=market, tif=tif)
            for tif in (GTC, KIP, GTH)
        }

    def test_halt_cancels_good_till_halted(self) -> None:
        orders = self.place_every_tif(HOME, 100)
        events = self.engine.set_market_state(100, HALTED)
        self.assertEqual(events[0], MarketStateChanged(market_id=100, state=HALTED, winner=None))
        cancelled = one(OrderCancelled, events)
        self.assertEqual((cancelled.order_id, cancelled.reason), (orders[GTH], seto.ORDER_CANCELLED_MARKET_HALTED))
        self.assertEqual({o.order_id for o in self.engine.open_orders(self.alice)}, {orders[GTC], orders[KIP]})
        rejected = one(OrderRejected, self.order(self.bob, BUY, POUND, 5000))
        self.assertEqual(rejected.reason, seto.ORDER_REJECTED_MARKET_HALTED)

    def test_resume_after_halt(self) -> None:
        orders = self.place_every_tif(HOME, 100)
        self.engine.set_market_state(100, HALTED)
        events = self.engine.set_market_state(100, LIVE)
        self.assertEqual(events, [MarketStateChanged(market_id=100, state=LIVE, winner=None)])
        self.assertEqual({o.order_id for o in self.engine.open_orders(self.alice)}, {orders[GTC], orders[KIP]})
        self.place(self.bob, BUY, POUND, 5000)

    def test_going_live_keeps_only_keep_in_play(self) -> None:
        orders = self.place_every_tif(2001, 200)
        events = self.engine.set_market_state(200, LIVE)
        cancelled = of(OrderCancelled, events)
        self.assertEqual({c.order_id for c in cancelled}, {orders[GTC], orders[GTH]})
        self.assertEqual({c.reason for c in cancelled}, {seto.ORDER_CANCELLED_TRADING_SUSPENDED})
        self.assertEqual([o.order_id for o in self.engine.open_orders(self.alice)], [orders[KIP]])
        self.assertEqual(self.alice.exposure, 1003)  # 1 at 10.03%

    def test_open_halted_live(self) -> None:
        """Going live through a halt still cancels the pre-play orders."""
        orders = self.place_every_tif(2001, 200)
        self.engine.set_market_state(200, HALTED)
        events = self.engine.set_market_state(200, LIVE)
        self.assertEqual([c.order_id for c in of(OrderCancelled, events)], [orders[GTC]])
        self.assertRaises(MarketStateError, self.engine.set_market_state, 200, OPEN)

    def test_halted_open(self) -> None:
        self.engine.set_market_state(200, HALTED)
        self.engine.set_market_state(200, OPEN)
        self.place(self.alice, BUY, POUND, 5000, contract=2001, market=200)

    def test_new_market(self) -> None:
        self.engine.set_market_state(300, OPEN)
        self.place(self.alice, BUY, POUND, 5000, contract=3001, market=300)

    def test_settle_event(self) -> None:
        events = self.engine.set_market_state(100, SETTLED, winner=AWAY)
        self.assertEqual(events, [MarketStateChanged(market_id=100, state=SETTLED, winner=AWAY)])
        market = self.catalogue.market(100)
        assert market is not None
        self.assertEqual((market.state, market.winner), (SETTLED, AWAY))

    def test_bad_changes(self) -> None:
        cases = [
            (999, HALTED, None, "no market 999"),
            (100, OPEN, None, "cannot go from live to open"),
            (100, LIVE, None, "cannot go from live to live"),
            (100, NEW, None, "cannot go from live to new"),
            (100, SETTLED, None, "winner"),
            (100, HALTED, HOME, "winner"),
            (100, SETTLED, 2001, "contract 2001 is not in market 100"),
            (300, SETTLED, 3001, "cannot go from new to settled"),
        ]
        for market, state, winner, fragment in cases:
            error = self.assertRaises(MarketStateError, self.engine.set_market_state, market, state, winner)
            self.assertIn(fragment, str(error))
        self.engine.set_market_state(100, VOIDED)
        self.assertRaises(MarketStateError, self.engine.set_market_state, 100, LIVE)


class AccountSequenceTests(EngineTestCase):
    """Every account event is numbered and can be replayed after a given number."""

    def test_sequences_and_replay(self) -> None:
        sell = self.place(self.alice, SELL, 10 * POUND, 4000)
        self.order(self.bob, BUY, 4 * POUND, 4000)
        self.engine.cancel(self.alice, sell)
        self.order(self.alice, BUY, 0, 4000)  # invalid: not an account event
        replay = self.alice.events_after(0)
        self.assertFalse(replay.truncated)
        kinds = [type(event) for event in replay.events]
        self.assertEqual(kinds, [OrderAccepted, BalanceChanged, OrderExecuted, OrderCancelled, BalanceChanged])
        self.assertEqual([e.account_sequence for e in replay.events], [1, 2, 3, 4, 5])
        self.assertEqual(self.alice.events_after(3).events, replay.events[3:])

    def test_history_bounded(self) -> None:
        """The accounts here keep 50 events."""
        for _ in range(60):
            self.engine.cancel(self.alice, 12345)
        replay = self.alice.events_after(0)
        self.assertTrue(replay.truncated)
        self.assertEqual([e.account_sequence for e in replay.events], list(range(11, 61)))
        self.assertFalse(self.alice.events_after(10).truncated)
        self.assertTrue(self.alice.events_after(9).truncated)
        self.assertEqual(self.alice.events_after(58).events, replay.events[-2:])


# Property test: random order flow keeps the invariants.

_ACCOUNT = st.integers(0, 2)
_CONTRACT = st.sampled_from([HOME, AWAY])
_SIDE = st.sampled_from([BUY, SELL])
# Often one of a few prices, so that orders cross; sometimes anything, valid or not.
_PRICE = st.sampled_from([4750, 5000, 5000, 5250]) | st.integers(0, 10000)
_QUANTITY = st.integers(1, 20 * POUND) | st.integers(1, 400 * POUND)
_TIF = st.sampled_from([GTC, GTC, IOC, KIP, GTH])
# Which order to act on: an index into the account's open orders, or (negative) an unknown id.
_TARGET = st.integers(-3, 20)
_NEW_ORDER = st.tuples(st.just("order"), _ACCOUNT, _CONTRACT, _SIDE, _QUANTITY, _PRICE, _TIF)
_OTHER_OPERATION = st.one_of(
    st.tuples(st.just("cancel"), _ACCOUNT, _TARGET),
    st.tuples(st.just("reduce"), _ACCOUNT, _TARGET, _QUANTITY),
    st.tuples(st.just("replace"), _ACCOUNT, _TARGET, _PRICE, _QUANTITY),
    st.tuples(st.just("cancel_all"), _ACCOUNT),
    st.tuples(st.just("halt_resume")),
)
# Two operations in three are new orders.
_OPERATION = st.integers(0, 2).flatmap(lambda n: _OTHER_OPERATION if n == 0 else _NEW_ORDER)


class InvariantTests(SynchronousTestCase):
    """Whatever the order flow: books never crossed, fills conserved, money never negative."""

    @settings(max_examples=150, deadline=None)
    @given(
        operations=st.lists(_OPERATION, min_size=10, max_size=60),
        winner=st.sampled_from([HOME, AWAY, None]),
        # Levels shown: the deltas must keep a copy of the visible book either way.
        depth=st.sampled_from([3, None]),
    )
    def test_random_flow(self, operations: list[tuple[Any, ...]], winner: int | None, depth: int | None) -> None:
        accounts = [Account(f"u{n}", "pw", n + 1, "", pounds * POUND) for n, pounds in enumerate((50, 200, 1000))]
        catalogue = Catalogue([Market(1, "M", (Contract(HOME, "H"), Contract(AWAY, "A")), LIVE)])
        engine = MatchingEngine(Accounts(accounts), catalogue, depth=depth, any_price=True)
        mirror: dict[tuple[int, str], dict[int, int]] = defaultdict(dict)
        fills: dict[tuple[int, int], int] = defaultdict(int)
        last_sequence = {account.username: 0 for account in accounts}
        start = sum(account.balance for account in accounts)
        for operation in operations:
            events = self.apply(engine, accounts, operation)
            self.check(engine, accounts, events, mirror, fills, last_sequence)
        state = (
            engine.set_market_state(1, SETTLED, winner=winner)
            if winner is not None
            else engine.set_market_state(1, VOIDED)
        )
        self.check(engine, accounts, state, mirror, fills, last_sequence)
        self.assertEqual([account.exposure for account in accounts], [0, 0, 0])
        end = sum(account.balance for account in accounts)
        # Zero-sum but for rounding in the exchange's favour, less than one unit per account.
        self.assertTrue(start - len(accounts) < end <= start, (start, end))
        if winner is None:
            self.assertEqual(end, start)

    @settings(max_examples=50, deadline=None)
    @given(operations=st.lists(_OPERATION, min_size=10, max_size=60), winner=st.sampled_from([HOME, None]))
    def test_every_order_event_agrees_with_its_order(
        self, operations: list[tuple[Any, ...]], winner: int | None
    ) -> None:
        """The events of an order's life are built positionally: each field must be where it belongs."""
        accounts = [Account(f"u{n}", "pw", n + 1, "", pounds * POUND) for n, pounds in enumerate((50, 200, 1000))]
        catalogue = Catalogue([Market(1, "M", (Contract(HOME, "H"), Contract(AWAY, "A")), LIVE)])
        engine = MatchingEngine(Accounts(accounts), catalogue, any_price=True)
        # Order id -> (username, contract id, side, label, price, quantity) when it was taken, and its fills.
        taken: dict[int, tuple[str, int, int, str | None, int, int]] = {}
        filled: dict[int, int] = defaultdict(int)
        for operation in operations:
            self.check_fields(accounts, self.apply(engine, accounts, operation), taken, filled)
        settled = engine.set_market_state(1, SETTLED if winner else VOIDED, winner=winner)
        self.check_fields(accounts, settled, taken, filled)

    def check_fields(
        self,
        accounts: list[Account],
        events: list[EngineEvent],
        taken: dict[int, tuple[str, int, int, str | None, int, int]],
        filled: dict[int, int],
    ) -> None:
        """One call's order events name their order's fields, and each account's last event its money after the call."""
        last: dict[str, OrderEvent | BalanceChanged] = {}
        for event in events:
            if isinstance(event, BalanceChanged):
                last[event.username] = event
            if not isinstance(event, OrderEvent):
                continue
            last[event.username] = event
            self.assertEqual(event.market_id, 1)
            if isinstance(event, (OrderAccepted, ReplaceAccepted)):
                taken[event.order_id] = (
                    event.username,
                    event.contract_id,
                    event.side,
                    event.label,
                    event.price,
                    event.quantity,
                )
            username, contract_id, side, label, price, quantity = taken[event.order_id]
            self.assertEqual(
                (event.username, event.contract_id, event.side, event.label), (username, contract_id, side, label)
            )
            if isinstance(event, OrderExecuted):
                filled[event.order_id] += event.quantity
                self.assertEqual(
                    (event.orig_price, event.total_executed_quantity), (price, filled[event.order_id]), event
                )
                self.assertLessEqual(event.available_quantity, quantity - filled[event.order_id])
            if isinstance(event, OrderCancelled):
                self.assertEqual((event.orig_price, event.executed_quantity), (price, filled[event.order_id]))
                self.assertLessEqual(event.cancelled_quantity, quantity - filled[event.order_id])
        for account in accounts:
            if account.username in last:
                event = last[account.username]
                money = (account.available_balance, account.exposure)
                self.assertEqual((event.available_balance, event.exposure), money, event)
                if isinstance(event, BalanceChanged):
                    self.assertEqual(event.balance, account.balance, event)

    def apply(self, engine: MatchingEngine, accounts: list[Account], operation: tuple[Any, ...]) -> list[EngineEvent]:
        kind, rest = operation[0], operation[1:]
        if kind == "halt_resume":
            return engine.set_market_state(1, HALTED) + engine.set_market_state(1, LIVE)
        account = accounts[rest[0]]
        if kind == "order":
            _, contract, side, quantity, price, tif = rest
            return engine.create_order(account, 1, contract, side, quantity, price, tif)
        if kind == "cancel_all":
            return engine.cancel_all(account, 1)
        _, target, *arguments = rest
        open_orders = engine.open_orders(account)
        order_id = open_orders[target % len(open_orders)].order_id if open_orders and target >= 0 else 10_000 - target
        if kind == "cancel":
            return engine.cancel(account, order_id)
        if kind == "reduce":
            return engine.reduce(account, order_id, *arguments)
        return engine.replace(account, order_id, *arguments)

    def check(
        self,
        engine: MatchingEngine,
        accounts: list[Account],
        events: list[EngineEvent],
        mirror: dict[tuple[int, str], dict[int, int]],
        fills: dict[tuple[int, int], int],
        last_sequence: dict[str, int],
    ) -> None:
        for event in events:
            if isinstance(event, AccountEvent):
                self.assertEqual(event.account_sequence, last_sequence[event.username] + 1)
                last_sequence[event.username] = event.account_sequence
            if isinstance(event, OrderExecuted):
                fills[(event.contract_id, event.side)] += event.quantity
                if event.side == BUY:
                    self.assertLessEqual(event.price, event.orig_price)
                else:
                    self.assertGreaterEqual(event.price, event.orig_price)
            if isinstance(event, BookChanged):
                for name, levels in (("bids", event.bids), ("offers", event.offers)):
                    for level in levels:
                        if level.quantity:
                            mirror[(event.contract_id, name)][level.price] = level.quantity
                        else:
                            del mirror[(event.contract_id, name)][level.price]
                traded = sum(execution.quantity for execution in event.executions)
                self.assertEqual(
                    traded,
                    sum(
                        e.quantity
                        for e in of(OrderExecuted, events)
                        if e.side == BUY and e.contract_id == event.contract_id
                    ),
                )
        for contract in (HOME, AWAY):
            self.assertEqual(fills[(contract, BUY)], fills[(contract, SELL)])
        full = engine.book(1, depth=None)
        visible = engine.book(1)
        assert full is not None and visible is not None
        for contract_book, visible_book in zip(full.contracts, visible.contracts, strict=True):
            if contract_book.bids and contract_book.offers:
                self.assertLess(contract_book.bids[0].price, contract_book.offers[0].price)
            self.assertEqual(
                mirror[(contract_book.contract_id, "bids")], {lv.price: lv.quantity for lv in visible_book.bids}
            )
            self.assertEqual(
                mirror[(contract_book.contract_id, "offers")], {lv.price: lv.quantity for lv in visible_book.offers}
            )
        for account in accounts:
            self.assertGreaterEqual(account.exposure, 0)
            self.assertGreaterEqual(account.available_balance, 0)
            for order in engine.open_orders(account):
                self.assertGreater(order.available_quantity, 0)
                self.assertLessEqual(order.available_quantity + order.executed_quantity, order.quantity)
