"""factory.positions: the client's exposure is the exchange's own, after every fill, over random order flows."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.exchange.engine import MarketStateError
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.payloads import application_message
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.testing import InMemoryConnection, InMemoryExchange
from smarkets_twisted.trading.orders import Order, OrderListener, OrderState
from smarkets_twisted.trading.prices import TICKS, money
from tests.exchange_helpers import AWAY, HALTABLE, HOME, MARKET, OVER, markets, two_accounts
from tests.trading_helpers import TradingTestCase

BUY = seto_pb2.SIDE_BUY
SELL = seto_pb2.SIDE_SELL
NAMES = ("alice", "bob")
#: Ticks close together, so that orders cross and fill; 1 is the lowest price.
NEAR_TICKS = [tick for tick in TICKS if 2900 <= tick <= 3200]

orders = st.tuples(st.just("order"), st.sampled_from(NAMES),
                   st.sampled_from([(MARKET, HOME), (MARKET, AWAY), (HALTABLE, OVER)]), st.sampled_from([BUY, SELL]),
                   st.sampled_from([*NEAR_TICKS, 5000, 6993, 1]), st.integers(min_value=1, max_value=40_000))
actions = st.lists(
    st.one_of(
        orders, orders, orders, orders,  # mostly orders, so that they cross
        st.tuples(st.just("cancel"), st.sampled_from(NAMES), st.integers(0, 20)),
        st.tuples(st.just("reduce"), st.sampled_from(NAMES), st.integers(0, 20), st.integers(1, 20_000)),
        st.tuples(st.just("replace"), st.sampled_from(NAMES), st.integers(0, 20),
                  st.sampled_from(NEAR_TICKS), st.integers(1, 30_000)),
        st.tuples(st.just("drop"), st.sampled_from(NAMES)),
        st.tuples(st.just("new session"), st.sampled_from(NAMES)),
        st.tuples(st.just("market"), st.sampled_from(NAMES), st.sampled_from([MARKET, HALTABLE]),
                  st.sampled_from(["halt", "open", "settle", "void"])),
    ),
    min_size=4,
    max_size=30,
)


class Flow:
    """alice and bob on one in-memory exchange, both subscribed to every market (renewed in a new session)."""

    def __init__(self) -> None:
        self.market = InMemoryExchange(accounts=two_accounts(), catalogue=markets())
        self.clients: dict[str, tuple[SmarketsClientFactory, InMemoryConnection]] = {}
        for name in NAMES:
            self.clients[name] = self.market.client(name, f"{name}-pw")
        self.market.flush()
        for factory, _ in self.clients.values():
            factory.subscribe(MARKET)
            factory.subscribe(HALTABLE)
        self.market.flush()

    def do(self, action: tuple[Any, ...]) -> None:
        kind, name, *rest = action
        factory, connection = self.clients[name]
        live = [o.order_id for o in factory.orders.open() if o.order_id is not None]
        if kind in ("order", "order given up"):
            (market_id, contract_id), side, price, quantity, *while_down = rest
            if while_down and while_down[0]:
                connection.drop()  # the order waits in the queue for the resume
            placed = factory.order(market_id, contract_id, side, quantity, price).addErrback(lambda _: None)
            if kind == "order given up":
                placed.cancel()  # sent: UNKNOWN until its answer; still queued: NOT_SENT, never sent
            if while_down and while_down[0]:
                self.clients[name] = (factory, self.market.connect(factory))
        elif kind in ("drop", "new session"):
            if kind == "new session":
                factory.stop()  # gives the session up: the next login starts anew, from the account sequence
            connection.drop()
            self.clients[name] = (factory, self.market.connect(factory))
        elif kind == "market":
            market_id, change = rest
            exchange = self.market.exchange
            winner = {MARKET: HOME, HALTABLE: OVER}[market_id]
            try:
                {"halt": exchange.halt, "open": exchange.open, "void": exchange.void,
                 "settle": lambda m: exchange.settle(m, winner)}[change](market_id)
            except MarketStateError:
                pass  # not a transition the market can make now
        elif live:
            order_id = live[rest[0] % len(live)]
            if kind == "cancel":
                deferred = factory.cancel(order_id)
            elif kind == "reduce":
                deferred = factory.reduce(order_id, rest[1])
            else:
                deferred = factory.replace(order_id, rest[1], rest[2])
            deferred.addErrback(lambda _: None)
        self.market.flush()


def random_action(rng: random.Random) -> tuple[Any, ...]:
    """One step of a long flow: mostly orders at prices that cross, the rest of every kind."""
    name = rng.choice(NAMES)
    kind = rng.choices(["order", "order given up", "cancel", "reduce", "replace", "drop", "new session", "market"],
                       [12, 1, 2, 2, 2, 1, 1, 0.3])[0]
    if kind in ("order", "order given up"):
        outcome = rng.choice([(MARKET, HOME), (MARKET, AWAY), (HALTABLE, OVER)])
        return (kind, name, outcome, rng.choice([BUY, SELL]), rng.choice(NEAR_TICKS), rng.randint(1, 40_000),
                kind == "order given up" and rng.random() < 0.5)
    if kind == "cancel":
        return kind, name, rng.randint(0, 20)
    if kind == "reduce":
        return kind, name, rng.randint(0, 20), rng.randint(1, 20_000)
    if kind == "replace":
        return kind, name, rng.randint(0, 20), rng.choice(NEAR_TICKS), rng.randint(1, 30_000)
    if kind == "market":
        return kind, name, rng.choice([MARKET, HALTABLE]), rng.choice(["halt", "open", "settle", "void"])
    return kind, name


class RandomFlowTests(SynchronousTestCase):
    def assertAgrees(self, flow: Flow, action: tuple[Any, ...]) -> None:
        """Exposure, available balance, and every order settled and live exactly as the exchange has it."""
        for name, (factory, _) in flow.clients.items():
            account = flow.market.exchange.account(name)
            self.assertEqual(factory.positions.exposure, money(account.exposure), (name, action))
            if factory.positions.balance is not None:
                self.assertEqual(factory.positions.available_balance, money(account.available_balance))
            theirs = {o.order_id: (o.price, o.available_quantity, o.executed_quantity)
                      for o in flow.market.exchange.open_orders(name)}
            ours = {o.order_id: (o.price, o.remaining_quantity, o.executed_quantity) for o in factory.orders.open()}
            self.assertEqual(ours, theirs, (name, action))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(actions)
    def test_after_every_step_of_any_flow(self, flow_actions: list[tuple[Any, ...]]) -> None:
        flow = Flow()
        for action in flow_actions:
            flow.do(action)
            self.assertAgrees(flow, action)

    def test_after_every_step_of_long_flows(self) -> None:
        fills = 0
        for seed in range(30):
            rng = random.Random(seed)
            flow = Flow()
            for _ in range(80):
                action = random_action(rng)
                flow.do(action)
                self.assertAgrees(flow, action)
            fills += sum(1 for factory, _ in flow.clients.values() for order in factory.orders
                         for event in order.history if event.name.startswith("executed"))
        self.assertGreater(fills, 200)  # the flows trade


class PositionTests(TradingTestCase):
    def test_per_contract_and_per_market(self) -> None:
        self.settle(self.alice.subscribe(MARKET))
        self.settle(self.alice.order(MARKET, HOME, BUY, 400_000, 2500))
        self.assertEqual(self.alice.positions.worst_loss(MARKET), Decimal("10.00"))  # the open order's stake
        self.settle(self.bob.order(MARKET, HOME, SELL, 100_000, 2500))
        self.settle(self.bob.order(MARKET, HOME, SELL, 100_000, 2000))
        home = self.alice.positions.contract(MARKET, HOME)
        assert home is not None
        self.assertEqual((home.bought, home.sold, home.net), (200_000, 0, 200_000))
        self.assertEqual(home.bought_stake, Decimal("5.00"))
        self.assertEqual(home.bought_avg_price, Decimal(2500))
        self.assertEqual(self.alice.positions.exposure, money(self.exchange.account("alice").exposure))
        self.assertEqual(self.alice.positions.available_balance, Decimal("990.00"))

    def test_a_fill_hook_sees_the_positions_after_the_fill(self) -> None:
        """In ``order_filled`` the fill is counted and its quantity no longer reserved as open."""
        seen: list[Decimal] = []

        class Filled(OrderListener):
            def order_filled(self, order: Order, price: int, quantity: int) -> None:
                seen.append(positions.exposure)

        positions = self.alice.positions
        self.alice.orders.add_listener(Filled())
        self.settle(self.alice.subscribe(MARKET))
        self.settle(self.alice.order(MARKET, HOME, BUY, 400_000, 2500))
        self.settle(self.bob.order(MARKET, HOME, SELL, 100_000, 2500))
        self.assertEqual(seen, [positions.exposure])
        self.assertEqual(seen, [money(self.exchange.account("alice").exposure)])

    def test_a_hedge_reserves_less_once_the_contracts_are_known(self) -> None:
        self.settle(self.alice.order(MARKET, HOME, BUY, 100_000, 5000))
        self.settle(self.alice.order(MARKET, AWAY, BUY, 100_000, 5000))
        # Not subscribed: a third outcome is assumed possible, which overstates the loss.
        self.assertEqual(self.alice.positions.worst_loss(MARKET), Decimal("10.00"))
        self.alice.positions.set_contracts(MARKET, [HOME, AWAY])
        self.assertEqual(self.alice.positions.worst_loss(MARKET), money(self.exchange.account("alice").exposure))
        self.assertEqual(self.alice.positions.worst_loss(MARKET), Decimal("5.00"))

    def test_a_settled_market_stops_counting(self) -> None:
        for factory in (self.alice, self.bob):
            self.settle(factory.subscribe(MARKET))
        self.settle(self.alice.order(MARKET, HOME, BUY, 400_000, 2500))
        self.settle(self.bob.order(MARKET, HOME, SELL, 100_000, 2500))
        self.exchange.settle(MARKET, HOME)
        self.market.flush()
        for factory, name in ((self.alice, "alice"), (self.bob, "bob")):
            account = self.exchange.account(name)
            self.assertEqual((factory.positions.exposure, factory.positions.available_balance),
                             (Decimal(0), money(account.available_balance)))
        self.assertEqual(self.alice.positions.balance, Decimal("1007.50"))  # won £10.00 for a £2.50 stake


class VoidTests(TradingTestCase):
    """Voids take fills back: the positions and exposure after them are the exchange's."""

    def assertFlat(self, factory: SmarketsClientFactory, name: str) -> None:
        account = self.exchange.account(name)
        self.assertEqual((factory.positions.exposure, factory.positions.available_balance),
                         (money(account.exposure), money(account.available_balance)))
        self.assertEqual((factory.positions.exposure, factory.positions.available_balance),
                         (Decimal(0), Decimal(1000)))
        for contract_id in (HOME, AWAY):
            position = factory.positions.contract(MARKET, contract_id)
            self.assertEqual((position.bought, position.sold) if position else (0, 0), (0, 0))

    def test_a_market_voided_leaves_every_order_and_position_flat(self) -> None:
        """Unsubscribed, so that the order_execute_voided events are what moves the positions.

        The exchange voids each contract and side in one event, against the last
        order that traded there: no order's executed quantity goes below 0.
        """
        for factory in (self.alice, self.bob):
            factory.positions.set_contracts(MARKET, [HOME, AWAY])
        self.settle(self.alice.order(MARKET, HOME, BUY, 400_000, 2500))
        self.settle(self.alice.order(MARKET, AWAY, SELL, 100_000, 3000))
        self.settle(self.bob.order(MARKET, HOME, SELL, 100_000, 2500))
        self.settle(self.bob.order(MARKET, HOME, SELL, 50_000, 2400))
        self.settle(self.bob.order(MARKET, AWAY, BUY, 30_000, 3100))
        self.exchange.void(MARKET)
        self.market.flush()
        for factory, name in ((self.alice, "alice"), (self.bob, "bob")):
            self.assertFlat(factory, name)
            self.assertEqual([(order.executed_quantity, order.fills) for order in factory.orders],
                             [(0, {})] * len(factory.orders))

    def test_a_market_voided_after_fills_at_two_prices_leaves_no_fill_standing(self) -> None:
        """The void names the average price (2433 here), at which the order never filled: still, none stands."""
        self.settle(self.bob.order(MARKET, HOME, SELL, 100_000, 2400))
        self.settle(self.bob.order(MARKET, HOME, SELL, 50_000, 2500))
        accepted = self.settle(self.alice.order(MARKET, HOME, BUY, 150_000, 2500))
        order = self.alice.orders.get(accepted.order_id)
        assert order is not None
        self.assertEqual(order.fills, {2400: 100_000, 2500: 50_000})
        self.exchange.void(MARKET)
        self.market.flush()
        self.assertEqual((order.executed_quantity, order.executed_value, order.average_price, order.fills),
                         (0, 0, None, {}))

    def filled_order(self) -> tuple[Order, list[tuple[int, int]]]:
        """alice's buy of 400000 at 2500, filled 100000 at 2400 and 50000 at 2500, 250000 open; her fills heard."""
        filled: list[tuple[int, int]] = []

        class Fills(OrderListener):
            def order_filled(self, order: Order, price: int, quantity: int) -> None:
                filled.append((price, quantity))

        self.alice.orders.add_listener(Fills())
        self.settle(self.alice.subscribe(MARKET))
        self.settle(self.bob.order(MARKET, HOME, SELL, 100_000, 2400))
        self.settle(self.bob.order(MARKET, HOME, SELL, 50_000, 2500))
        accepted = self.settle(self.alice.order(MARKET, HOME, BUY, 400_000, 2500))  # fills at both, rests
        order = self.alice.orders.get(accepted.order_id)
        assert order is not None
        self.assertEqual((order.executed_quantity, order.remaining_quantity, order.fills),
                         (150_000, 250_000, {2400: 100_000, 2500: 50_000}))
        self.assertEqual(self.alice.positions.exposure, money(self.exchange.account("alice").exposure))
        self.assertEqual(self.alice.positions.exposure, Decimal("9.90"))  # 2.40 + 1.25 bought, 6.25 open
        return order, filled

    def send(self, name: str, order: Order, **fields: Any) -> None:
        """A scripted account event for ``order`` (the simulated exchange sends no order_voided, no order_reduced)."""
        assert self.alice.orders.account_sequence is not None
        self.alice_connection.server.send_payload(application_message(
            name, order_id=order.order_id, account_sequence_64=self.alice.orders.account_sequence + 1,
            market_id=MARKET, contract_id=HOME, side=BUY, **fields))
        self.market.flush()

    def test_an_order_voided_by_the_exchange_takes_its_fills_back(self) -> None:
        order, filled = self.filled_order()
        # The exchange voids all of the order: its fills no longer stand, and neither does its rest.
        self.send("order_voided", order, quantity=400_000, source_quantity=400_000, executed_quantity=0)
        self.assertEqual((order.state, order.executed_quantity, order.remaining_quantity, order.fills),
                         (OrderState.VOIDED, 0, 0, {}))
        self.assertEqual(order.history[-1].name, "voided 400000 of 400000: 150000 executed undone, 250000 open")
        self.assertEqual(filled[-2:], [(2500, -50_000), (2400, -100_000)])
        home = self.alice.positions.contract(MARKET, HOME)
        assert home is not None
        self.assertEqual((home.bought, home.bought_stake), (0, Decimal(0)))
        self.assertEqual((self.alice.positions.exposure, self.alice.positions.available_balance),
                         (Decimal(0), Decimal(1000)))

    def assertOrder(self, order: Order, state: OrderState, executed: int, remaining: int, exposure: str) -> None:
        self.assertEqual((order.state, order.executed_quantity, order.remaining_quantity), (state, executed, remaining))
        self.assertEqual(self.alice.positions.exposure, Decimal(exposure))
        home = self.alice.positions.contract(MARKET, HOME)
        assert home is not None
        self.assertEqual(home.bought, executed)

    def test_a_partial_void_of_fills_leaves_the_rest_open(self) -> None:
        """The fills above the void's executed_quantity are taken back; the open quantity stays."""
        order, filled = self.filled_order()
        self.send("order_voided", order, quantity=50_000, source_quantity=400_000, executed_quantity=100_000)
        self.assertOrder(order, OrderState.LIVE, 100_000, 250_000, "8.65")  # 2.40 bought, 6.25 open
        self.assertEqual((order.fills, order.average_price, filled[-1]), ({2400: 100_000}, Decimal(2400),
                                                                            (2500, -50_000)))
        self.assertEqual(order.history[-1].name, "voided 50000 of 400000: 50000 executed undone, 0 open")
        self.assertIn(order, self.alice.orders.open())

    def test_a_partial_void_of_open_quantity_keeps_the_fills(self) -> None:
        order, filled = self.filled_order()
        self.send("order_voided", order, quantity=100_000, source_quantity=400_000, executed_quantity=150_000)
        self.assertOrder(order, OrderState.LIVE, 150_000, 150_000, "7.40")  # 3.65 bought, 3.75 open
        self.assertEqual(filled, [(2400, 100_000), (2500, 50_000)])
        # The exchange's own figures, once it holds the same open quantity, are these.
        self.settle(self.alice.reduce(order.order_id, 150_000))
        self.assertEqual(self.alice.positions.exposure, money(self.exchange.account("alice").exposure))

    def test_a_void_without_executed_quantity_takes_fills_back_first(self) -> None:
        """Undoing fills, not open quantity, can only overstate the exposure: the rest comes off what is open."""
        order, _ = self.filled_order()
        self.send("order_voided", order, quantity=200_000, source_quantity=400_000)
        self.assertOrder(order, OrderState.LIVE, 0, 200_000, "5.00")

    def test_a_void_of_all_that_is_open_closes_the_order_with_its_fills_standing(self) -> None:
        order, _ = self.filled_order()
        self.send("order_voided", order, quantity=250_000, source_quantity=400_000, executed_quantity=150_000)
        self.assertOrder(order, OrderState.VOIDED, 150_000, 0, "3.65")
        self.assertNotIn(order, self.alice.orders.open())

    def test_an_order_reduced_by_the_exchange_follows_its_figures(self) -> None:
        order, filled = self.filled_order()
        self.send("order_reduced", order, price=2500, quantity=150_000, source_quantity=400_000,
                  available_quantity=100_000, executed_quantity=150_000)
        self.assertOrder(order, OrderState.LIVE, 150_000, 100_000, "6.15")  # 3.65 bought, 2.50 open
        self.assertEqual(order.history[-1].name, "reduced by the exchange to 100000 open")
        self.send("order_reduced", order, price=2500, quantity=50_000, source_quantity=250_000,
                  available_quantity=50_000, executed_quantity=100_000)
        self.assertOrder(order, OrderState.LIVE, 100_000, 50_000, "3.65")  # 2.40 bought, 1.25 open
        self.assertEqual((filled[-1], order.history[-1].name),
                         ((2500, -50_000), "reduced by the exchange to 50000 open, 50000 executed undone"))
        self.send("order_reduced", order, price=2500, quantity=50_000, source_quantity=150_000, available_quantity=0)
        self.assertOrder(order, OrderState.CANCELLED, 100_000, 0, "2.40")

    def test_an_order_reduced_without_available_quantity_keeps_the_most_open(self) -> None:
        """``quantity`` read as the quantity taken off (here) or as the new quantity: whichever leaves more open."""
        order, _ = self.filled_order()
        self.send("order_reduced", order, price=2500, quantity=100_000, source_quantity=400_000)
        self.assertOrder(order, OrderState.LIVE, 150_000, 150_000, "7.40")
        self.send("order_reduced", order, price=2500, quantity=250_000, source_quantity=300_000)
        self.assertOrder(order, OrderState.LIVE, 150_000, 100_000, "6.15")  # 250000 new, less 150000 executed
