"""SmarketsClientProtocol and SmarketsClientFactory against a scripted exchange."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import errors
from smarkets_twisted.framing import encode_uleb128
from smarkets_twisted.payloads import application_message, handler_name, session_message
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.settings import ClientSettings
from tests.scripted import SESSION_ID, ScriptedExchange, logout_reason, make_factory

BUY, SELL = seto_pb2.SIDE_BUY, seto_pb2.SIDE_SELL
PASSWORD = "hunter2-secret"


def result_of(deferred: Deferred[Any]) -> list[Any]:
    """Collect a Deferred's outcome (value or Failure) in a list."""
    out: list[Any] = []
    deferred.addBoth(out.append)
    return out


class ClientTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = make_factory(self.clock)
        self.exchange = ScriptedExchange(self.clock)
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def connect_and_login(self, throttle: tuple[int, int, int] = (500, 1000, 200)) -> None:
        self.protocol = self.exchange.connect(self.factory)
        self.exchange.accept_login(throttle=throttle)

    def sent(self) -> list[Any]:
        """What the client wrote, through the exchange's session (seq-checked)."""
        return self.exchange.process()

    def log_text(self) -> str:
        from twisted.logger import formatEvent

        return "\n".join(formatEvent(e) + repr(e.get("log_failure", "")) for e in self.events)


class LoginTests(ClientTestCase):
    def test_new_session_login_at_seq_1_with_credentials(self) -> None:
        self.exchange.connect(self.factory)
        (login,) = self.exchange.received()
        self.assertEqual(login.type, seto_pb2.PAYLOAD_LOGIN)
        self.assertEqual(login.eto_payload.type, eto_pb2.PAYLOAD_LOGIN)
        self.assertEqual(login.eto_payload.seq, 1)
        self.assertEqual((login.login.username, login.login.password), ("user", PASSWORD))
        self.assertFalse(login.eto_payload.HasField("login"))

    def test_login_fires_with_response_and_when_logged_in(self) -> None:
        protocol = self.exchange.connect(self.factory)
        first, second = result_of(protocol.login()), result_of(protocol.login())
        logged_in = result_of(self.factory.whenLoggedIn())
        self.assertEqual(first, [])
        self.exchange.accept_login()
        self.assertEqual(first[0].session, SESSION_ID)
        self.assertEqual(first[0].email, "user@example.com")
        self.assertIs(second[0], first[0])
        self.assertEqual(logged_in, [protocol])
        self.assertEqual(result_of(protocol.login())[0].id, 42)
        self.assertEqual(result_of(self.factory.whenLoggedIn()), [protocol])

    def test_bad_password_fails_login_with_reason(self) -> None:
        protocol = self.exchange.connect(self.factory)
        login = result_of(protocol.login())
        waiting = result_of(self.factory.whenLoggedIn())
        order = result_of(self.factory.order(1, 2, BUY, 10000, 5000))
        self.exchange.refuse_login(eto_pb2.LOGOUT_UNAUTHORISED)
        login[0].trap(errors.LoginError)
        self.assertEqual(login[0].value.reason, eto_pb2.LOGOUT_UNAUTHORISED)
        self.assertEqual(login[0].value.reason_name, "LOGOUT_UNAUTHORISED")
        waiting[0].trap(errors.LoginError)
        order[0].trap(errors.LoginError)
        self.assertTrue(self.exchange.transport.disconnecting)

    def test_login_timeout(self) -> None:
        protocol = self.exchange.connect(self.factory)
        login = result_of(protocol.login())
        self.clock.advance(self.factory.config.login_timeout - 0.1)
        self.assertEqual(login, [])
        self.clock.advance(0.1)
        login[0].trap(errors.LoginTimeout)
        self.assertTrue(self.exchange.transport.disconnecting)

    def test_requests_without_session_fail_at_once(self) -> None:
        for deferred in (self.factory.order(1, 2, BUY, 1, 1), self.factory.cancel(3), self.factory.ping()):
            self.failureResultOf(deferred, errors.NotLoggedIn)


class LogoutAndPingTests(ClientTestCase):
    def test_logout_fires_on_confirmation_and_close(self) -> None:
        self.connect_and_login()
        pending = result_of(self.factory.cancel(5))
        done = result_of(self.factory.logout())
        (cancel, logout) = self.sent()
        self.assertEqual(handler_name(logout), "eto.logout")
        self.assertEqual(logout_reason(logout), eto_pb2.LOGOUT_NONE)
        self.assertEqual(done, [])
        self.exchange.session.send_logout(self.clock.seconds(), eto_pb2.LOGOUT_CONFIRMATION)
        self.exchange.flush()
        self.assertTrue(self.exchange.transport.disconnecting)
        self.assertEqual(done, [])
        self.exchange.disconnect()
        self.assertEqual(done, [None])
        pending[0].trap(errors.SessionLost)
        self.assertIsNone(self.factory.state.session_id)

    def test_ping_measures_round_trip_on_the_clock(self) -> None:
        self.connect_and_login()
        rtt = result_of(self.factory.ping())
        self.clock.advance(0.25)
        (ping,) = self.sent()
        self.assertEqual(handler_name(ping), "eto.ping")
        self.assertEqual(rtt, [0.25])

    def test_nothing_queued_goes_out_behind_a_logout(self) -> None:
        """The exchange acts on nothing after a logout: a request sent behind it would only have an unknown fate."""
        self.connect_and_login(throttle=(10, 1, 100))
        sent = result_of(self.factory.cancel(1))
        waiting = result_of(self.factory.cancel(2))  # no token left: it waits
        done = result_of(self.factory.logout())
        asked_after = result_of(self.factory.cancel(3))
        rtt = result_of(self.factory.ping())
        self.clock.advance(1)  # tokens enough for all of them
        self.assertEqual([handler_name(p) for p in self.sent()], ["seto.order_cancel", "eto.logout"])
        self.exchange.disconnect()
        done[0].trap(errors.SocketDisconnected)
        self.assertTrue(sent[0].trap(errors.SessionLost) and sent[0].value.sent)
        for outcome in (waiting, asked_after):
            self.assertFalse(outcome[0].trap(errors.SessionLost) and outcome[0].value.sent)
        rtt[0].trap(errors.SessionLost)

    def test_ping_fails_when_the_session_ends(self) -> None:
        self.connect_and_login()
        rtt = result_of(self.factory.ping())
        self.exchange.disconnect()
        self.assertEqual(rtt, [])  # its pong may come after the resume
        self.factory.stop()
        rtt[0].trap(errors.SessionLost)


class OrderTests(ClientTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.connect_and_login()

    def test_order_create_fields_and_acceptance(self) -> None:
        accepted = result_of(self.factory.order(100, 1001, BUY, 400000, 2500, reference=77, label="mine"))
        (create,) = self.sent()
        body = create.order_create
        self.assertEqual((body.market_id, body.contract_id, body.side, body.quantity, body.price),
                         (100, 1001, BUY, 400000, 2500))
        self.assertEqual((body.tif, body.reference, body.label), (seto_pb2.GOOD_TIL_CANCELLED, 77, "mine"))
        self.exchange.send_app("order_accepted", seq=create.eto_payload.seq, order_id=9, reference=77)
        self.assertEqual(accepted[0].order_id, 9)

    def test_an_answer_at_the_same_seq_for_another_reference_is_not_this_orders(self) -> None:
        """A new session's account replay repeats the last session's answers, whose seqs started at 1 too."""
        accepted = result_of(self.factory.order(100, 1001, BUY, 10000, 5000, reference=5))
        (create,) = self.sent()
        seq = create.eto_payload.seq
        self.exchange.send_app("order_accepted", seq=seq, order_id=1, reference=4, account_sequence_64=7)
        self.assertEqual(accepted, [])
        self.exchange.send_app("order_accepted", seq=seq, order_id=2, reference=5, account_sequence_64=8)
        self.assertEqual(accepted[0].order_id, 2)
        self.assertEqual(self.factory.orders.by_reference(5).order_id, 2)  # type: ignore[union-attr]

    def test_pipelined_orders_correlate_by_seq_whatever_the_answer_order(self) -> None:
        outcomes = [result_of(self.factory.order(100, 1001, BUY, 10000 * i, 5000)) for i in (1, 2, 3)]
        creates = self.sent()
        self.assertEqual(len(creates), 3)
        seqs = [p.eto_payload.seq for p in creates]
        self.exchange.send_app("order_invalid", seq=seqs[2], reasons=[seto_pb2.ORDER_INVALID_INVALID_PRICE,
                                                                       seto_pb2.ORDER_INVALID_INVALID_QUANTITY])
        self.exchange.send_app("order_accepted", seq=seqs[0], order_id=1)
        self.exchange.send_app("order_rejected", seq=seqs[1], reason=seto_pb2.ORDER_REJECTED_INSUFFICIENT_FUNDS)
        self.assertEqual(outcomes[0][0].order_id, 1)
        outcomes[1][0].trap(errors.OrderRejected)
        self.assertEqual(outcomes[1][0].value.reason_name, "ORDER_REJECTED_INSUFFICIENT_FUNDS")
        outcomes[2][0].trap(errors.OrderInvalid)
        self.assertEqual(outcomes[2][0].value.reason_names,
                         ["ORDER_INVALID_INVALID_PRICE", "ORDER_INVALID_INVALID_QUANTITY"])
        self.assertEqual(len(self.factory.requests), 0)

    def test_cancel_success_and_rejection(self) -> None:
        ok, refused = result_of(self.factory.cancel(5)), result_of(self.factory.cancel(6))
        self.assertEqual([p.order_cancel.order_id for p in self.sent()], [5, 6])
        self.exchange.send_app("order_cancel_rejected", order_id=6,
                               reason=seto_pb2.ORDER_CANCEL_REJECTED_NOT_FOUND)
        self.exchange.send_app("order_cancelled", order_id=5, reason=seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED)
        self.assertEqual(ok[0].order_id, 5)
        refused[0].trap(errors.CancelRejected)

    def test_cancel_all_reduce_replace(self) -> None:
        all_ok = result_of(self.factory.cancel_all(100))
        reduced = result_of(self.factory.reduce(5, 1000))
        reduce_refused = result_of(self.factory.reduce(6, 1000))
        replaced = result_of(self.factory.replace(7, 3000, 20000))
        replace_refused = result_of(self.factory.replace(8, 3000, 20000))
        cancel_all_refused = result_of(self.factory.cancel_all())
        names = [handler_name(p) for p in self.sent()]
        self.assertEqual(names, ["seto.order_cancel_all", "seto.order_quantity_reduce", "seto.order_quantity_reduce",
                                 "seto.order_cancel_replace", "seto.order_cancel_replace", "seto.order_cancel_all"])
        self.exchange.send_app("order_cancel_all_accepted")
        self.exchange.send_app("order_quantity_reduced", order_id=5, new_quantity=1000,
                               reason=seto_pb2.ORDER_QUANTITY_REDUCED_MEMBER_REQUESTED)
        self.exchange.send_app("order_quantity_reduce_rejected", order_id=6, new_quantity=1000,
                               reason=seto_pb2.ORDER_QUANTITY_REDUCE_REJECTED_NOT_FOUND)
        common = dict(price=3000, quantity=20000, market_id=1, contract_id=2, side=BUY)
        self.exchange.send_app("order_cancel_replace_accepted", order_id=70, orig_order_id=7, quantity_left=20000,
                               **common)
        self.exchange.send_app("order_cancel_replace_rejected", order_id=80, orig_order_id=8,
                               reason=seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_TOO_LATE, **{
                                   k: v for k, v in common.items() if k not in ("price", "quantity")})
        self.exchange.send_app("order_cancel_all_rejected", reason=seto_pb2.ORDER_CANCEL_ALL_REJECTED_UNKNOWN_ERROR)
        self.assertEqual(len(all_ok), 1)
        self.assertNotIsInstance(all_ok[0], Exception)
        self.assertEqual(reduced[0].new_quantity, 1000)
        reduce_refused[0].trap(errors.ReduceRejected)
        self.assertEqual(replaced[0].order_id, 70)
        replace_refused[0].trap(errors.ReplaceRejected)
        cancel_all_refused[0].trap(errors.CancelAllRejected)

    def test_subscribe_unsubscribe_settings(self) -> None:
        snapshot = result_of(self.factory.subscribe(100))
        gone = result_of(self.factory.unsubscribe(101))
        settings = result_of(self.factory.settings(cancel_all_on_failure=True))
        sent = self.sent()
        self.assertEqual([handler_name(p) for p in sent],
                         ["seto.market_subscribe", "seto.market_unsubscribe", "seto.settings"])
        self.assertEqual(gone, [None])
        self.assertTrue(sent[2].settings.cancel_all_on_failure)
        self.exchange.send_app("market_quotes", market_id=100)
        self.exchange.send_app("settings_accepted", cancel_all_on_failure=True)
        self.assertEqual(snapshot[0].market_id, 100)
        self.assertTrue(settings[0].cancel_all_on_failure)
        self.assertEqual(self.factory.subscriptions, {100})

    def test_a_value_its_field_cannot_carry_fails_the_request_and_nothing_goes_out(self) -> None:
        good = {"market_id": 100, "contract_id": 1001, "side": BUY, "quantity": 10000, "price": 5000}
        bad_orders = [("side", 99), ("quantity", -1), ("price", "2500"), ("price", 0), ("price", 10000),
                      ("market_id", 2**32), ("contract_id", None), ("quantity", None), ("side", None)]
        for field, value in bad_orders:
            failure = self.failureResultOf(self.factory.order(**{**good, field: value}), errors.InvalidRequest)
            self.assertEqual(failure.value.field, field)
            self.assertIsInstance(failure.value, ValueError)
            self.assertIn(repr(value), str(failure.value))
        for request, field in [
            (lambda: self.factory.replace(9, 0, 10000), "price"),
            (lambda: self.factory.replace(9, 10000, 10000), "price"),
            (lambda: self.factory.replace(9, 2500, -5), "quantity"),
            (lambda: self.factory.reduce(9, -1), "new_quantity"),
            (lambda: self.factory.cancel(-9), "order_id"),
            (lambda: self.factory.cancel(None), "order_id"),  # type: ignore[arg-type]
            (lambda: self.factory.replace(None, 2500, 10000), "orig_order_id"),  # type: ignore[arg-type]
            (lambda: self.factory.reduce(9, None), "new_quantity"),  # type: ignore[arg-type]
            (lambda: self.factory.cancel_all("100"), "market_id"),  # type: ignore[arg-type]
            (lambda: self.factory.subscribe(-100), "market_id"),
            (lambda: self.factory.unsubscribe(-100), "market_id"),
        ]:
            self.assertEqual(self.failureResultOf(request(), errors.InvalidRequest).value.field, field)
        self.assertEqual((self.sent(), self.factory.queued, len(self.factory.requests)), ([], 0, 0))
        self.assertEqual((list(self.factory.orders), self.factory.subscriptions), ([], set()))

    def test_timeout_fails_request_and_late_answer_goes_to_handlers(self) -> None:
        seen: list[Any] = []
        self.factory.add_handler("seto.order_accepted", seen.append)
        accepted = result_of(self.factory.order(1, 2, BUY, 10000, 5000, timeout=5))
        (create,) = self.sent()
        self.clock.advance(5)
        accepted[0].trap(errors.RequestTimeout)
        self.exchange.send_app("order_accepted", seq=create.eto_payload.seq, order_id=3)
        self.assertEqual(len(accepted), 1)
        self.assertEqual([m.order_id for m in seen], [3])

    def test_default_request_timeout_from_settings(self) -> None:
        self.factory = make_factory(self.clock, request_timeout=2.0)
        self.connect_and_login()
        cancelled = result_of(self.factory.cancel(4))
        self.clock.advance(2)
        cancelled[0].trap(errors.RequestTimeout)

    def test_cancelling_a_deferred_fires_once(self) -> None:
        deferred = self.factory.order(1, 2, BUY, 10000, 5000, timeout=5)
        (create,) = self.sent()
        deferred.cancel()
        self.failureResultOf(deferred, CancelledError)
        self.exchange.send_app("order_accepted", seq=create.eto_payload.seq, order_id=3)
        self.clock.advance(10)
        self.assertEqual(len(self.factory.requests), 0)


class HeartbeatTests(ClientTestCase):
    def test_heartbeat_answered(self) -> None:
        self.connect_and_login()
        self.exchange.send_session(eto_pb2.PAYLOAD_HEARTBEAT)
        self.assertEqual([handler_name(p) for p in self.sent()], ["eto.heartbeat"])

    def test_heartbeat_sent_when_idle(self) -> None:
        self.connect_and_login()
        interval = self.factory.config.heartbeat_interval
        self.clock.advance(interval / 2)
        self.factory.cancel(1)
        self.sent()
        self.clock.advance(interval - 0.01)
        self.assertEqual(self.sent(), [])
        self.clock.advance(0.01)
        self.assertEqual([handler_name(p) for p in self.sent()], ["eto.heartbeat"])

    def test_silent_exchange_is_dropped(self) -> None:
        self.connect_and_login()
        timeout = self.factory.config.peer_timeout
        self.clock.advance(timeout - 1)
        self.exchange.send_session(eto_pb2.PAYLOAD_HEARTBEAT)
        self.clock.advance(timeout - 0.5)
        self.assertFalse(self.exchange.transport.disconnecting)
        self.clock.advance(0.5)
        self.assertTrue(self.exchange.transport.disconnecting)


class ThrottleTests(ClientTestCase):
    def test_requests_beyond_the_bucket_wait_in_order(self) -> None:
        # 10 per second in 100 ms ticks: one token per tick; a burst of 5.
        self.connect_and_login(throttle=(10, 5, 100))
        outcomes = [self.factory.cancel(order_id) for order_id in range(1, 8)]
        self.assertEqual([p.order_cancel.order_id for p in self.sent()], [1, 2, 3, 4, 5])
        self.assertEqual(self.factory.queued, 2)
        # For two ticks the five may be on the way, the exchange's bucket full: its refills lost.
        self.clock.advance(0.2)
        self.assertEqual(self.sent(), [])
        self.clock.advance(0.1)
        self.assertEqual([p.order_cancel.order_id for p in self.sent()], [6])
        self.clock.advance(0.1)
        self.assertEqual([p.order_cancel.order_id for p in self.sent()], [7])
        self.assertEqual(self.factory.queued, 0)
        for outcome in outcomes:
            self.assertNoResult(outcome)  # sent, awaiting the exchange's answers
        self.assertEqual(len(self.factory.requests), 7)

    def test_requests_queued_before_login_wait_for_the_limits(self) -> None:
        self.exchange.connect(self.factory)
        queued = [self.factory.cancel(order_id) for order_id in range(1, 7)]
        (login,) = self.exchange.received()
        self.exchange.accept_login(login, throttle=None)
        self.assertEqual(self.sent(), [])  # no limits yet: nothing goes out
        self.exchange.send_app("throttle_limits_changed", average_rate_ps=10, burst_size=5, tick_ms=100)
        self.assertEqual([p.order_cancel.order_id for p in self.sent()], [1, 2, 3, 4, 5])
        for _ in range(3):
            self.clock.advance(0.1)
        self.assertEqual([p.order_cancel.order_id for p in self.sent()], [6])
        self.assertEqual(len(queued), 6)

    def _resume_resending_two(self, throttle: tuple[int, int, int] | None) -> None:
        """Cancels 1 and 2 lost with the connection, 3 and 4 asked for meanwhile; resumed with ``throttle``."""
        self.connect_and_login(throttle=(10, 3, 100))
        self.factory.cancel(1)
        self.factory.cancel(2)
        self.exchange.transport.clear()
        self.exchange.disconnect()
        self.factory.cancel(3)
        self.factory.cancel(4)
        self.exchange.connect(self.factory)
        self.exchange.accept_login(throttle=throttle)
        # The exchange missed 1 and 2: they are resent at once, as replays.
        self.assertEqual([(p.order_cancel.order_id, p.eto_payload.is_replay) for p in self.sent()],
                         [(1, True), (2, True)])

    def _one_a_tick_after_two(self) -> None:
        """What went out may be on the way for two ticks; then a token a tick."""
        self.clock.advance(0.2)
        self.assertEqual(self.sent(), [])
        self.clock.advance(0.1)
        self.assertEqual([p.order_cancel.order_id for p in self.sent()], [3])
        self.clock.advance(0.1)
        self.assertEqual([p.order_cancel.order_id for p in self.sent()], [4])

    def test_resent_payloads_spend_the_resumed_sessions_tokens(self) -> None:
        self._resume_resending_two(throttle=None)
        self.exchange.send_app("throttle_limits_changed", average_rate_ps=10, burst_size=3, tick_ms=100)
        # A fresh bucket of 3, less the 3 resent (the two cancels, and the gapfill that stands for the
        # login in between, which the exchange counts too): the new requests wait.
        self.assertEqual(self.sent(), [])
        self._one_a_tick_after_two()

    def test_resends_count_before_a_request_when_the_limits_come_with_the_login_response(self) -> None:
        """The exchange writes both at once: the limits' arrival must not let a request out on resent tokens.

        (End-to-end with a burst of 1: the request went out at once and was refused THROTTLE_EXCEEDED.)
        """
        self._resume_resending_two(throttle=(10, 3, 100))  # login_response and limits in one chunk
        self._one_a_tick_after_two()

    def test_session_payloads_spend_tokens_as_the_exchange_counts_them(self) -> None:
        """The exchange's throttle counts every payload: a pong, a heartbeat or a ping leaves a token fewer."""
        self.connect_and_login(throttle=(10, 3, 100))
        self.exchange.send_session(eto_pb2.PAYLOAD_HEARTBEAT)
        self.exchange.send_session(eto_pb2.PAYLOAD_PING)
        self.factory.ping()
        self.assertEqual([handler_name(p) for p in self.sent()], ["eto.heartbeat", "eto.pong", "eto.ping"])
        # The burst of 3 less those three: the requests wait.
        self.factory.cancel(3)
        self.factory.cancel(4)
        self.assertEqual(self.sent(), [])
        self._one_a_tick_after_two()

    def test_pings_wait_for_a_token_and_are_timed_from_when_they_go_out(self) -> None:
        """A ping the exchange refused would get no pong, and each later pong would be credited to an older ping."""
        self.connect_and_login(throttle=(10, 3, 100))
        pinged = [self.factory.ping() for _ in range(5)]
        # Three go out now; two ticks later one a tick (the clock moves a tick at a time).
        for _ in range(4):
            self.clock.advance(0.1)
        self.clock.advance(0.05)
        # The exchange reads them now, and answers each: the round trips say when each went out.
        self.assertEqual([handler_name(p) for p in self.sent()], ["eto.ping"] * 5)
        self.assertEqual([round(self.successResultOf(d), 6) for d in pinged], [0.45, 0.45, 0.45, 0.15, 0.05])

    def test_without_limits_requests_go_out_after_a_short_wait(self) -> None:
        self.exchange.connect(self.factory)
        self.factory.cancel(1)
        self.exchange.accept_login(throttle=None)
        self.assertEqual(self.sent(), [])
        self.clock.advance(2.0)
        self.assertEqual([p.order_cancel.order_id for p in self.sent()], [1])

    def test_cancelled_queued_request_is_never_sent(self) -> None:
        self.connect_and_login(throttle=(10, 1, 100))
        self.factory.cancel(1)
        second = self.factory.cancel(2)
        self.factory.cancel(3)
        second.cancel()
        self.failureResultOf(second, CancelledError)
        self.clock.advance(1)
        self.assertEqual([p.order_cancel.order_id for p in self.sent()], [1, 3])

    def test_throttle_exceeded_is_logged(self) -> None:
        self.connect_and_login()
        self.exchange.send_session(eto_pb2.PAYLOAD_THROTTLE_EXCEEDED)
        self.assertIn("throttle", self.log_text())


class ResumeTests(ClientTestCase):
    def test_pending_request_survives_reconnect_and_is_answered(self) -> None:
        self.connect_and_login()
        accepted = result_of(self.factory.order(1, 2, BUY, 10000, 5000))
        (create,) = self.sent()
        self.exchange.disconnect()
        self.assertEqual(accepted, [])
        # The exchange accepted it just before the connection died: the answer is replayed.
        self.exchange.session.send(application_message("order_accepted", seq=create.eto_payload.seq, order_id=11),
                                   self.clock.seconds())
        self.exchange.session.data_to_send()
        self.exchange.connect(self.factory)
        (login,) = self.exchange.received()
        self.assertEqual(login.eto_payload.login.session, SESSION_ID)
        self.assertEqual(login.eto_payload.seq, self.factory.state.next_outgoing_seq - 1)
        self.exchange.accept_login(login)
        # login_response is above what the client expects: it asks for a replay.
        (replay,) = self.sent()
        self.assertEqual(handler_name(replay), "eto.replay")
        self.assertEqual(accepted[0].order_id, 11)

    def test_payloads_the_exchange_missed_are_resent_once(self) -> None:
        self.connect_and_login()
        accepted = result_of(self.factory.order(1, 2, BUY, 10000, 5000))
        lost = self.exchange.transport.value()
        self.exchange.transport.clear()
        self.assertTrue(lost)
        self.exchange.disconnect()
        self.exchange.connect(self.factory)
        self.exchange.accept_login()
        resent = self.sent()
        self.assertEqual([handler_name(p) for p in resent], ["seto.order_create"])
        self.assertTrue(resent[0].eto_payload.is_replay)
        self.exchange.send_app("order_accepted", seq=resent[0].eto_payload.seq, order_id=12)
        self.assertEqual(accepted[0].order_id, 12)
        self.assertEqual(self.exchange.state.next_incoming_seq, self.factory.state.next_outgoing_seq)
        # Once: a later heartbeat exchange carries no second copy.
        self.exchange.send_session(eto_pb2.PAYLOAD_HEARTBEAT)
        self.assertEqual([handler_name(p) for p in self.sent()], ["eto.heartbeat"])

    def test_requests_made_while_disconnected_go_out_after_resume(self) -> None:
        self.connect_and_login()
        self.exchange.disconnect()
        cancelled = result_of(self.factory.cancel(9))
        self.assertEqual(self.factory.queued, 1)
        self.exchange.connect(self.factory)
        self.exchange.accept_login()
        self.assertEqual([p.order_cancel.order_id for p in self.sent()], [9])
        self.assertEqual(cancelled, [])

    def test_unknown_session_fails_pending_with_session_lost(self) -> None:
        self.connect_and_login()
        accepted = result_of(self.factory.order(1, 2, BUY, 10000, 5000))
        self.sent()
        self.exchange.disconnect()
        self.exchange.connect(self.factory)
        self.exchange.refuse_login(eto_pb2.LOGOUT_UNKNOWN_SESSION)
        accepted[0].trap(errors.SessionLost)
        self.assertIsNone(self.factory.state.session_id)

    def test_new_session_renews_subscriptions_and_sends_account_sequence(self) -> None:
        self.connect_and_login()
        subscribed = result_of(self.factory.subscribe(100))
        self.sent()
        self.exchange.send_app("order_cancelled", order_id=1, reason=seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED,
                               account_sequence_64=55)
        self.exchange.disconnect()
        self.exchange.connect(self.factory)
        self.exchange.refuse_login(eto_pb2.LOGOUT_UNKNOWN_SESSION)
        subscribed[0].trap(errors.SessionLost)
        self.exchange.disconnect()
        self.exchange.state.reset()
        self.exchange.connect(self.factory)
        (login,) = self.exchange.received()
        self.assertFalse(login.eto_payload.HasField("login"))
        self.assertEqual(login.login.account_sequence_64, 55)
        self.exchange.accept_login(login)
        self.assertEqual([p.market_subscribe.market_id for p in self.sent()], [100])


    def test_subscribing_when_logged_in_is_asked_once(self) -> None:
        self.exchange.connect(self.factory)
        self.factory.whenLoggedIn().addCallback(lambda _: self.factory.subscribe(100))
        queued_before_login = self.factory.subscribe(200)
        self.exchange.accept_login()
        self.assertEqual(sorted(p.market_subscribe.market_id for p in self.sent()), [100, 200])
        self.assertNoResult(queued_before_login)

    def test_logout_forgets_subscriptions(self) -> None:
        self.connect_and_login()
        subscribed = result_of(self.factory.subscribe(100))
        self.factory.logout()
        self.sent()
        self.exchange.session.send_logout(self.clock.seconds(), eto_pb2.LOGOUT_CONFIRMATION)
        self.exchange.flush()
        self.exchange.disconnect()
        subscribed[0].trap(errors.SessionLost)
        self.exchange.state.reset()
        self.exchange.connect(self.factory)
        self.exchange.accept_login()
        self.assertEqual(self.sent(), [])


class HandlerTests(ClientTestCase):
    def test_unknown_name_is_refused(self) -> None:
        self.assertRaises(errors.InvalidCallbackError, self.factory.add_handler, "seto.nothing", print)
        self.assertRaises(errors.InvalidCallbackError, self.factory.del_handler, "seto.order_accepted", print)

    def test_handlers_by_name_and_global(self) -> None:
        named: list[Any] = []
        every: list[tuple[str, Any]] = []
        self.factory.add_handler("seto.order_cancelled", named.append)
        self.factory.add_global_handler(lambda name, message: every.append((name, message)))
        self.connect_and_login()
        self.exchange.send_app("order_cancelled", order_id=3, reason=seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED)
        self.exchange.send_session(eto_pb2.PAYLOAD_HEARTBEAT)
        self.assertEqual([m.order_id for m in named], [3])
        self.assertEqual([name for name, _ in every],
                         ["eto.login_response", "seto.throttle_limits_changed", "seto.order_cancelled",
                          "eto.heartbeat"])
        self.factory.del_handler("seto.order_cancelled", named.append)
        self.exchange.send_app("order_cancelled", order_id=4, reason=seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED)
        self.assertEqual(len(named), 1)

    def test_raising_handler_is_logged_and_others_still_run(self) -> None:
        def broken(message: Any) -> None:
            raise RuntimeError("strategy bug")

        after: list[Any] = []
        self.factory.add_handler("seto.order_cancelled", broken)
        self.factory.add_handler("seto.order_cancelled", after.append)
        self.connect_and_login()
        self.exchange.send_app("order_cancelled", order_id=3, reason=seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED)
        self.assertEqual(len(after), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(self.exchange.transport.disconnecting)
        self.exchange.send_session(eto_pb2.PAYLOAD_HEARTBEAT)
        self.assertEqual([handler_name(p) for p in self.sent()], ["eto.heartbeat"])


class BadInputTests(ClientTestCase):
    def test_malformed_payload_drops_the_connection(self) -> None:
        self.connect_and_login()
        self.exchange.deliver_frame(b"\xff\xff\xff")
        self.assertTrue(self.exchange.transport.disconnecting)
        self.assertIn("protocol error", self.log_text())

    def test_unknown_message_type_drops_the_connection(self) -> None:
        self.connect_and_login()
        payload = session_message(eto_pb2.PAYLOAD_HEARTBEAT)
        payload.eto_payload.seq = 2
        data = bytearray(payload.SerializeToString())
        data[1] = 99  # seto type 99 does not exist
        self.exchange.deliver_frame(bytes(data))
        self.assertTrue(self.exchange.transport.disconnecting)

    def test_oversized_frame_drops_the_connection_before_buffering(self) -> None:
        self.factory = make_factory(self.clock, max_frame_size=1000)
        self.connect_and_login()
        self.exchange.deliver(encode_uleb128(1001))
        self.assertTrue(self.exchange.transport.disconnecting)
        self.assertEqual(self.protocol.deframer.buffered, 0)
        self.assertIn("exceeds the limit", self.log_text())

    def test_half_written_frame_at_disconnect_is_reported(self) -> None:
        self.connect_and_login()
        self.exchange.deliver(encode_uleb128(50) + b"partial")
        self.exchange.disconnect()
        self.assertIn("middle of a frame", self.log_text())


class ReviewFindingsTests(ClientTestCase):
    """Each test is one way a request could be lost, doubled or left hanging."""

    def test_cancel_all_fires_only_on_its_own_answer(self) -> None:
        self.connect_and_login()
        mine = result_of(self.factory.cancel_all(200))
        (request,) = self.sent()
        # Another session of the same account cancelled everything in market 100.
        self.exchange.send_app("order_cancel_all_accepted", reference=request.order_cancel_all.reference + 1)
        self.assertEqual(mine, [])
        self.exchange.send_app("order_cancel_all_accepted", reference=request.order_cancel_all.reference)
        self.assertEqual(mine[0].reference, request.order_cancel_all.reference)

    def test_every_referenced_request_gets_a_distinct_reference(self) -> None:
        self.connect_and_login()
        self.factory.cancel(1)
        self.factory.cancel(1)
        self.factory.reduce(1, 5)
        self.factory.replace(1, 2000, 5)
        sent = self.sent()
        references = {p.order_cancel.reference or p.order_quantity_reduce.reference
                      or p.order_cancel_replace.reference for p in sent}
        self.assertEqual(len(references), 4)

    def test_cancel_answered_without_reference_falls_back_to_the_order_id(self) -> None:
        self.connect_and_login()
        cancelled = result_of(self.factory.cancel(5))
        self.sent()
        self.exchange.send_app("order_cancelled", order_id=5, reason=seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED)
        self.assertEqual(cancelled[0].order_id, 5)

    def test_logout_whose_confirmation_is_lost_fails_and_ends_the_session(self) -> None:
        self.connect_and_login()
        pending = result_of(self.factory.cancel(5))
        done = result_of(self.factory.logout())
        self.exchange.disconnect()
        done[0].trap(errors.SocketDisconnected)
        error = pending[0].trap(errors.SessionLost) and pending[0].value
        self.assertTrue(error.sent)
        self.assertIsNone(self.factory.state.session_id)
        self.exchange.state.reset()
        self.exchange.connect(self.factory)
        (login,) = self.exchange.received()
        self.assertFalse(login.eto_payload.HasField("login"))  # not a resume of the logged-out session

    def test_session_lost_and_timeout_say_whether_the_request_was_sent(self) -> None:
        self.connect_and_login(throttle=(10, 1, 100))
        sent = result_of(self.factory.cancel(1, timeout=0.05))
        unsent = result_of(self.factory.cancel(2, timeout=0.05))
        self.clock.advance(0.05)
        self.assertTrue(sent[0].trap(errors.RequestTimeout) and sent[0].value.sent)
        self.assertFalse(unsent[0].trap(errors.RequestTimeout) and unsent[0].value.sent)
        on_wire = result_of(self.factory.cancel(3))
        queued = result_of(self.factory.cancel(4))
        self.clock.advance(0.3)  # a burst of 1 with 2 ticks of headroom: a token every 3 ticks
        self.factory.stop()
        self.assertEqual([r[0].value.sent for r in (on_wire, queued)], [True, False])

    def test_a_request_that_cannot_be_sent_fails_instead_of_vanishing(self) -> None:
        self.connect_and_login()
        self.factory.state.next_outgoing_seq = 2**64
        self.failureResultOf(self.factory.cancel(1, timeout=5), errors.SequenceError)
        self.assertEqual(len(self.factory.requests), 0)
        self.clock.advance(5)  # its timeout was stopped: the Deferred does not fire again

    def test_cancelled_ping_keeps_its_place(self) -> None:
        self.connect_and_login()
        first = self.factory.ping()
        second = result_of(self.factory.ping())
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.clock.advance(1)
        self.exchange.send_session(eto_pb2.PAYLOAD_PONG)  # answers the cancelled ping
        self.assertEqual(second, [])
        self.clock.advance(1)
        self.exchange.send_session(eto_pb2.PAYLOAD_PONG)
        self.assertEqual(second, [2.0])

    def test_ping_timed_out_before_it_went_out_is_not_sent(self) -> None:
        """No pong can come for a ping never sent, so it has no place to keep: it would only spend a token."""
        self.connect_and_login(throttle=(10, 3, 100))
        for order_id in (1, 2, 3):  # the burst's 3 tokens
            self.factory.cancel(order_id)
        stale = result_of(self.factory.ping(timeout=0.05))
        self.clock.advance(0.05)
        stale[0].trap(errors.RequestTimeout)
        cancelled = self.factory.ping()
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        rtt = result_of(self.factory.ping())
        self.clock.advance(0.05)
        self.clock.advance(0.2)  # the next token: three ticks after the three went out
        self.assertEqual(self.exchange.received_names(), ["seto.order_cancel"] * 3 + ["eto.ping"])
        self.clock.advance(0.5)
        self.assertEqual(self.exchange.received(), [])
        self.exchange.send_session(eto_pb2.PAYLOAD_PONG)
        self.assertEqual(rtt, [0.5])

    def test_ping_logout_and_when_logged_in_take_a_timeout(self) -> None:
        waiting = result_of(self.factory.whenLoggedIn(timeout=1))
        self.clock.advance(1)
        waiting[0].trap(errors.RequestTimeout)
        self.connect_and_login()
        rtt = result_of(self.factory.ping(timeout=1))
        self.clock.advance(1)
        rtt[0].trap(errors.RequestTimeout)
        done = result_of(self.factory.logout(timeout=1))
        self.clock.advance(1)
        done[0].trap(errors.RequestTimeout)

    def test_unknown_session_logout_ends_the_session_and_the_next_login_asks_for_account_events(self) -> None:
        self.connect_and_login()
        self.exchange.send_app("order_cancelled", order_id=1, reason=seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED,
                               account_sequence_64=77)
        pending = result_of(self.factory.cancel(9))
        self.sent()
        self.exchange.session.send_logout(self.clock.seconds(), eto_pb2.LOGOUT_UNKNOWN_SESSION)
        self.exchange.flush()
        self.assertTrue(pending[0].trap(errors.SessionLost) and pending[0].value.sent)
        self.exchange.disconnect()
        self.exchange.state.reset()
        self.exchange.connect(self.factory)
        (login,) = self.exchange.received()
        self.assertFalse(login.eto_payload.HasField("login"))
        self.assertEqual(login.login.account_sequence_64, 77)

    def test_a_new_session_with_no_account_sequence_to_ask_from_says_what_it_cannot_learn(self) -> None:
        """With no account event seen yet, the events of orders of unknown fate cannot be asked for: say so."""
        self.connect_and_login()
        placed = result_of(self.factory.order(1, 2, seto_pb2.SIDE_BUY, 10000, 5000))
        self.sent()
        self.exchange.session.send_logout(self.clock.seconds(), eto_pb2.LOGOUT_UNKNOWN_SESSION)
        self.exchange.flush()
        self.exchange.disconnect()
        self.exchange.state.reset()
        self.exchange.connect(self.factory)
        (login,) = self.exchange.received()
        self.assertFalse(login.login.HasField("account_sequence_64"))
        self.assertTrue(placed[0].trap(errors.SessionLost) and placed[0].value.sent)
        self.assertIn("1 order of unknown fate", self.log_text())
        self.assertIn("no account event seen yet", self.log_text())

    def test_requests_the_exchange_asks_for_after_they_left_the_log_fail(self) -> None:
        self.factory = make_factory(self.clock, sent_log_size=2)
        self.connect_and_login()
        lost = result_of(self.factory.cancel(1))
        kept = result_of(self.factory.cancel(2))
        self.factory.cancel(3)
        self.factory.cancel(4)
        self.exchange.transport.clear()  # none of it reached the exchange
        replay = session_message(eto_pb2.PAYLOAD_REPLAY)
        replay.eto_payload.replay.seq = 2
        self.exchange.send(replay)
        self.assertFalse(lost[0].trap(errors.SessionLost) and lost[0].value.sent)
        # The log held only seqs 4 and 5 (cancels 3 and 4): cancel 2, at seq 3, is lost too.
        self.assertFalse(kept[0].trap(errors.SessionLost) and kept[0].value.sent)
        self.assertEqual(len(self.factory.requests), 2)


class SecretTests(ClientTestCase):
    def test_no_secret_in_logs_reprs_or_errors(self) -> None:
        self.events.clear()
        protocol = self.exchange.connect(self.factory)
        self.exchange.accept_login()
        self.exchange.send_app("order_cancelled", order_id=3, reason=seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED)
        # A duplicate (logged with its payload) and a resume (logged) exercise the other log paths.
        self.exchange.deliver_frame(self.exchange.state.sent.get(1))
        self.exchange.disconnect()
        self.exchange.connect(self.factory)
        self.exchange.refuse_login(eto_pb2.LOGOUT_UNAUTHORISED)
        cookie_settings = ClientSettings(username="u", cookie=b"cookie-token-xyz")
        texts = [self.log_text(), repr(self.factory), repr(self.factory.config), repr(self.factory.state),
                 repr(protocol), repr(cookie_settings)]
        for error in self.every_error():
            texts += [str(error), repr(error)]
        for text in texts:
            self.assertNotIn(PASSWORD, text)
            self.assertNotIn(SESSION_ID, text)
            self.assertNotIn("cookie-token-xyz", text)
        self.assertIn("ignored", texts[0])

    def every_error(self) -> list[Exception]:
        """One instance of every error class, built as this library builds them."""
        built: list[Exception] = [
            errors.LoginError(eto_pb2.LOGOUT_UNAUTHORISED, "LOGOUT_UNAUTHORISED"),
            errors.LoginTimeout(),
            errors.LoggedOut(eto_pb2.LOGOUT_CONFIRMATION, "LOGOUT_CONFIRMATION"),
            errors.FrameTooLarge(10, 5),
            errors.OrderInvalid([1], ["ORDER_INVALID_INVALID_PRICE"]),
            errors.SessionLost("logged out", sent=True),
            errors.RequestTimeout(sent=False),
        ]
        for name in dir(errors):
            cls = getattr(errors, name)
            if isinstance(cls, type) and issubclass(cls, errors.SmarketsError) and cls.__module__ == errors.__name__:
                if issubclass(cls, errors.RequestRejected) and cls is not errors.OrderInvalid:
                    built.append(cls(1, "REASON", application_message("order_cancel", order_id=1)))
        return built


class FramesBeforeABadHeaderTests(ClientTestCase):
    def test_good_frames_before_a_bad_header_are_processed_then_the_connection_drops(self) -> None:
        seen: list[Any] = []
        self.factory.add_handler("seto.order_cancelled", seen.append)
        self.connect_and_login()
        session = self.exchange.session
        session.send(application_message("order_cancelled", order_id=8,
                                          reason=seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED), self.clock.seconds())
        self.exchange.deliver(session.data_to_send() + b"\xff" * 11)
        self.assertEqual([m.order_id for m in seen], [8])
        self.assertTrue(self.exchange.transport.disconnecting)
        self.assertIn("header longer than 10 bytes", self.log_text())


class QuietRequestTests(ClientTestCase):
    def test_a_quiet_request_the_session_end_fails_is_not_an_unhandled_error(self) -> None:
        """A snapshot asked for by the library itself (books after a gapfill, a new session's
        subscriptions) has no caller to tell: its failure is logged, never left unhandled."""
        import gc

        self.connect_and_login(throttle=None)  # type: ignore[arg-type]  # limits unknown: nothing sent yet
        self.factory._refresh_books([100])
        self.factory.stop()
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(errors.SessionLost), [])
        self.assertIn("market 100", self.log_text())
