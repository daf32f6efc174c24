"""The Exchange service over the wire: orders, money, market data, settings, throttle, account replay.

Clients here are hand-driven Sessions (tests.exchange_helpers), so that each
test sees exactly the payloads and seqs the exchange writes.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.exchange import messages
from smarkets_twisted.exchange.engine import MAX_LABEL_LENGTH, MarketStateError
from smarkets_twisted.exchange.events import AccountEvent
from smarkets_twisted.exchange.service import Exchange, ExchangeSettings, id_base_at
from smarkets_twisted.payloads import Payload, body, handler_name, session_message
from smarkets_twisted.proto import eto_pb2, seto_pb2
from tests.exchange_helpers import (
    AWAY,
    HALTABLE,
    HOME,
    MARKET,
    OVER,
    ExchangeFixture,
    ScriptedClient,
    markets,
    two_accounts,
)

BUY = seto_pb2.SIDE_BUY
SELL = seto_pb2.SIDE_SELL


def named(payloads: list[Payload], name: str) -> list[Any]:
    """The bodies of the payloads called ``name``."""
    return [body(p) for p in payloads if handler_name(p) == name]


def one(payloads: list[Payload], name: str) -> Any:
    (found,) = named(payloads, name)
    return found


class ServiceTestCase(SynchronousTestCase):
    settings: ExchangeSettings | None = None

    def setUp(self) -> None:
        self.fixture = ExchangeFixture(settings=self.settings)
        self.exchange = self.fixture.exchange
        self.alice = self.fixture.client()
        self.alice.login()
        self.bob = self.fixture.client()
        self.bob.login("bob", "bob-pw")

    def order_id(self, client: ScriptedClient, side: int, quantity: int, price: int, **fields: object) -> int:
        """Place an order that must be accepted; return its id."""
        client.order(side, quantity, price, **fields)
        accepted: seto_pb2.OrderAccepted = one(client.take(), "seto.order_accepted")
        return int(accepted.order_id)


class OrderTests(ServiceTestCase):
    def test_accepted_echoes_seq_reference_and_label(self) -> None:
        seq = self.alice.order(BUY, 400_000, 2500, reference=77, label="mine")
        received = self.alice.take()
        self.assertEqual([handler_name(p) for p in received], ["seto.order_accepted", "seto.balance_changed"])
        accepted = received[0].order_accepted
        self.assertEqual((accepted.seq, accepted.reference, accepted.label), (seq, 77, "mine"))
        self.assertEqual((accepted.market_id, accepted.contract_id, accepted.side), (MARKET, HOME, BUY))
        self.assertEqual((accepted.price, accepted.quantity), (2500, 400_000))
        self.assertEqual(accepted.account_sequence_64, 1)
        self.assertEqual(accepted.account_sequence, 1)
        # A £40 payoff at 25% risks £10.
        self.assertEqual((accepted.exposure, accepted.available_balance), (10.0, 990.0))
        changed = received[1].balance_changed
        self.assertEqual((changed.available_balance, changed.exposure), (990.0, 10.0))
        # Only alice hears of it.
        self.assertEqual(self.bob.take(), [])

    def test_invalid_price_and_quantity(self) -> None:
        for price, quantity, reasons in (
            (0, 10_000, ["ORDER_INVALID_INVALID_PRICE"]),
            (10_000, 10_000, ["ORDER_INVALID_INVALID_PRICE"]),
            (5000, 0, ["ORDER_INVALID_INVALID_QUANTITY"]),
            (0, 0, ["ORDER_INVALID_INVALID_PRICE", "ORDER_INVALID_INVALID_QUANTITY"]),
        ):
            seq = self.alice.order(BUY, quantity, price, reference=5)
            invalid: seto_pb2.OrderInvalid = one(self.alice.take(), "seto.order_invalid")
            self.assertEqual(invalid.seq, seq)
            self.assertEqual(invalid.reference, 5)
            self.assertEqual([seto_pb2.OrderInvalidReason.Name(r) for r in invalid.reasons], reasons)

    def assertRejected(self, reason: str, **order: object) -> None:
        fields: dict[str, object] = {"side": BUY, "quantity": 10_000, "price": 5000, "reference": 9}
        fields.update(order)
        seq = self.alice.order(**fields)
        rejected: seto_pb2.OrderRejected = one(self.alice.take(), "seto.order_rejected")
        self.assertEqual(seto_pb2.OrderRejectedReason.Name(rejected.reason), reason)
        self.assertEqual((rejected.seq, rejected.reference), (seq, 9))
        self.assertFalse(rejected.HasField("label"))

    def test_rejections(self) -> None:
        self.assertRejected("ORDER_REJECTED_MARKET_NOT_FOUND", market_id=999)
        self.assertRejected("ORDER_REJECTED_CONTRACT_NOT_FOUND", contract_id=999)
        self.assertRejected("ORDER_REJECTED_INSUFFICIENT_FUNDS", quantity=100_000_000)
        self.exchange.halt(HALTABLE)
        self.assertRejected("ORDER_REJECTED_MARKET_HALTED", market_id=HALTABLE, contract_id=OVER)
        self.exchange.settle(HALTABLE, OVER)
        self.assertRejected("ORDER_REJECTED_MARKET_SETTLED", market_id=HALTABLE, contract_id=OVER)

    def test_label_too_long(self) -> None:
        """Refused, and not echoed: the answers are kept in the sent logs."""
        self.assertRejected("ORDER_REJECTED_LIMIT_EXCEEDED", label="x" * (MAX_LABEL_LENGTH + 1))
        order_id = self.order_id(self.alice, BUY, 10_000, 2500, label="x" * MAX_LABEL_LENGTH)
        self.alice.send_message("order_cancel_replace", orig_order_id=order_id, price=2600, quantity=10_000,
                                label="y" * (MAX_LABEL_LENGTH + 1))
        rejected = one(self.alice.take(), "seto.order_cancel_replace_rejected")
        self.assertEqual(rejected.reason, seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_SERVICE_TEMPORARILY_UNAVAILABLE)
        self.assertEqual(rejected.label, "x" * MAX_LABEL_LENGTH)
        (kept,) = self.exchange.open_orders("alice")
        self.assertEqual((kept.order_id, kept.price), (order_id, 2500))

    def test_a_replace_refused_for_a_reason_the_schema_lacks_says_why_in_the_log(self) -> None:
        """SERVICE_TEMPORARILY_UNAVAILABLE stands in for several reasons: the log tells them apart."""
        stand_in = "ORDER_CANCEL_REPLACE_REJECTED_SERVICE_TEMPORARILY_UNAVAILABLE"
        order_id = self.order_id(self.alice, BUY, 10_000, 2500)
        with capturedLogs() as events:
            for fields in [{"label": "y" * (MAX_LABEL_LENGTH + 1)}, {"quantity": 10**12}]:
                self.alice.send_message("order_cancel_replace", orig_order_id=order_id, **{
                    "price": 2600, "quantity": 10_000, **fields})
            self.alice.send_message("order_cancel_replace", orig_order_id=order_id + 99, price=2600, quantity=1)
        lines = [formatEvent(event) for event in events if "replace" in event.get("log_format", "")]
        self.assertEqual(lines, [
            f"alice's replace of order {order_id} refused: label longer than {MAX_LABEL_LENGTH} characters "
            f"(sent as {stand_in})",
            f"alice's replace of order {order_id} refused: insufficient funds (sent as {stand_in})",
        ])

    def test_self_cross_is_rejected(self) -> None:
        self.order_id(self.alice, SELL, 10_000, 5000)
        self.assertRejected("ORDER_REJECTED_CROSSED_SELF", side=BUY, price=5000)
        self.assertEqual(len(self.exchange.open_orders("alice")), 1)

    def test_execution_reaches_both_parties(self) -> None:
        resting = self.order_id(self.alice, SELL, 30_000, 4000, label="lay")
        self.bob.order(BUY, 10_000, 4500, label="back")
        bob_received = self.bob.take()
        self.assertEqual(
            [handler_name(p) for p in bob_received],
            ["seto.order_accepted", "seto.order_executed", "seto.balance_changed"],
        )
        taker: seto_pb2.OrderExecuted = one(bob_received, "seto.order_executed")
        # A buy at 45% crossing a sell resting at 40% executes at 40%.
        self.assertEqual((taker.price, taker.quantity, taker.orig_price, taker.side), (4000, 10_000, 4500, BUY))
        self.assertEqual((taker.total_executed_quantity, taker.executed_avg_price, taker.available_quantity),
                         (10_000, 4000, 0))
        self.assertEqual(taker.label, "back")
        maker: seto_pb2.OrderExecuted = one(self.alice.take(), "seto.order_executed")
        self.assertEqual(maker.order_id, resting)
        self.assertEqual((maker.price, maker.quantity, maker.side), (4000, 10_000, SELL))
        self.assertEqual((maker.total_executed_quantity, maker.available_quantity), (10_000, 20_000))
        self.assertEqual(maker.label, "lay")

    def test_partial_fills_and_average_price(self) -> None:
        self.order_id(self.alice, SELL, 10_000, 4000)
        self.order_id(self.alice, SELL, 10_000, 5000)
        self.bob.order(BUY, 30_000, 6000)
        fills: list[seto_pb2.OrderExecuted] = named(self.bob.take(), "seto.order_executed")
        self.assertEqual([(f.price, f.quantity, f.total_executed_quantity, f.available_quantity) for f in fills],
                         [(4000, 10_000, 10_000, 20_000), (5000, 10_000, 20_000, 10_000)])
        self.assertEqual(fills[-1].executed_avg_price, 4500)
        (rest,) = self.exchange.open_orders("bob")
        self.assertEqual((rest.price, rest.available_quantity), (6000, 10_000))

    def test_immediate_or_cancel(self) -> None:
        self.order_id(self.alice, SELL, 10_000, 4000)
        self.bob.order(BUY, 30_000, 4000, tif=seto_pb2.IMMEDIATE_OR_CANCEL)
        received = self.bob.take()
        self.assertEqual(
            [handler_name(p) for p in received],
            ["seto.order_accepted", "seto.order_executed", "seto.order_cancelled", "seto.balance_changed"],
        )
        cancelled: seto_pb2.OrderCancelled = one(received, "seto.order_cancelled")
        self.assertEqual(seto_pb2.OrderCancelledReason.Name(cancelled.reason), "ORDER_CANCELLED_INSUFFICIENT_LIQUIDITY")
        self.assertEqual(cancelled.executed_quantity, 10_000)
        self.assertEqual(self.exchange.open_orders("bob"), [])

    def test_cancel(self) -> None:
        order_id = self.order_id(self.alice, BUY, 400_000, 2500)
        self.alice.send_message("order_cancel", order_id=order_id)
        received = self.alice.take()
        self.assertEqual([handler_name(p) for p in received], ["seto.order_cancelled", "seto.balance_changed"])
        cancelled: seto_pb2.OrderCancelled = one(received, "seto.order_cancelled")
        self.assertEqual(cancelled.order_id, order_id)
        self.assertEqual(seto_pb2.OrderCancelledReason.Name(cancelled.reason), "ORDER_CANCELLED_MEMBER_REQUESTED")
        self.assertEqual((cancelled.available_balance, cancelled.exposure), (1000.0, 0.0))
        self.alice.send_message("order_cancel", order_id=order_id)
        rejected: seto_pb2.OrderCancelRejected = one(
            self.alice.take(), "seto.order_cancel_rejected"
        )
        self.assertEqual(seto_pb2.OrderCancelRejectedReason.Name(rejected.reason), "ORDER_CANCEL_REJECTED_TOO_LATE")
        self.alice.send_message("order_cancel", order_id=12345)
        rejected = one(self.alice.take(), "seto.order_cancel_rejected")
        self.assertEqual(seto_pb2.OrderCancelRejectedReason.Name(rejected.reason), "ORDER_CANCEL_REJECTED_NOT_FOUND")

    def test_cancel_all(self) -> None:
        self.order_id(self.alice, BUY, 10_000, 2500)
        self.order_id(self.alice, BUY, 10_000, 2500, market_id=HALTABLE, contract_id=OVER)
        self.alice.send_message("order_cancel_all", market_id=MARKET, reference=3)
        received = self.alice.take()
        self.assertEqual([handler_name(p) for p in received][:2],
                         ["seto.order_cancel_all_accepted", "seto.order_cancelled"])
        self.assertEqual(received[0].order_cancel_all_accepted.reference, 3)
        self.assertEqual([o.market_id for o in self.exchange.open_orders("alice")], [HALTABLE])
        self.alice.send_message("order_cancel_all")
        self.assertEqual(len(named(self.alice.take(), "seto.order_cancelled")), 1)
        self.assertEqual(self.exchange.open_orders("alice"), [])
        self.alice.send_message("order_cancel_all", market_id=999)
        one(self.alice.take(), "seto.order_cancel_all_rejected")

    def test_reduce(self) -> None:
        order_id = self.order_id(self.alice, BUY, 400_000, 2500)
        self.alice.send_message("order_quantity_reduce", order_id=order_id, new_quantity=100_000)
        reduced: seto_pb2.OrderQuantityReduced = one(
            self.alice.take(), "seto.order_quantity_reduced"
        )
        self.assertEqual((reduced.order_id, reduced.new_quantity), (order_id, 100_000))
        self.assertEqual(self.exchange.account("alice").exposure, 25_000)
        self.alice.send_message("order_quantity_reduce", order_id=order_id, new_quantity=200_000)
        rejected: seto_pb2.OrderQuantityReduceRejected = one(
            self.alice.take(), "seto.order_quantity_reduce_rejected"
        )
        self.assertEqual(seto_pb2.OrderQuantityReduceRejectedReason.Name(rejected.reason),
                         "ORDER_QUANTITY_REDUCE_REJECTED_INVALID_NEW_QUANTITY")

    def test_cancel_replace(self) -> None:
        order_id = self.order_id(self.alice, BUY, 10_000, 2500)
        self.alice.send_message("order_cancel_replace", orig_order_id=order_id, price=3000, quantity=20_000)
        received = self.alice.take()
        self.assertEqual([handler_name(p) for p in received][:2],
                         ["seto.order_pending_replace", "seto.order_cancel_replace_accepted"])
        accepted = received[1].order_cancel_replace_accepted
        self.assertEqual((accepted.orig_order_id, accepted.price, accepted.quantity, accepted.quantity_left),
                         (order_id, 3000, 20_000, 10_000))
        (new,) = self.exchange.open_orders("alice")
        self.assertEqual((new.order_id, new.price), (accepted.order_id, 3000))
        self.alice.send_message("order_cancel_replace", orig_order_id=new.order_id, price=0, quantity=20_000)
        received = self.alice.take()
        self.assertEqual([handler_name(p) for p in received],
                         ["seto.order_pending_replace", "seto.order_cancel_replace_rejected"])
        self.alice.send_message("order_cancel_replace", orig_order_id=999, price=3000, quantity=1)
        rejected = one(self.alice.take(), "seto.order_cancel_replace_rejected")
        self.assertEqual(rejected.orig_order_id, 999)


class RoutingTests(ServiceTestCase):
    """Two sessions of one account: answers go to the requester, account events to both."""

    def setUp(self) -> None:
        super().setUp()
        self.other = self.fixture.client()
        self.other.login()

    def assertOnlyRequester(self, name: str, reference: int) -> None:
        answer = one(self.alice.take(), name)
        self.assertEqual(answer.reference, reference)
        self.assertNotIn(name, [handler_name(p) for p in self.other.take()])

    def test_rejections_and_cancel_all_answers_go_to_the_requester(self) -> None:
        order_id = self.order_id(self.alice, BUY, 10_000, 2500)
        self.other.take()
        self.alice.send_message("order_cancel", order_id=999, reference=1)
        self.assertOnlyRequester("seto.order_cancel_rejected", 1)
        self.alice.send_message("order_quantity_reduce", order_id=order_id, new_quantity=50_000, reference=2)
        self.assertOnlyRequester("seto.order_quantity_reduce_rejected", 2)
        self.alice.send_message("order_cancel_replace", orig_order_id=999, price=2600, quantity=1, reference=3)
        self.assertOnlyRequester("seto.order_cancel_replace_rejected", 3)
        self.alice.send_message("order_cancel_all", market_id=999, reference=4)
        self.assertOnlyRequester("seto.order_cancel_all_rejected", 4)
        self.alice.send_message("order_cancel_all", market_id=HALTABLE, reference=5)
        self.assertOnlyRequester("seto.order_cancel_all_accepted", 5)

    def test_account_events_go_to_every_session_with_the_reference(self) -> None:
        order_id = self.order_id(self.alice, BUY, 10_000, 2500)
        self.other.take()
        self.alice.send_message("order_quantity_reduce", order_id=order_id, new_quantity=5_000, reference=6)
        self.alice.send_message("order_cancel_replace", orig_order_id=order_id, price=2600, quantity=5_000,
                                reference=7)
        for client in (self.alice, self.other):
            received = client.take()
            self.assertEqual(one(received, "seto.order_quantity_reduced").reference, 6)
            self.assertEqual(one(received, "seto.order_cancel_replace_accepted").reference, 7)
        (replaced,) = self.exchange.open_orders("alice")
        self.alice.send_message("order_cancel", order_id=replaced.order_id, reference=8)
        for client in (self.alice, self.other):
            self.assertEqual(one(client.take(), "seto.order_cancelled").reference, 8)


class MoneyTests(ServiceTestCase):
    def test_balance_and_exposure_after_fills_cancels_and_settlement(self) -> None:
        alice, bob = self.exchange.account("alice"), self.exchange.account("bob")
        self.order_id(self.alice, SELL, 400_000, 2500)
        self.assertEqual(alice.exposure, 300_000)  # a lay of £40 payoff at 25% risks £30
        self.bob.order(BUY, 400_000, 2500)
        self.assertEqual((alice.exposure, bob.exposure), (300_000, 100_000))
        self.alice.take()
        bob_balance: seto_pb2.BalanceChanged = named(
            self.bob.take(), "seto.balance_changed"
        )[-1]
        self.assertEqual((bob_balance.available_balance, bob_balance.exposure), (990.0, 10.0))
        self.exchange.settle(MARKET, HOME)
        self.assertEqual((alice.balance, alice.exposure), (10_000_000 - 300_000, 0))
        self.assertEqual((bob.balance, bob.exposure), (10_000_000 + 300_000, 0))
        changed: seto_pb2.BalanceChanged = named(
            self.bob.take(), "seto.balance_changed"
        )[-1]
        self.assertEqual(changed.available_balance, 1030.0)


class MarketStateTests(ServiceTestCase):
    def test_market_state_to_subscribers(self) -> None:
        self.alice.send_message("market_subscribe", market_id=HALTABLE)
        self.alice.take()
        held = self.order_id(self.bob, BUY, 10_000, 2500, market_id=HALTABLE, contract_id=OVER,
                             tif=seto_pb2.GOOD_TILL_HALTED)
        kept = self.order_id(self.bob, BUY, 10_000, 2400, market_id=HALTABLE, contract_id=OVER)
        self.alice.take()
        self.exchange.halt(HALTABLE)
        state: seto_pb2.MarketState = one(self.alice.take(), "seto.market_state")
        self.assertEqual((state.market_id, seto_pb2.MarketStateType.Name(state.state)),
                         (HALTABLE, "MARKET_STATE_HALTED"))
        cancelled: seto_pb2.OrderCancelled = one(self.bob.take(), "seto.order_cancelled")
        self.assertEqual((cancelled.order_id, seto_pb2.OrderCancelledReason.Name(cancelled.reason)),
                         (held, "ORDER_CANCELLED_MARKET_HALTED"))
        self.assertEqual([o.order_id for o in self.exchange.open_orders("bob")], [kept])
        self.exchange.open(HALTABLE)
        self.assertEqual(named(self.alice.take(), "seto.market_state")[0].state,
                         seto_pb2.MARKET_STATE_OPEN)

    def test_going_live_keeps_only_keep_in_play(self) -> None:
        kept = self.order_id(self.bob, BUY, 10_000, 2500, market_id=HALTABLE, contract_id=OVER,
                             tif=seto_pb2.KEEP_IN_PLAY)
        self.order_id(self.bob, BUY, 10_000, 2400, market_id=HALTABLE, contract_id=OVER)
        self.exchange.go_live(HALTABLE)
        self.assertEqual([o.order_id for o in self.exchange.open_orders("bob")], [kept])

    def test_bad_state_change(self) -> None:
        self.assertRaises(MarketStateError, self.exchange.settle, MARKET, 999)
        self.assertRaises(MarketStateError, self.exchange.halt, 999)


class MarketDataTests(ServiceTestCase):
    settings = ExchangeSettings(depth=3)

    def subscribe(self, client: ScriptedClient, market_id: int = MARKET) -> dict[int, tuple[dict[int, int], ...]]:
        """Subscribe; return the snapshot as {contract: (bids, offers)}."""
        client.send_message("market_subscribe", market_id=market_id)
        snapshot: seto_pb2.MarketQuotes = one(client.take(), "seto.market_quotes")
        return {
            quotes.contract_id: (
                {q.price: q.quantity for q in quotes.bids},
                {q.price: q.quantity for q in quotes.offers},
            )
            for quotes in snapshot.contract_quotes
        }

    @staticmethod
    def apply(book: dict[int, tuple[dict[int, int], ...]], payloads: list[Payload]) -> None:
        for delta in named(payloads, "seto.contract_quotes"):
            bids, offers = book[delta.contract_id]
            for levels, quotes in ((bids, delta.bids), (offers, delta.offers)):
                for quote in quotes:
                    if quote.quantity:
                        levels[quote.price] = quote.quantity
                    else:
                        levels.pop(quote.price, None)

    def exchange_view(self) -> dict[int, tuple[dict[int, int], ...]]:
        book = self.exchange.book(MARKET)
        assert book is not None
        return {c.contract_id: ({lv.price: lv.quantity for lv in c.bids}, {lv.price: lv.quantity for lv in c.offers})
                for c in book.contracts}

    def test_snapshot_then_deltas(self) -> None:
        self.order_id(self.alice, BUY, 10_000, 2500)
        snapshot = self.subscribe(self.bob)
        self.assertEqual(snapshot[HOME], ({2500: 10_000}, {}))
        self.assertEqual(snapshot[AWAY], ({}, {}))
        self.order_id(self.alice, BUY, 5_000, 2500)
        delta: seto_pb2.ContractQuotes = one(self.bob.take(), "seto.contract_quotes")
        self.assertEqual([(q.price, q.quantity) for q in delta.bids], [(2500, 15_000)])
        self.bob.order(SELL, 15_000, 2500)
        delta = one(self.bob.take(), "seto.contract_quotes")
        self.assertEqual([(q.price, q.quantity) for q in delta.bids], [(2500, 0)])
        # One execution per resting order filled; liquidity is the incoming order's side.
        self.assertEqual([(e.price, e.quantity, e.liquidity) for e in delta.executions],
                         [(2500, 10_000, SELL), (2500, 5_000, SELL)])
        self.assertEqual(delta.last_execution.quantity, 5_000)

    def test_deltas_reconstruct_the_exchange_book(self) -> None:
        """Random order flow (crossing, cancelling, deeper than the depth): the copy stays exact."""
        copy = self.subscribe(self.bob)
        rng = random.Random(4)
        clients = {"alice": self.alice, "bob": self.bob}
        for _ in range(300):
            username = rng.choice(["alice", "bob"])
            open_orders = self.exchange.open_orders(username)
            if open_orders and rng.random() < 0.3:
                clients[username].send_message("order_cancel", order_id=rng.choice(open_orders).order_id)
            else:
                clients[username].order(rng.choice([BUY, SELL]), rng.randrange(1, 5) * 1000,
                                        rng.randrange(4000, 6000, 100), contract_id=rng.choice([HOME, AWAY]))
            self.alice.take()
            self.apply(copy, self.bob.take())
            self.assertEqual(copy, self.exchange_view())

    def test_unsubscribe_stops_deltas(self) -> None:
        self.subscribe(self.bob)
        self.bob.send_message("market_unsubscribe", market_id=MARKET)
        self.order_id(self.alice, BUY, 10_000, 2500)
        self.assertEqual(self.bob.take(), [])

    def test_unknown_market_gets_an_empty_snapshot(self) -> None:
        """The schema has no subscribe rejection: an empty market_quotes ends the client's wait."""
        self.bob.send_message("market_subscribe", market_id=999)
        snapshot: seto_pb2.MarketQuotes = one(self.bob.take(), "seto.market_quotes")
        self.assertEqual((snapshot.market_id, len(snapshot.contract_quotes)), (999, 0))
        self.assertFalse(any(999 in session.subscriptions for session in self.exchange.registry))
        self.assertFalse(self.bob.closed)

    def test_detached_session_gets_a_snapshot_on_resume_not_deltas(self) -> None:
        """Market data never crowds account events out of a detached session's log."""
        self.subscribe(self.bob)
        self.subscribe(self.bob, HALTABLE)
        self.bob.disconnect()
        self.order_id(self.alice, SELL, 10_000, 4000)
        self.order_id(self.alice, BUY, 10_000, 3000)
        self.order_id(self.alice, BUY, 10_000, 3100, contract_id=AWAY)
        resumed = self.fixture.client(self.bob.state)
        received = resumed.login("bob", "bob-pw")
        self.assertEqual([handler_name(p) for p in received],
                         ["eto.login_response", "seto.throttle_limits_changed",
                          "seto.market_quotes", "seto.market_quotes"])
        self.assertNotIn("seto.contract_quotes", [handler_name(p) for p in resumed.wire])
        snapshot = received[2].market_quotes
        self.assertEqual(snapshot.market_id, MARKET)
        home = {q.contract_id: q for q in snapshot.contract_quotes}[HOME]
        self.assertEqual([(q.price, q.quantity) for q in home.offers], [(4000, 10_000)])
        self.assertEqual(received[3].market_quotes.market_id, HALTABLE)
        # Deltas flow again once connected.
        self.order_id(self.alice, BUY, 10_000, 3200)
        self.assertEqual(resumed.names(), ["seto.contract_quotes"])


class SettingsTests(ServiceTestCase):
    def test_settings_accepted(self) -> None:
        self.alice.send_message("settings", cancel_all_on_failure=True)
        accepted: seto_pb2.SettingsAccepted = one(self.alice.take(), "seto.settings_accepted")
        self.assertTrue(accepted.cancel_all_on_failure)

    def test_cancel_all_on_failure(self) -> None:
        """When the connection fails, the session's open orders are cancelled; another session's stay."""
        self.alice.send_message("settings", cancel_all_on_failure=True)
        self.order_id(self.alice, BUY, 10_000, 2500)
        self.order_id(self.alice, BUY, 10_000, 2400)
        other = self.fixture.client()
        other.login()
        kept = self.order_id(other, BUY, 10_000, 2300)
        self.order_id(self.bob, BUY, 10_000, 2200)
        self.alice.disconnect()
        self.assertEqual([o.order_id for o in self.exchange.open_orders("alice")], [kept])
        self.assertEqual(len(self.exchange.open_orders("bob")), 1)
        self.assertEqual(self.exchange.account("alice").exposure, 2300)
        # The session hears of the cancellations when it resumes.
        resumed = self.fixture.client(self.alice.state)
        self.assertEqual(len(named(resumed.login(), "seto.order_cancelled")), 2)

    def test_orders_stay_without_the_setting(self) -> None:
        self.order_id(self.alice, BUY, 10_000, 2500)
        self.alice.disconnect()
        self.assertEqual(len(self.exchange.open_orders("alice")), 1)

    def test_orders_stay_after_a_clean_logout(self) -> None:
        self.alice.send_message("settings", cancel_all_on_failure=True)
        self.order_id(self.alice, BUY, 10_000, 2500)
        self.alice.session.send_logout(0.0)
        self.alice.pump()
        self.alice.disconnect(clean=True)
        self.assertEqual(len(self.exchange.open_orders("alice")), 1)

    def test_replaced_order_is_still_the_sessions(self) -> None:
        self.alice.send_message("settings", cancel_all_on_failure=True)
        order_id = self.order_id(self.alice, BUY, 10_000, 2500)
        self.alice.send_message("order_cancel_replace", orig_order_id=order_id, price=2600, quantity=10_000)
        self.alice.disconnect()
        self.assertEqual(self.exchange.open_orders("alice"), [])


class ThrottleTests(ServiceTestCase):
    settings = ExchangeSettings(average_rate_ps=5, burst_size=3, tick_ms=200)

    def test_orders_beyond_the_burst_are_rejected(self) -> None:
        for _ in range(3):
            self.order_id(self.alice, BUY, 1000, 2000)
        seq = self.alice.order(BUY, 1000, 2000, reference=4)
        rejected: seto_pb2.OrderRejected = one(self.alice.take(), "seto.order_rejected")
        self.assertEqual(seto_pb2.OrderRejectedReason.Name(rejected.reason), "ORDER_REJECTED_THROTTLE_EXCEEDED")
        self.assertEqual((rejected.seq, rejected.reference), (seq, 4))
        self.assertEqual(rejected.account_sequence_64, self.exchange.account("alice").account_sequence)
        # One tick adds average_rate_ps * tick_ms / 1000 = 1 token.
        self.alice.advance(0.2)
        self.order_id(self.alice, BUY, 1000, 2000)

    def test_pings_count_against_the_throttle(self) -> None:
        """Every payload counts: pings beyond the burst are not answered in kind, and use up tokens."""
        for _ in range(3):
            self.alice.send(session_message(eto_pb2.PAYLOAD_PING))
        self.assertEqual(self.alice.names(), ["eto.pong"] * 3)
        for _ in range(50):
            self.alice.send(session_message(eto_pb2.PAYLOAD_PING))
        # One refusal for the whole run, not one answer per ping.
        self.assertEqual(self.alice.names(), ["eto.throttle_exceeded"])
        seq = self.alice.order(BUY, 1000, 2000)
        rejected: seto_pb2.OrderRejected = one(self.alice.take(), "seto.order_rejected")
        self.assertEqual((seto_pb2.OrderRejectedReason.Name(rejected.reason), rejected.seq),
                         ("ORDER_REJECTED_THROTTLE_EXCEEDED", seq))
        # The refused pings' seqs were consumed: the session carries on, and a token brings a pong.
        self.alice.advance(0.2)
        self.alice.send(session_message(eto_pb2.PAYLOAD_PING))
        self.assertEqual(self.alice.names(), ["eto.pong"])
        self.assertFalse(self.alice.closed)

    def test_other_payloads_get_eto_throttle_exceeded(self) -> None:
        for _ in range(3):
            self.alice.send_message("market_subscribe", market_id=MARKET)
        self.alice.take()
        self.alice.send_message("market_subscribe", market_id=MARKET)
        self.assertEqual(self.alice.names(), ["eto.throttle_exceeded"])
        self.alice.send_message("order_cancel", order_id=1)
        rejected: seto_pb2.OrderCancelRejected = one(
            self.alice.take(), "seto.order_cancel_rejected"
        )
        self.assertEqual(rejected.reason, seto_pb2.ORDER_CANCEL_REJECTED_THROTTLE_EXCEEDED)
        self.alice.send_message("order_quantity_reduce", order_id=1, new_quantity=1)
        reduce_rejected: seto_pb2.OrderQuantityReduceRejected = one(
            self.alice.take(), "seto.order_quantity_reduce_rejected"
        )
        self.assertEqual(reduce_rejected.reason, seto_pb2.ORDER_QUANTITY_REDUCE_REJECTED_THROTTLE_EXCEEDED)

    def test_throttled_cancel_all_and_replace_are_rejected(self) -> None:
        """Answered with their own rejections, so that the client's request ends."""
        order_id = self.order_id(self.alice, BUY, 1000, 2000)
        for _ in range(2):
            self.alice.send_message("market_subscribe", market_id=MARKET)
        self.alice.take()
        self.alice.send_message("order_cancel_all", market_id=MARKET, reference=6)
        cancel_all: seto_pb2.OrderCancelAllRejected = one(self.alice.take(), "seto.order_cancel_all_rejected")
        self.assertEqual((cancel_all.reason, cancel_all.reference),
                         (seto_pb2.ORDER_CANCEL_ALL_REJECTED_UNKNOWN_ERROR, 6))
        self.alice.send_message("order_cancel_replace", orig_order_id=order_id, price=2100, quantity=1000,
                                reference=7, label="x")
        replace: seto_pb2.OrderCancelReplaceRejected = one(
            self.alice.take(), "seto.order_cancel_replace_rejected"
        )
        self.assertEqual(replace.reason, seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_SERVICE_TEMPORARILY_UNAVAILABLE)
        self.assertEqual((replace.orig_order_id, replace.reference, replace.label), (order_id, 7, "x"))
        self.assertEqual((replace.market_id, replace.contract_id, replace.side), (MARKET, HOME, BUY))
        self.assertEqual(self.bob.take(), [])
        self.assertEqual([o.order_id for o in self.exchange.open_orders("alice")], [order_id])

    def test_a_run_of_refusals_is_logged_when_it_starts_and_when_it_ends(self) -> None:
        """Not once a payload: a flood of 1000 refused orders was 1000 identical lines, refused pings none."""
        for _ in range(3):
            self.alice.send(session_message(eto_pb2.PAYLOAD_PING))
        with capturedLogs() as events:
            for _ in range(20):
                self.alice.send(session_message(eto_pb2.PAYLOAD_PING))
                self.alice.order(BUY, 1000, 2000)
            self.alice.advance(0.2)
            self.order_id(self.alice, BUY, 1000, 2000)
        lines = [formatEvent(event) for event in events if "throttle" in event.get("log_format", "")]
        self.assertEqual(lines, [
            "alice exceeded the throttle (5 a second, burst 3): ping refused, and every payload until tokens refill",
            "alice is within the throttle again after 40 payloads refused",
        ])

    def test_each_session_has_its_own_bucket(self) -> None:
        for _ in range(4):
            self.alice.order(BUY, 1000, 2000)
        self.alice.take()
        self.order_id(self.bob, BUY, 1000, 2000)


class AccountReplayTests(ServiceTestCase):
    def test_login_with_account_sequence_gets_later_events(self) -> None:
        self.order_id(self.alice, BUY, 10_000, 2500)  # sequences 1 (accepted) and 2 (balance)
        self.order_id(self.alice, BUY, 10_000, 2400)  # 3 and 4
        later = self.fixture.client()
        received = later.login(account_sequence=2)
        names = [handler_name(p) for p in received]
        self.assertEqual(names, ["eto.login_response", "seto.throttle_limits_changed",
                                 "seto.order_accepted", "seto.balance_changed"])
        accepted = received[2].order_accepted
        self.assertEqual((accepted.account_sequence_64, accepted.price), (3, 2400))
        # Its seq was the other session's: 0 matches no request of this one.
        self.assertEqual(accepted.seq, 0)

    def test_nothing_after_the_latest(self) -> None:
        self.order_id(self.alice, BUY, 10_000, 2500)
        later = self.fixture.client()
        received = later.login(account_sequence=self.exchange.account("alice").account_sequence)
        self.assertEqual(len(received), 2)


class IdsAcrossRunsTests(SynchronousTestCase):
    """A restarted exchange never hands out an order id or account sequence an earlier run did:
    a client that stayed up keys its orders and its replay position on them."""

    def trade(self, exchange: Exchange) -> tuple[set[int], set[int]]:
        """A fill, a cancel and a live order; the order ids and account sequences they were given."""
        happened = [
            *exchange.place_order("alice", MARKET, HOME, BUY, 10_000, 2500),
            *exchange.place_order("bob", MARKET, HOME, SELL, 10_000, 2500),
            *exchange.place_order("alice", MARKET, AWAY, BUY, 10_000, 2000),
        ]
        (live,) = exchange.open_orders("alice")
        happened += exchange.cancel_order("alice", live.order_id)
        happened += exchange.place_order("bob", MARKET, AWAY, SELL, 10_000, 4000)
        order_ids = {event.order_id for event in happened if isinstance(getattr(event, "order_id", None), int)}
        sequences = {event.account_sequence for event in happened if isinstance(event, AccountEvent)}
        self.assertEqual(len(order_ids), 4)
        return order_ids, sequences

    def exchange(self, clock: Clock, id_base: int | None = None) -> Exchange:
        settings = ExchangeSettings(any_price=True, id_base=id_base)
        return Exchange(clock, two_accounts(), markets(), settings)

    def assertAllAbove(self, earlier: tuple[set[int], set[int]], later: tuple[set[int], set[int]]) -> None:
        for before, after in zip(earlier, later, strict=True):
            self.assertGreater(min(after), max(before))

    def test_a_run_started_later_on_the_clock_numbers_above_every_earlier_id(self) -> None:
        clock = Clock()
        clock.advance(1_764_151_200.25)  # 2025-11-26 10:00:00.25 UTC
        first = self.trade(self.exchange(clock))
        clock.advance(0.001)
        second = self.trade(self.exchange(clock))
        self.assertAllAbove(first, second)
        self.assertEqual(min(second[0]), 1_764_151_200_251_001)

    def test_a_run_given_a_later_base_numbers_above_it(self) -> None:
        clock = Clock()
        first = self.trade(self.exchange(clock))
        second = self.trade(self.exchange(clock, id_base=1_000))
        self.assertAllAbove(first, second)
        self.assertEqual((min(second[0]), min(second[1])), (1_001, 1_001))

    def test_on_a_test_clock_the_ids_are_the_same_each_time(self) -> None:
        self.assertEqual(self.trade(self.exchange(Clock())), self.trade(self.exchange(Clock())))

    def test_ids_stay_within_the_schema_and_a_double_for_two_centuries(self) -> None:
        self.assertLess(id_base_at(7_258_118_400) + 2**32, 2**53)  # 2200-01-01

    def test_an_account_numbered_already_cannot_be_renumbered(self) -> None:
        accounts = two_accounts()
        self.trade(Exchange(Clock(), accounts, markets(), ExchangeSettings(any_price=True)))
        self.assertRaises(ValueError, Exchange, Clock(), accounts, markets())

    def test_a_login_from_an_earlier_runs_sequence_gets_this_whole_run(self) -> None:
        """Every event of this run, and no warning that some were lost: the earlier run's were never held."""
        fixture = ExchangeFixture(settings=ExchangeSettings(id_base=2**40))
        fixture.exchange.place_order("alice", MARKET, HOME, BUY, 10_000, 2500)
        with capturedLogs() as events:
            received = fixture.client().login(account_sequence=500)
        self.assertEqual([handler_name(p) for p in received][2:], ["seto.order_accepted", "seto.balance_changed"])
        accepted = received[2].order_accepted
        self.assertEqual((accepted.order_id, accepted.account_sequence_64), (2**40 + 1, 2**40 + 1))
        self.assertFalse(accepted.HasField("account_sequence"))  # beyond the uint32 field
        self.assertEqual([e for e in events if "oldest still held" in e.get("log_format", "")], [])


class LongReplayTests(ServiceTestCase):
    """A replay of many account events goes out a turn at a time, in account-sequence order."""

    settings = ExchangeSettings(events_per_turn=4)

    def setUp(self) -> None:
        super().setUp()
        for price in (2000, 2500, 4000, 5000, 8000):
            self.exchange.place_order("alice", MARKET, HOME, BUY, 1000, price)  # two events each
        self.alice.take()

    def sequences(self, payloads: list[Payload]) -> list[int]:
        return [p.order_accepted.account_sequence_64 for p in payloads if handler_name(p) == "seto.order_accepted"]

    def test_sent_a_turn_at_a_time_with_later_events_after(self) -> None:
        later = self.fixture.client()
        received = later.login(account_sequence=0)
        self.assertEqual([handler_name(p) for p in received[2:]], ["seto.order_accepted", "seto.balance_changed"] * 2)
        # An account event meanwhile waits its turn behind the replay.
        self.exchange.place_order("alice", MARKET, HOME, BUY, 1000, 1000)
        self.assertEqual(later.take(), [])
        later.advance(0)
        self.assertEqual(self.sequences(received + later.take()), [1, 3, 5, 7, 9, 11])

    def test_a_connection_lost_mid_replay_resumes_where_it_stopped(self) -> None:
        later = self.fixture.client()
        received = later.login(account_sequence=0)
        later.disconnect()
        self.fixture.clock.advance(0)
        resumed = self.fixture.client(later.state)
        received += resumed.login()
        resumed.advance(0)
        self.assertEqual(self.sequences(received + resumed.take()), [1, 3, 5, 7, 9])

    def test_an_event_that_cannot_be_sent_closes_the_connection_and_the_resume_sends_it(self) -> None:
        later = self.fixture.client()
        received = later.login(account_sequence=0)  # events 1-4: the first turn
        event_payload = messages.event_payload

        def broken(event: Any) -> Payload:
            if event.account_sequence == 7:
                raise RuntimeError("a bug writing event 7")
            return event_payload(event)

        self.patch(messages, "event_payload", broken)
        later.advance(0)  # nothing escapes the reactor's callback
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(later.closed)
        received += later.take()
        later.disconnect()
        self.fixture.clock.advance(0)
        self.patch(messages, "event_payload", event_payload)
        resumed = self.fixture.client(later.state)
        received += resumed.login()
        resumed.advance(0)
        self.assertEqual(self.sequences(received + resumed.take()), [1, 3, 5, 7, 9])


class PythonApiTests(ServiceTestCase):
    def test_place_order_from_outside_a_session(self) -> None:
        events = self.exchange.place_order("bob", MARKET, HOME, BUY, 10_000, 2500, reference=1)
        self.assertEqual(type(events[0]).__name__, "OrderAccepted")
        accepted: seto_pb2.OrderAccepted = one(self.bob.take(), "seto.order_accepted")
        self.assertEqual(accepted.seq, 0)
        self.exchange.cancel_order("bob", accepted.order_id)
        one(self.bob.take(), "seto.order_cancelled")
        self.assertRaises(KeyError, self.exchange.account, "nobody")

    def test_void(self) -> None:
        self.order_id(self.alice, SELL, 10_000, 4000)
        self.bob.order(BUY, 10_000, 4000)
        self.alice.take()
        self.exchange.void(MARKET)
        voided = named(self.alice.take(), "seto.order_execute_voided")
        self.assertEqual(len(voided), 1)
        self.assertEqual(self.exchange.account("alice").balance, 10_000_000)
