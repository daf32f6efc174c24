"""factory.orders: one Order per order_create, moved by answers and account events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import errors
from smarkets_twisted.exchange.accounts import default_accounts
from smarkets_twisted.exchange.liquidity import with_liquidity_account
from smarkets_twisted.handlers import HandlerRegistry
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.testing import InMemoryExchange
from smarkets_twisted.trading.orders import Order, OrderListener, Orders, OrderState
from tests.exchange_helpers import AWAY, HALTABLE, HOME, MARKET, OVER
from tests.trading_helpers import TradingTestCase

BUY = seto_pb2.SIDE_BUY
SELL = seto_pb2.SIDE_SELL


class Recorder(OrderListener):
    def __init__(self) -> None:
        self.fills: list[tuple[int | None, int, int]] = []
        self.changes: list[tuple[int | None, OrderState]] = []

    def order_changed(self, order: Order) -> None:
        self.changes.append((order.order_id, order.state))

    def order_filled(self, order: Order, price: int, quantity: int) -> None:
        self.fills.append((order.order_id, price, quantity))


class OrderLifeTests(TradingTestCase):
    def test_placed_accepted_filled(self) -> None:
        recorder = Recorder()
        self.alice.orders.add_listener(recorder)
        placed = self.alice.order(MARKET, HOME, SELL, 30_000, 4000, label="mm")
        (order,) = self.alice.orders.open()
        self.assertEqual((order.state, order.order_id, order.remaining_quantity), (OrderState.PENDING, None, 30_000))
        accepted = self.settle(placed)
        self.assertIs(self.alice.orders.get(accepted.order_id), order)
        self.assertIs(self.alice.orders.by_reference(accepted.reference), order)
        self.assertEqual((order.state, order.label, order.side), (OrderState.LIVE, "mm", SELL))
        self.settle(self.bob.order(MARKET, HOME, BUY, 10_000, 4500))
        self.assertEqual((order.executed_quantity, order.remaining_quantity), (10_000, 20_000))
        self.assertEqual(order.average_price, Decimal(4000))
        self.assertOrdersMatchExchange(self.alice, "alice")
        self.assertOrdersMatchExchange(self.bob, "bob")
        self.settle(self.bob.order(MARKET, HOME, BUY, 20_000, 4000))
        self.assertEqual((order.state, order.remaining_quantity, order.executed_quantity),
                         (OrderState.FILLED, 0, 30_000))
        self.assertEqual(self.alice.orders.open(), [])
        self.assertEqual(recorder.fills, [(order.order_id, 4000, 10_000), (order.order_id, 4000, 20_000)])
        self.assertEqual([state for _, state in recorder.changes],
                         [OrderState.LIVE, OrderState.LIVE, OrderState.FILLED])
        self.assertEqual([event.name for event in order.history],
                         ["accepted", "executed 10000 at 4000", "executed 20000 at 4000"])

    def test_average_price_over_several_fills(self) -> None:
        for price in (4000, 4100):
            self.settle(self.bob.order(MARKET, HOME, SELL, 10_000, price))
        accepted = self.settle(self.alice.order(MARKET, HOME, BUY, 30_000, 4100))
        order = self.alice.orders.get(accepted.order_id)
        assert order is not None
        self.assertEqual(order.average_price, Decimal(4050))
        self.assertEqual((order.executed_quantity, order.remaining_quantity), (20_000, 10_000))
        self.assertOrdersMatchExchange(self.alice, "alice")

    def test_reduce_replace_cancel(self) -> None:
        accepted = self.settle(self.alice.order(MARKET, HOME, SELL, 30_000, 4000, label="a"))
        order = self.alice.orders.get(accepted.order_id)
        assert order is not None
        self.settle(self.alice.reduce(accepted.order_id, 15_000, reference=77))
        self.assertEqual((order.state, order.remaining_quantity), (OrderState.LIVE, 15_000))
        replaced = self.settle(self.alice.replace(accepted.order_id, 4100, 12_000, label="b", reference=78))
        self.assertEqual((replaced.reference, replaced.label), (78, "b"))
        self.assertEqual((order.state, order.remaining_quantity, order.replaced_by),
                         (OrderState.REPLACED, 0, replaced.order_id))
        new = self.alice.orders.get(replaced.order_id)
        assert new is not None
        self.assertEqual((new.state, new.price, new.remaining_quantity, new.label, new.replaces),
                         (OrderState.LIVE, 4100, 12_000, "b", order.order_id))
        self.assertOrdersMatchExchange(self.alice, "alice")
        cancelled = self.settle(self.alice.cancel(new.order_id, reference=79))
        self.assertEqual(cancelled.reference, 79)
        self.assertEqual((new.state, new.remaining_quantity, new.reason_name),
                         (OrderState.CANCELLED, 0, "ORDER_CANCELLED_MEMBER_REQUESTED"))
        self.assertEqual(self.alice.orders.open(), [])

    def test_a_refused_replace_leaves_the_original_live(self) -> None:
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 3000))
        accepted = self.settle(self.alice.order(MARKET, HOME, SELL, 10_000, 4000))
        refused = self.alice.replace(accepted.order_id, 3000, 10_000)  # would cross alice's own bid
        self.market.flush()
        self.failureResultOf(refused, errors.ReplaceRejected)
        order = self.alice.orders.get(accepted.order_id)
        assert order is not None
        self.assertEqual((order.state, order.replace_pending, order.remaining_quantity),
                         (OrderState.LIVE, False, 10_000))
        rejected = [o for o in self.alice.orders if o.replaces == accepted.order_id]
        self.assertEqual([o.state for o in rejected], [OrderState.REJECTED])
        self.assertOrdersMatchExchange(self.alice, "alice")

    def test_refusals_close_the_order(self) -> None:
        for market_id, quantity, error, state in ((999, 10_000, errors.OrderRejected, OrderState.REJECTED),
                                                  (MARKET, 0, errors.OrderInvalid, OrderState.INVALID)):
            placed = self.alice.order(market_id, HOME, BUY, quantity, 5000)
            self.market.flush()
            self.failureResultOf(placed, error)
            order = list(self.alice.orders)[-1]
            self.assertEqual((order.state, order.remaining_quantity, order.order_id), (state, 0, None))
        self.assertEqual(list(self.alice.orders)[0].reason_name, "ORDER_REJECTED_MARKET_NOT_FOUND")

    def test_immediate_or_cancel_rest_is_cancelled(self) -> None:
        self.settle(self.alice.order(MARKET, HOME, SELL, 10_000, 4000))
        accepted = self.settle(self.bob.order(MARKET, HOME, BUY, 30_000, 4000, tif=seto_pb2.IMMEDIATE_OR_CANCEL))
        order = self.bob.orders.get(accepted.order_id)
        assert order is not None
        self.assertEqual((order.state, order.executed_quantity, order.remaining_quantity),
                         (OrderState.CANCELLED, 10_000, 0))
        self.assertEqual(order.reason_name, "ORDER_CANCELLED_INSUFFICIENT_LIQUIDITY")

    def test_refused_cancel_and_reduce_are_in_the_history(self) -> None:
        accepted = self.settle(self.alice.order(MARKET, HOME, SELL, 10_000, 4000))
        self.settle(self.bob.order(MARKET, HOME, BUY, 10_000, 4000))
        order = self.alice.orders.get(accepted.order_id)
        assert order is not None
        cancel = self.refused(self.alice.cancel(accepted.order_id), errors.CancelRejected)
        reduce = self.refused(self.alice.reduce(accepted.order_id, 5_000), errors.ReduceRejected)
        self.assertEqual([event.name for event in order.history[-2:]],
                         [f"cancel rejected: {cancel.reason_name}", f"reduce to 5000 rejected: {reduce.reason_name}"])
        self.assertEqual((order.state, order.executed_quantity), (OrderState.FILLED, 10_000))

    def test_queries_by_market_and_contract(self) -> None:
        for market_id, contract_id in ((MARKET, HOME), (MARKET, AWAY), (HALTABLE, OVER)):
            self.settle(self.alice.order(market_id, contract_id, BUY, 10_000, 1000))
        self.assertEqual(len(self.alice.orders.open(MARKET)), 2)
        self.assertEqual([o.contract_id for o in self.alice.orders.open(contract_id=AWAY)], [AWAY])
        self.assertEqual(len(self.alice.orders), 3)

    def test_orders_of_another_session_are_adopted_at_their_first_fill(self) -> None:
        other, _ = self.client("alice")
        accepted = self.settle(other.order(MARKET, HOME, SELL, 30_000, 4000))
        self.assertIsNone(self.alice.orders.get(accepted.order_id))  # answers go to the requester only
        self.settle(self.bob.order(MARKET, HOME, BUY, 10_000, 4000))
        order = self.alice.orders.get(accepted.order_id)
        assert order is not None
        self.assertEqual((order.state, order.price, order.quantity, order.executed_quantity, order.remaining_quantity),
                         (OrderState.LIVE, 4000, 30_000, 10_000, 20_000))
        self.assertOrdersMatchExchange(self.alice, "alice")
        self.assertOrdersMatchExchange(other, "alice")

    def test_a_replace_too_late_is_history_not_a_misfit(self) -> None:
        recorder = Recorder()
        self.alice.orders.add_listener(recorder)
        accepted = self.settle(self.alice.order(MARKET, HOME, SELL, 10_000, 4000))
        replaced = self.alice.replace(accepted.order_id, 4100, 10_000)
        held = self.alice_connection.pump.clientIO.getOutBuffer()
        self.settle(self.bob.order(MARKET, HOME, BUY, 10_000, 4000))  # fills it before the replace arrives
        self.alice_connection.pump.serverIO.bufferReceived(held)
        self.market.flush()
        self.failureResultOf(replaced, errors.ReplaceRejected)
        order = self.alice.orders.get(accepted.order_id)
        assert order is not None
        self.assertEqual((order.state, order.replace_pending), (OrderState.FILLED, False))
        self.assertEqual(order.history[-1].name, "replace rejected: ORDER_CANCEL_REPLACE_REJECTED_TOO_LATE")
        self.assertEqual([state for order_id, state in recorder.changes if order_id == order.order_id],
                         [OrderState.LIVE, OrderState.FILLED])
        self.assertEqual(self.flushLoggedErrors(), [])


class DropsAndSessionsTests(TradingTestCase):
    def test_answer_lost_in_a_drop_arrives_on_resume(self) -> None:
        placed = self.alice.order(MARKET, HOME, SELL, 20_000, 4000)
        pump = self.alice_connection.pump
        pump.serverIO.bufferReceived(pump.clientIO.getOutBuffer())
        pump.serverIO.getOutBuffer()  # the exchange's answer is lost
        self.alice_connection.drop()
        (order,) = self.alice.orders.open()
        self.assertEqual(order.state, OrderState.PENDING)
        self.settle(self.bob.order(MARKET, HOME, BUY, 5_000, 4000))
        self.market.connect(self.alice)
        self.settle(placed)
        self.assertEqual(order.state, OrderState.LIVE)
        self.assertOrdersMatchExchange(self.alice, "alice")

    def test_fate_unknown_until_the_account_replay_settles_it(self) -> None:
        """The order reaches the exchange, its answer dies with the connection, the session is
        given up: UNKNOWN; the next session's account replay brings the acceptance and a fill."""
        earlier = self.alice.orders.get(self.settle(self.alice.order(HALTABLE, OVER, BUY, 1000, 1000)).order_id)
        assert earlier is not None  # and an account sequence to ask from
        old_session = self.alice.state.session_id
        placed = self.alice.order(MARKET, HOME, SELL, 20_000, 4000)
        pump = self.alice_connection.pump
        pump.serverIO.bufferReceived(pump.clientIO.getOutBuffer())
        pump.serverIO.getOutBuffer()
        self.alice_connection.drop()  # the exchange has the order; its answer is lost
        self.assertEqual(len(self.exchange.open_orders("alice", MARKET)), 1)
        self.alice.stop()  # as when the exchange cannot resume the session
        self.assertTrue(self.failureResultOf(placed, errors.SessionLost).value.sent)
        order = self.alice.orders.open()[-1]
        self.assertEqual((order.state, order.order_id), (OrderState.UNKNOWN, None))
        self.settle(self.bob.order(MARKET, HOME, BUY, 5_000, 4000))
        self.assertEqual(order.state, OrderState.UNKNOWN)
        self.market.connect(self.alice)  # a new session, from the last account sequence seen
        self.market.flush()
        self.assertNotIn(self.alice.state.session_id, (None, old_session))
        self.assertEqual((order.state, order.executed_quantity, order.remaining_quantity),
                         (OrderState.LIVE, 5_000, 15_000))
        # Live when the session ended, and not heard of since: the exchange may have cancelled it.
        self.assertEqual(earlier.state, OrderState.UNKNOWN)
        self.assertOrdersMatchExchange(self.alice, "alice")

    def test_sent_unknown_queued_not_sent(self) -> None:
        written = self.alice.order(MARKET, HOME, SELL, 20_000, 4000)
        self.alice_connection.pump.clientIO.getOutBuffer()  # written, never delivered
        self.alice_connection.drop()
        queued = self.alice.order(MARKET, HOME, SELL, 10_000, 4000)  # waits for the resume
        sent, not_sent = self.alice.orders.open()
        self.alice.stop()
        self.assertTrue(self.failureResultOf(written, errors.SessionLost).value.sent)
        self.assertFalse(self.failureResultOf(queued, errors.SessionLost).value.sent)
        self.assertEqual((sent.state, not_sent.state), (OrderState.UNKNOWN, OrderState.NOT_SENT))
        self.assertEqual(self.alice.orders.open(), [sent])
        self.failureResultOf(self.alice.order(MARKET, HOME, SELL, 20_000, 4000), errors.NotLoggedIn)
        self.assertEqual(len(self.alice.orders), 2)

    def test_cancelled_before_it_was_sent_is_not_sent(self) -> None:
        """A Deferred cancelled while its order waits for the resume: the order never goes out."""
        self.alice_connection.drop()
        queued = self.alice.order(MARKET, HOME, SELL, 10_000, 4000)
        queued.cancel()
        self.assertFalse(self.failureResultOf(queued, CancelledError).value.sent)
        (order,) = self.alice.orders
        self.assertEqual((order.state, order.remaining_quantity), (OrderState.NOT_SENT, 0))
        self.market.connect(self.alice)
        self.market.flush()
        self.assertEqual(self.exchange.open_orders("alice"), [])
        self.assertEqual(self.alice.orders.open(), [])

    def test_cancelled_after_it_was_sent_is_unknown_until_its_answer(self) -> None:
        placed = self.alice.order(MARKET, HOME, SELL, 10_000, 4000)
        placed.cancel()
        self.assertTrue(self.failureResultOf(placed, CancelledError).value.sent)
        (order,) = self.alice.orders
        self.assertEqual(order.state, OrderState.UNKNOWN)
        self.market.flush()
        self.assertEqual(order.state, OrderState.LIVE)
        self.assertOrdersMatchExchange(self.alice, "alice")

    def test_timed_out_in_the_queue_is_not_sent(self) -> None:
        self.alice_connection.drop()
        queued = self.alice.order(MARKET, HOME, SELL, 10_000, 4000, timeout=1)
        self.market.advance(1)
        self.assertFalse(self.failureResultOf(queued, errors.RequestTimeout).value.sent)
        (order,) = self.alice.orders
        self.assertEqual((order.state, order.remaining_quantity), (OrderState.NOT_SENT, 0))
        self.assertEqual(self.alice.orders.open(), [])

    def test_timed_out_after_it_was_sent_is_unknown_until_its_answer(self) -> None:
        placed = self.alice.order(MARKET, HOME, SELL, 10_000, 4000, timeout=1)
        pump = self.alice_connection.pump
        held = pump.clientIO.getOutBuffer()
        self.market.advance(1)
        self.assertTrue(self.failureResultOf(placed, errors.RequestTimeout).value.sent)
        (order,) = self.alice.orders
        self.assertEqual(order.state, OrderState.UNKNOWN)
        pump.serverIO.bufferReceived(held)
        self.market.flush()
        self.assertEqual(order.state, OrderState.LIVE)
        self.assertOrdersMatchExchange(self.alice, "alice")

    def test_restart_from_a_saved_account_sequence(self) -> None:
        """An application restarted with ClientSettings.account_sequence gets the fills it missed, once."""
        accepted = self.settle(self.alice.order(MARKET, HOME, SELL, 20_000, 4000))
        saved = self.alice.account_sequence
        self.settle(self.alice.logout())
        self.settle(self.bob.order(MARKET, HOME, BUY, 5_000, 4000))
        restarted, _ = self.client("alice", account_sequence=saved)
        self.assertEqual(restarted.account_sequence, restarted.orders.account_sequence)
        order = restarted.orders.get(accepted.order_id)
        assert order is not None
        self.assertEqual((order.state, order.executed_quantity, order.remaining_quantity),
                         (OrderState.LIVE, 5_000, 15_000))
        self.assertOrdersMatchExchange(restarted, "alice")


def _message(name: str, **fields: Any) -> Any:
    message = getattr(seto_pb2, name)()
    for key, value in fields.items():
        setattr(message, key, value)
    return message


class ReplayedEventTests(SynchronousTestCase):
    """Account events are applied once, in order; a misfit is logged, not applied."""

    def setUp(self) -> None:
        self.handlers = HandlerRegistry()
        self.orders = Orders(self.handlers, max_closed=2)
        self.order = self.orders.placed(Order(MARKET, HOME, BUY, 4000, 30_000, reference=5), Deferred())
        self.deliver("seto.order_accepted", "OrderAccepted", seq=1, order_id=9, reference=5, account_sequence_64=10)

    def deliver(self, name: str, kind: str, **fields: Any) -> None:
        message = _message(kind, **fields)
        self.handlers.dispatch(name, None, message)

    def fill(self, sequence: int, quantity: int) -> None:
        self.deliver("seto.order_executed", "OrderExecuted", price=4000, quantity=quantity, order_id=9, side=BUY,
                     market_id=MARKET, contract_id=HOME, account_sequence_64=sequence)

    def test_a_replayed_fill_is_not_counted_twice(self) -> None:
        self.fill(11, 10_000)
        self.fill(11, 10_000)
        self.fill(10, 10_000)
        self.assertEqual((self.order.executed_quantity, self.order.remaining_quantity), (10_000, 20_000))
        self.fill(12, 10_000)
        self.assertEqual(self.order.executed_quantity, 20_000)

    def test_a_pending_fill_stands_once_confirmed(self) -> None:
        """order_executed with a pending_timeout (in play): counted, and unconfirmed until order_execute_confirmed."""
        self.deliver("seto.order_executed", "OrderExecuted", price=4000, quantity=10_000, order_id=9, side=BUY,
                     market_id=MARKET, contract_id=HOME, pending_timeout=5_000, account_sequence_64=11)
        self.assertEqual((self.order.executed_quantity, self.order.unconfirmed_quantity), (10_000, 10_000))
        self.deliver("seto.order_execute_confirmed", "OrderExecuteConfirmed", price=4000, quantity=10_000,
                     order_id=9, account_sequence_64=12)
        self.assertEqual((self.order.executed_quantity, self.order.unconfirmed_quantity), (10_000, 0))
        self.assertEqual([event.name for event in self.order.history[1:]],
                         ["executed 10000 at 4000, pending confirmation", "execution of 10000 at 4000 confirmed"])

    def test_a_pending_fill_voided_is_taken_back(self) -> None:
        self.deliver("seto.order_executed", "OrderExecuted", price=4000, quantity=10_000, order_id=9, side=BUY,
                     market_id=MARKET, contract_id=HOME, pending_timeout=5_000, account_sequence_64=11)
        self.deliver("seto.order_execute_voided", "OrderExecutedVoid", price=4000, quantity=10_000, order_id=9,
                     account_sequence_64=12)
        self.assertEqual((self.order.executed_quantity, self.order.unconfirmed_quantity, self.order.fills),
                         (0, 0, {}))
        self.assertEqual(self.order.state, OrderState.LIVE)

    def test_a_filled_orders_fills_partly_voided_leave_it_filled(self) -> None:
        self.fill(11, 30_000)
        self.deliver("seto.order_voided", "OrderVoided", order_id=9, quantity=10_000, source_quantity=30_000,
                     executed_quantity=20_000, account_sequence_64=12)
        self.assertEqual((self.order.state, self.order.executed_quantity, self.order.fills),
                         (OrderState.FILLED, 20_000, {4000: 20_000}))
        self.assertEqual(self.orders.open(), [])

    def test_an_order_first_heard_of_at_a_partial_void_is_adopted_with_its_rest_open(self) -> None:
        """Its fills before the void are unknown: none executed unless the void says so, which keeps more open."""
        self.deliver("seto.order_voided", "OrderVoided", order_id=20, quantity=10_000, source_quantity=50_000,
                     executed_quantity=15_000, market_id=MARKET, contract_id=HOME, side=BUY, orig_price=3000,
                     account_sequence_64=11)
        order = self.orders.get(20)
        assert order is not None
        self.assertEqual((order.state, order.adopted, order.executed_quantity, order.remaining_quantity),
                         (OrderState.LIVE, True, 15_000, 25_000))
        # A void of what it executed before it was adopted: taken off the executed quantity.
        self.deliver("seto.order_voided", "OrderVoided", order_id=20, quantity=5_000, source_quantity=40_000,
                     executed_quantity=10_000, account_sequence_64=12)
        self.assertEqual((order.executed_quantity, order.remaining_quantity), (10_000, 25_000))

    def test_an_event_that_does_not_fit_is_not_applied(self) -> None:
        self.deliver("seto.order_cancelled", "OrderCancelled", reason=1, order_id=9, account_sequence_64=11)
        self.fill(12, 10_000)
        self.assertEqual((self.order.state, self.order.executed_quantity), (OrderState.CANCELLED, 0))
        self.flushLoggedErrors()

    def test_a_fill_heard_after_a_refusal_closed_the_order_as_gone_is_applied(self) -> None:
        """The refusal can overtake the fill that made it too late (another session, another pipeline):
        the fill still stands, and its listeners (positions) hear of it."""
        recorder = Recorder()
        self.orders.add_listener(recorder)
        self.deliver("seto.order_cancel_rejected", "OrderCancelRejected", order_id=9, account_sequence_64=11,
                     reason=seto_pb2.ORDER_CANCEL_REJECTED_TOO_LATE)
        self.assertEqual(self.order.state, OrderState.GONE)
        self.deliver("seto.order_executed", "OrderExecuted", price=4000, quantity=30_000, order_id=9, side=BUY,
                     market_id=MARKET, contract_id=HOME, total_executed_quantity=30_000, available_quantity=0,
                     account_sequence_64=12)
        self.assertEqual((self.order.state, self.order.executed_quantity, self.order.remaining_quantity),
                         (OrderState.FILLED, 30_000, 0))
        self.assertEqual(recorder.fills, [(9, 4000, 30_000)])

    def test_a_refusal_that_says_nothing_of_the_order_leaves_its_fate_unknown(self) -> None:
        """A throttled cancel was never looked up: the order (live when the session ended) may be gone."""
        self.orders.session_ended(errors.SessionLost("dropped"))
        self.deliver("seto.order_cancel_rejected", "OrderCancelRejected", order_id=9, account_sequence_64=11,
                     reason=seto_pb2.ORDER_CANCEL_REJECTED_THROTTLE_EXCEEDED)
        self.deliver("seto.order_quantity_reduce_rejected", "OrderQuantityReduceRejected", order_id=9,
                     new_quantity=1, account_sequence_64=12,
                     reason=seto_pb2.ORDER_QUANTITY_REDUCE_REJECTED_THROTTLE_EXCEEDED)
        self.assertEqual(self.order.state, OrderState.UNKNOWN)
        self.fill(13, 10_000)  # a fill does say it outlived the session
        self.assertEqual((self.order.state, self.order.remaining_quantity), (OrderState.LIVE, 20_000))

    def test_closed_orders_are_bounded(self) -> None:
        for number in range(5):
            self.orders.placed(Order(MARKET, HOME, BUY, 4000, 1, reference=100 + number), Deferred())
            self.deliver("seto.order_rejected", "OrderRejected", seq=2 + number, reason=1, reference=100 + number)
        self.assertEqual(len(self.orders), 3)  # the live one and the two newest closed
        self.assertIsNone(self.orders.by_reference(100))
        self.assertIsNotNone(self.orders.by_reference(104))

    def test_a_refusal_without_a_reference_still_closes_the_order(self) -> None:
        """The request layer matches it by seq; the order follows its Deferred, as for an acceptance."""
        placed: Deferred[Any] = Deferred()
        order = self.orders.placed(Order(MARKET, HOME, BUY, 4000, 1, reference=6), placed)
        refusal = _message("OrderRejected", seq=2, reason=seto_pb2.ORDER_REJECTED_INSUFFICIENT_FUNDS,
                           account_sequence_64=11)
        self.handlers.dispatch("seto.order_rejected", None, refusal)
        placed.errback(errors.OrderRejected(refusal.reason, "ORDER_REJECTED_INSUFFICIENT_FUNDS", refusal))
        self.failureResultOf(placed, errors.OrderRejected)
        self.assertEqual((order.state, order.remaining_quantity, order.reason_name),
                         (OrderState.REJECTED, 0, "ORDER_REJECTED_INSUFFICIENT_FUNDS"))

    def test_a_request_failed_for_another_cause_is_not_left_pending(self) -> None:
        placed: Deferred[Any] = Deferred()
        order = self.orders.placed(Order(MARKET, HOME, BUY, 4000, 1, reference=6), placed)
        placed.errback(errors.SequenceError("the outgoing seq ran out"))
        self.failureResultOf(placed, errors.SequenceError)
        self.assertEqual(order.state, OrderState.UNKNOWN)  # nothing says it did not go out

    def test_orders_sharing_a_reference_are_answered_oldest_first(self) -> None:
        """A caller may reuse a reference: each answer that echoes it takes the oldest order still waiting."""
        first, second, third = (Order(MARKET, HOME, BUY, 4000, 1, reference=7) for _ in range(3))
        placed = [Deferred[Any]() for _ in range(3)]
        for order, deferred in zip((first, second, third), placed, strict=True):
            self.orders.placed(order, deferred)
        placed[0].errback(errors.RequestCancelled(sent=False))
        self.failureResultOf(placed[0], errors.RequestCancelled)
        self.deliver("seto.order_accepted", "OrderAccepted", seq=3, order_id=21, reference=7, account_sequence_64=11)
        self.deliver("seto.order_accepted", "OrderAccepted", seq=4, order_id=22, reference=7, account_sequence_64=12)
        self.assertEqual([(o.state, o.order_id) for o in (first, second, third)],
                         [(OrderState.NOT_SENT, None), (OrderState.LIVE, 21), (OrderState.LIVE, 22)])

    def test_an_acceptance_without_a_reference_makes_one_order(self) -> None:
        """Matched through its Deferred, not taken for another session's order as well."""
        placed: Deferred[Any] = Deferred()
        order = self.orders.placed(Order(MARKET, HOME, BUY, 4000, 10_000, reference=6), placed)
        accepted = _message("OrderAccepted", seq=2, order_id=12, account_sequence_64=11)
        self.handlers.dispatch("seto.order_accepted", None, accepted)
        placed.callback(accepted)
        self.assertIs(self.orders.get(12), order)
        self.assertEqual(self.orders.open(), [self.order, order])
        self.assertEqual(order.state, OrderState.LIVE)


class RestartedExchangeTests(SynchronousTestCase):
    """A fresh exchange on the same address: it knows neither the session nor the account's numbering."""

    def test_renumbered_events_are_applied_though_a_resume_came_before_the_first(self) -> None:
        """The new session saw no account event before its connection dropped and was resumed: the first
        one, numbered afresh, still shows the restart, and the fills after it are not skipped as seen."""
        first = InMemoryExchange(accounts=with_liquidity_account(default_accounts()))
        factory, connection = first.client()
        first.flush()
        for price in (1000, 1000, 1000):
            self.successResultOf(_settled(first, factory.order(MARKET, HOME, BUY, 10_000, price)))
        seen = factory.account_sequence
        assert seen is not None and seen >= 3
        connection.drop()
        restarted = InMemoryExchange(first.clock, accounts=with_liquidity_account(default_accounts()))
        restarted.connect(factory)  # the resume is refused: the next login starts a new session
        restarted.flush()
        restarted.connect(factory)  # from the account sequence seen, which it has not reached
        restarted.flush()
        self.assertIsNotNone(factory.current)
        restarted.connections[-1].drop()
        restarted.connect(factory)  # and resumed, before any account event
        restarted.flush()
        self.assertIsNotNone(factory.current)
        accepted = self.successResultOf(_settled(restarted, factory.order(MARKET, HOME, BUY, 30_000, 4000)))
        self.assertLessEqual(accepted.account_sequence_64, seen)
        for _ in range(2):
            restarted.exchange.place_order("liquidity", MARKET, HOME, SELL, 10_000, 4000)
        restarted.flush()
        order = factory.orders.get(accepted.order_id)
        assert order is not None
        self.assertEqual((order.state, order.executed_quantity, order.remaining_quantity),
                         (OrderState.LIVE, 20_000, 10_000))
        self.assertEqual(factory.positions.contract(MARKET, HOME).net, 20_000)  # type: ignore[union-attr]


def _settled(market: InMemoryExchange, deferred: Deferred[Any]) -> Deferred[Any]:
    market.flush()
    return deferred
