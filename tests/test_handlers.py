"""Handlers in the reference client's shape (opt-in), listeners, and the new request options."""

from __future__ import annotations

from typing import Any

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import handlers
from smarkets_twisted.handlers import ClientListener, Frame, HandlerRegistry, notify
from smarkets_twisted.payloads import Payload
from smarkets_twisted.proto import seto_pb2
from tests.exchange_helpers import HOME, MARKET
from tests.trading_helpers import TradingTestCase

BUY = seto_pb2.SIDE_BUY
SELL = seto_pb2.SIDE_SELL


class ReferenceShapeTests(TradingTestCase):
    def test_a_reference_client_handler_gets_the_whole_payload(self) -> None:
        """Code written for smk-python-sdk reads message.order_accepted.order_id and eto_payload."""
        seen: list[tuple[int, int, bool]] = []

        def order_accepted(message: Any) -> None:
            seen.append((message.order_accepted.order_id, message.eto_payload.seq, message.eto_payload.is_replay))

        self.alice.add_handler("seto.order_accepted", order_accepted, whole_payload=True)
        accepted = self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000))
        self.assertEqual(len(seen), 1)
        self.assertEqual(seen[0][0], accepted.order_id)
        self.assertFalse(seen[0][2])
        self.assertGreater(seen[0][1], 1)

    def test_a_reference_client_global_handler_gets_a_frame(self) -> None:
        frames: list[tuple[str, Frame]] = []
        bodies: list[tuple[str, Any]] = []
        self.alice.add_global_handler(lambda name, message: frames.append((name, message)), whole_payload=True)
        self.alice.add_global_handler(lambda name, message: bodies.append((name, message)))
        accepted = self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000))
        names = [name for name, _ in frames]
        self.assertIn("seto.order_accepted", names)
        self.assertEqual(names, [name for name, _ in bodies])
        name, frame = frames[names.index("seto.order_accepted")]
        self.assertEqual(Payload.FromString(frame.bytes), frame.protobuf)
        self.assertEqual(frame.protobuf.order_accepted.order_id, accepted.order_id)
        self.assertEqual(bodies[names.index("seto.order_accepted")][1].order_id, accepted.order_id)

    def test_handlers_are_removed_whatever_their_shape(self) -> None:
        calls: list[Any] = []
        self.alice.add_handler("seto.order_accepted", calls.append, whole_payload=True)
        self.alice.del_handler("seto.order_accepted", calls.append)
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000))
        self.assertEqual(calls, [])


class Listener(ClientListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def logged_in(self, resumed: bool) -> None:
        self.events.append(("logged_in", resumed))

    def connection_lost(self, reason: Exception) -> None:
        self.events.append(("connection_lost", type(reason).__name__))

    def session_ended(self, reason: Exception) -> None:
        self.events.append(("session_ended", type(reason).__name__))


class ListenerTests(TradingTestCase):
    def test_logins_drops_and_the_end(self) -> None:
        listener = Listener()
        self.alice.add_listener(listener)
        self.alice_connection.drop()
        self.market.connect(self.alice)
        self.market.flush()
        self.settle(self.alice.logout())
        self.assertEqual(listener.events, [
            ("connection_lost", "SocketDisconnected"), ("logged_in", True),
            ("session_ended", "SessionLost"), ("connection_lost", "LoggedOut"),
        ])


class RequestOptionTests(TradingTestCase):
    def test_maq_and_the_callers_references(self) -> None:
        sent: list[Any] = []
        original = self.alice_connection.client.send_payload  # type: ignore[attr-defined]

        def spy(payload: Payload) -> int:
            sent.append(payload)
            return original(payload)  # type: ignore[no-any-return]

        self.alice_connection.client.send_payload = spy  # type: ignore[attr-defined]
        accepted = self.settle(self.alice.order(MARKET, HOME, SELL, 10_000, 4000, maq=5_000, reference=3))
        self.assertEqual((sent[0].order_create.maq, accepted.reference), (5_000, 3))
        self.assertEqual(self.settle(self.alice.reduce(accepted.order_id, 5_000, reference=4)).reference, 4)
        replaced = self.settle(self.alice.replace(accepted.order_id, 4100, 5_000, reference=5, label="x"))
        self.assertEqual((sent[2].order_cancel_replace.label, replaced.reference, replaced.label), ("x", 5, "x"))
        self.assertEqual(self.settle(self.alice.cancel(replaced.order_id, reference=6)).reference, 6)

    def test_a_callers_reference_answers_only_its_own_request(self) -> None:
        """A reference used for an order and a cancel alike (a strategy's tag): another order's
        cancellation, which echoes the order's reference, does not answer the cancel."""
        tagged = self.settle(self.alice.order(MARKET, HOME, SELL, 10_000, 4000, reference=7))
        other = self.settle(self.alice.order(MARKET, HOME, SELL, 10_000, 4100))
        cancel = self.alice.cancel(other.order_id, reference=7)
        pump = self.alice_connection.pump
        held = pump.clientIO.getOutBuffer()  # the cancel, not yet at the exchange
        self.exchange.cancel_order("alice", tagged.order_id)  # the exchange cancels the tagged order itself
        self.market.flush()
        self.assertNoResult(cancel)
        pump.serverIO.bufferReceived(held)
        self.assertEqual(self.settle(cancel).order_id, other.order_id)


class _Quoter:
    def book_changed(self, book: object) -> None:
        raise ValueError("a bug in the strategy")


class FailingCallbackTests(SynchronousTestCase):
    """A callback that raises on every message must not put a traceback in the log for each."""

    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.patch(handlers, "failures", handlers.CallbackFailures())  # counts are per process: start afresh

    def test_a_hook_raising_every_time_logs_its_traceback_once_then_counts(self) -> None:
        for _ in range(120):
            notify([_Quoter()], "book_changed", None)
        lines = [formatEvent(event) for event in self.events]
        self.assertEqual(
            lines,
            [
                "_Quoter.book_changed raised (book_changed hook)",
                "_Quoter.book_changed has raised 10 times (book_changed hook); the first time's traceback is above",
                "_Quoter.book_changed has raised 100 times (book_changed hook); the first time's traceback is above",
            ],
        )
        self.assertIsInstance(self.events[0]["log_failure"].value, ValueError)
        self.flushLoggedErrors(ValueError)

    def test_a_handler_is_named_not_shown_as_a_repr(self) -> None:
        registry = HandlerRegistry()
        registry.add_handler("seto.order_accepted", _Quoter().book_changed)
        registry.dispatch("seto.order_accepted", None, None)
        self.assertEqual(formatEvent(self.events[0]), "_Quoter.book_changed raised (seto.order_accepted handler)")
        self.flushLoggedErrors(ValueError)
