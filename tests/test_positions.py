"""Tests for smarkets_twisted.trading.positions, and that the exchange's money is that module's."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.exchange.accounts import Account, Accounts
from smarkets_twisted.exchange.catalogue import Catalogue, Contract, Market
from smarkets_twisted.exchange.engine import MatchingEngine
from smarkets_twisted.exchange.events import (
    EngineEvent,
    OrderAccepted,
    OrderCancelled,
    OrderExecuted,
    QuantityReduced,
    ReplaceAccepted,
)
from smarkets_twisted.proto import seto_pb2 as seto
from smarkets_twisted.trading.positions import MarketPosition
from smarkets_twisted.trading.prices import BUY, SELL

HOME, AWAY = 1001, 1002
POUND = 10_000


class WorkedExamples(SynchronousTestCase):
    """Figures a trader can check by hand."""

    def test_a_buy_risks_its_stake(self) -> None:
        # The seed's example: 400000 at 2500 (25%, decimal 4.0) stakes £10.00 for a £40.00 payoff.
        position = MarketPosition()
        position.add_trade(BUY, HOME, 2500, 40 * POUND)
        self.assertEqual(position.worst_loss([HOME, AWAY]), 10 * POUND)
        self.assertEqual(position.result(HOME), 30 * POUND)
        self.assertEqual(position.result(AWAY), -10 * POUND)
        home = position.contracts[HOME]
        self.assertEqual((home.bought, home.sold, home.net), (40 * POUND, 0, 40 * POUND))
        self.assertEqual(home.bought_stake, Decimal("10.00"))
        self.assertEqual(home.bought_avg_price, Decimal(2500))
        self.assertIsNone(home.sold_avg_price)

    def test_a_sell_risks_the_payoff_less_the_stake(self) -> None:
        position = MarketPosition()
        position.add_trade(SELL, HOME, 2500, 40 * POUND)
        self.assertEqual(position.worst_loss([HOME, AWAY]), 30 * POUND)
        self.assertEqual(position.contracts[HOME].sold_stake, Decimal("10.00"))

    def test_an_open_order_reserves_its_worst_case(self) -> None:
        position = MarketPosition()
        position.add_open(SELL, HOME, 2500, 40 * POUND)
        self.assertEqual(position.worst_loss([HOME, AWAY]), 30 * POUND)
        position.add_open(SELL, HOME, 2500, -40 * POUND)
        self.assertEqual(position.worst_loss([HOME, AWAY]), 0)

    def test_hedged_orders_reserve_less_than_their_liabilities(self) -> None:
        # A buy of HOME and a buy of AWAY cannot both lose in a two-way market.
        position = MarketPosition()
        position.add_open(BUY, HOME, 5000, 10 * POUND)
        position.add_open(BUY, AWAY, 5000, 10 * POUND)
        self.assertEqual(position.worst_loss([HOME, AWAY]), 5 * POUND)
        # With a draw possible, both can lose.
        self.assertEqual(position.worst_loss([HOME, AWAY, 1003]), 10 * POUND)

    def test_average_prices_are_exact(self) -> None:
        position = MarketPosition()
        position.add_trade(BUY, HOME, 2500, 1)
        position.add_trade(BUY, HOME, 2600, 2)
        home = position.contracts[HOME]
        self.assertEqual(home.bought_avg_price, Decimal(7700) / 3)
        self.assertEqual(home.bought_stake, Decimal("0.000077"))

    def test_loss_rounded_up_once_per_market(self) -> None:
        position = MarketPosition()
        position.add_trade(BUY, HOME, 3333, 1)
        position.add_trade(BUY, HOME, 3333, 1)
        self.assertEqual(position.worst_loss([HOME, AWAY]), 1)  # 0.6666 rounds up to 1, not 2.


_OPERATION = st.one_of(
    st.tuples(
        st.just("order"),
        st.integers(0, 2),
        st.sampled_from([HOME, AWAY]),
        st.sampled_from([BUY, SELL]),
        st.integers(1, 30 * POUND),
        st.sampled_from([3000, 4000, 5000, 5000, 6000, 7123]),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 2), st.integers(0, 10)),
    st.tuples(st.just("reduce"), st.integers(0, 2), st.integers(0, 10), st.integers(1, 30 * POUND)),
    st.tuples(st.just("replace"), st.integers(0, 2), st.integers(0, 10), st.sampled_from([4000, 5000, 6000])),
)


class SameAsTheExchange(SynchronousTestCase):
    """Positions kept from the events an account receives give the exchange's own exposure."""

    @settings(max_examples=100, deadline=None)
    @given(operations=st.lists(_OPERATION, min_size=5, max_size=50))
    def test_random_flow(self, operations: list[tuple[Any, ...]]) -> None:
        accounts = [Account(f"u{n}", "pw", n + 1, "", pounds * POUND) for n, pounds in enumerate((30, 100, 1000))]
        market = Market(1, "M", (Contract(HOME, "H"), Contract(AWAY, "A")), seto.MARKET_STATE_OPEN)
        engine = MatchingEngine(Accounts(accounts), Catalogue([market]))
        followers = {account.username: _Follower() for account in accounts}
        for operation in operations:
            for event in self.apply(engine, accounts, operation):
                follower = followers.get(getattr(event, "username", ""))
                if follower is not None:
                    follower.apply(event)
            for account in accounts:
                worst = followers[account.username].position.worst_loss([HOME, AWAY])
                self.assertEqual(worst, account.exposure)
                self.assertEqual(account.balance - worst, account.available_balance)

    @staticmethod
    def apply(engine: MatchingEngine, accounts: list[Account], operation: tuple[Any, ...]) -> list[EngineEvent]:
        kind, who, *rest = operation
        account = accounts[who]
        if kind == "order":
            contract, side, quantity, price = rest
            return engine.create_order(account, 1, contract, side, quantity, price, seto.GOOD_TIL_CANCELLED)
        open_orders = engine.open_orders(account)
        if not open_orders:
            return []
        order = open_orders[rest[0] % len(open_orders)]
        if kind == "cancel":
            return engine.cancel(account, order.order_id)
        if kind == "reduce":
            return engine.reduce(account, order.order_id, rest[1])
        return engine.replace(account, order.order_id, rest[1], order.available_quantity)


class _Follower:
    """What a client keeps: its open orders' remaining quantity, and a MarketPosition fed from events."""

    def __init__(self) -> None:
        self.position = MarketPosition()
        self.open: dict[int, tuple[int, int, int, int]] = {}  # order id -> side, contract, price, available

    def apply(self, event: EngineEvent) -> None:
        if isinstance(event, OrderAccepted | ReplaceAccepted):
            if isinstance(event, ReplaceAccepted):
                self.release(event.orig_order_id, self.open[event.orig_order_id][3])
            self.open[event.order_id] = (event.side, event.contract_id, event.price, event.quantity)
            self.position.add_open(event.side, event.contract_id, event.price, event.quantity)
        elif isinstance(event, OrderExecuted):
            self.release(event.order_id, event.quantity)
            self.position.add_trade(event.side, event.contract_id, event.price, event.quantity)
        elif isinstance(event, OrderCancelled):
            self.release(event.order_id, self.open[event.order_id][3])
        elif isinstance(event, QuantityReduced):
            self.release(event.order_id, self.open[event.order_id][3] - event.new_quantity)

    def release(self, order_id: int, quantity: int) -> None:
        side, contract, price, available = self.open[order_id]
        self.position.add_open(side, contract, price, -quantity)
        self.open[order_id] = (side, contract, price, available - quantity)
