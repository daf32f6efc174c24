"""ExchangeProtocol: login, liveness, logout, bad input, takeover and resume, one connection at a time."""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.exchange.server import ConnectionSettings
from smarkets_twisted.exchange.service import ExchangeSettings
from smarkets_twisted.framing import encode_frame, encode_uleb128
from smarkets_twisted.payloads import Payload, handler_name, login_message, session_message
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.session import SessionState
from tests.exchange_helpers import ExchangeFixture, ScriptedClient, two_accounts

BUY = seto_pb2.SIDE_BUY
SELL = seto_pb2.SIDE_SELL


def describe(payload: Payload) -> tuple[str, int]:
    return handler_name(payload), payload.eto_payload.seq


def logout_reason(payload: Payload) -> str:
    assert handler_name(payload) == "eto.logout", handler_name(payload)
    return str(eto_pb2.LogoutReason.Name(payload.eto_payload.logout.reason))


class LogCapture:
    """Every log event emitted while installed, formatted."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    @property
    def text(self) -> str:
        return "\n".join(str(formatEvent(event)) for event in self.events)


class LoginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = ExchangeFixture()

    def test_login_response_then_throttle_limits(self) -> None:
        """A good login gets login_response at seq 1 (reset 2, email, id), then the throttle at seq 2."""
        client = self.fixture.client()
        received = client.login()
        self.assertEqual(
            [describe(p) for p in received], [("eto.login_response", 1), ("seto.throttle_limits_changed", 2)]
        )
        response = received[0].eto_payload.login_response
        self.assertEqual(response.reset, 2)
        self.assertEqual(response.email, "alice@example.com")
        self.assertEqual(response.id, 11)
        self.assertGreaterEqual(len(response.session), 32)
        limits = received[1].throttle_limits_changed
        self.assertEqual((limits.average_rate_ps, limits.burst_size, limits.tick_ms), (500, 1000, 200))
        self.assertFalse(client.closed)
        self.assertEqual(len(self.fixture.exchange.registry), 1)

    def test_throttle_limits_are_configurable(self) -> None:
        fixture = ExchangeFixture(settings=ExchangeSettings(average_rate_ps=10, burst_size=20, tick_ms=100))
        limits = fixture.client().login()[1].throttle_limits_changed
        self.assertEqual((limits.average_rate_ps, limits.burst_size, limits.tick_ms), (10, 20, 100))

    def test_login_split_into_single_bytes(self) -> None:
        """Frames may arrive one byte at a time."""
        client = self.fixture.client()
        client.session.start_login(0.0, username="alice", password="alice-pw")
        data = client.session.data_to_send()
        for index in range(len(data)):
            client.protocol.dataReceived(data[index : index + 1])
        client.pump()
        self.assertEqual([name for name, _ in map(describe, client.take())],
                         ["eto.login_response", "seto.throttle_limits_changed"])

    def test_two_sessions_get_different_ids(self) -> None:
        first = self.fixture.client()
        second = self.fixture.client()
        first.login()
        second.login("bob", "bob-pw")
        self.assertNotEqual(first.state.session_id, second.state.session_id)

    def test_bad_password(self) -> None:
        """A bad password gets logout UNAUTHORISED at seq 1, then the connection closes."""
        client = self.fixture.client()
        received = client.login(password="wrong")
        self.assertEqual([describe(p) for p in received], [("eto.logout", 1)])
        self.assertEqual(logout_reason(received[0]), "LOGOUT_UNAUTHORISED")
        self.assertTrue(client.closed)
        self.assertEqual(len(self.fixture.exchange.registry), 0)

    def test_unknown_username(self) -> None:
        client = self.fixture.client()
        received = client.login("mallory", "alice-pw")
        self.assertEqual(logout_reason(received[0]), "LOGOUT_UNAUTHORISED")
        self.assertTrue(client.closed)

    def test_login_without_password(self) -> None:
        client = self.fixture.client()
        client.send(login_message(username="alice"))
        self.assertEqual(logout_reason(client.take()[0]), "LOGOUT_UNAUTHORISED")
        self.assertTrue(client.closed)

    def test_first_payload_not_a_login(self) -> None:
        client = self.fixture.client()
        client.send(session_message(eto_pb2.PAYLOAD_PING))
        received = client.take()
        self.assertEqual([describe(p) for p in received], [("eto.logout", 1)])
        self.assertEqual(logout_reason(received[0]), "LOGOUT_LOGIN_NOT_FIRST_SEQ")
        self.assertTrue(client.closed)

    def test_new_session_login_not_at_seq_1(self) -> None:
        client = self.fixture.client()
        client.state.next_outgoing_seq = 5
        client.send(login_message("alice", "alice-pw"))
        self.assertEqual(logout_reason(client.take()[0]), "LOGOUT_LOGIN_NOT_FIRST_SEQ")
        self.assertTrue(client.closed)

    def test_resume_unknown_session(self) -> None:
        state = SessionState()
        state.session_id = "no-such-session"
        client = self.fixture.client(state)
        received = client.login()
        self.assertEqual(logout_reason(received[0]), "LOGOUT_UNKNOWN_SESSION")
        self.assertTrue(client.closed)

    def test_resume_another_accounts_session(self) -> None:
        """A session id only resumes for the account that opened it."""
        alice = self.fixture.client()
        alice.login()
        alice.disconnect()
        state = SessionState()
        state.session_id = alice.state.session_id
        state.next_outgoing_seq = alice.state.next_outgoing_seq
        bob = self.fixture.client(state)
        self.assertEqual(logout_reason(bob.login("bob", "bob-pw")[0]), "LOGOUT_UNKNOWN_SESSION")

    def test_login_timeout(self) -> None:
        """A connection that sends no login is logged out with LOGIN_TIMEOUT."""
        fixture = ExchangeFixture(ConnectionSettings(login_timeout=5.0))
        client = fixture.client()
        client.advance(4.9)
        self.assertEqual(client.take(), [])
        self.assertFalse(client.closed)
        client.advance(0.2)
        received = client.take()
        self.assertEqual([describe(p) for p in received], [("eto.logout", 1)])
        self.assertEqual(logout_reason(received[0]), "LOGOUT_LOGIN_TIMEOUT")
        self.assertTrue(client.closed)
        client.disconnect(clean=True)  # the close completes
        self.assertEqual(fixture.clock.getDelayedCalls(), [])

    def test_no_login_timeout_after_login(self) -> None:
        client = self.fixture.client()
        client.login()
        for _ in range(60):
            client.advance(1)
        self.assertNotIn("eto.logout", client.names())
        self.assertFalse(client.closed)


class SlowConsumerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = ExchangeFixture(ConnectionSettings(slow_consumer_timeout=10.0, peer_timeout=30.0))
        self.client = self.fixture.client()
        self.client.login()

    def test_client_that_stops_reading_is_dropped_and_can_resume(self) -> None:
        protocol = self.client.protocol
        self.assertIs(self.client.transport.producer, protocol)
        protocol.pauseProducing()  # the client's socket buffer is full
        self.fixture.clock.advance(9.9)
        self.assertFalse(self.client.transport.disconnecting)
        self.fixture.clock.advance(0.1)
        self.assertTrue(self.client.transport.disconnecting)  # well before the 30 s peer timeout
        self.client.disconnect()
        self.assertEqual(len(self.fixture.exchange.registry), 1)  # detached, resumable

    def test_a_close_that_cannot_finish_is_aborted(self) -> None:
        class RecordingTransport(StringTransport):
            aborted = False

            def abortConnection(self) -> None:
                self.aborted = True
                super().abortConnection()

        transport = RecordingTransport()
        protocol = self.fixture.factory.buildProtocol(None)
        protocol.makeConnection(transport)
        self.fixture.clock.advance(10.0)  # no login: LOGIN_TIMEOUT, then a close
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.aborted)
        self.fixture.clock.advance(10.0)  # the client never read, so the close never finished
        self.assertTrue(transport.aborted)

    def test_client_that_catches_up_is_kept(self) -> None:
        protocol = self.client.protocol
        protocol.pauseProducing()
        self.client.advance(8)
        protocol.resumeProducing()
        self.client.advance(20)
        self.assertFalse(self.client.transport.disconnecting)


class LivenessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = ExchangeFixture(ConnectionSettings(heartbeat_interval=5.0, peer_timeout=30.0))
        self.client = self.fixture.client()
        self.client.login()

    def test_heartbeat_when_idle(self) -> None:
        self.client.advance(4.9)
        self.assertEqual(self.client.names(), [])
        self.client.advance(0.1)
        self.assertEqual(self.client.names(), ["eto.heartbeat"])

    def test_answering_heartbeats_keeps_the_session(self) -> None:
        """The client answers each heartbeat (Session does); the session lives on."""
        for _ in range(40):
            self.client.advance(5)
        self.assertFalse(self.client.closed)
        self.assertEqual(set(self.client.names()), {"eto.heartbeat"})

    def test_silent_client_is_logged_out(self) -> None:
        """A client that stops answering gets logout HEARTBEAT_TIMEOUT; a live one carries on."""
        bystander = self.fixture.client()
        bystander.login("bob", "bob-pw")
        self.client.mute = True
        for _ in range(59):
            self.client.advance(0.5)
            bystander.pump()
        self.assertFalse(self.client.closed)
        self.client.advance(0.5)
        received = self.client.take()
        self.assertEqual(logout_reason(received[-1]), "LOGOUT_HEARTBEAT_TIMEOUT")
        self.assertTrue(self.client.closed)
        self.client.disconnect()
        for _ in range(20):
            bystander.advance(5)
        self.assertFalse(bystander.closed)
        bystander.send(session_message(eto_pb2.PAYLOAD_PING))
        self.assertIn("eto.pong", bystander.names())

    def test_ping_pong(self) -> None:
        seq = self.client.send(session_message(eto_pb2.PAYLOAD_PING))
        self.assertEqual(seq, 2)
        self.assertEqual([describe(p) for p in self.client.take()], [("eto.pong", 3)])

    def test_clean_logout(self) -> None:
        """A client logout gets logout CONFIRMATION; the session can no longer be resumed."""
        self.client.session.send_logout(self.fixture.clock.seconds())
        self.client.pump()
        received = self.client.take()
        self.assertEqual(logout_reason(received[0]), "LOGOUT_CONFIRMATION")
        self.assertTrue(self.client.closed)
        self.client.disconnect(clean=True)
        self.assertEqual(len(self.fixture.exchange.registry), 0)
        again = self.fixture.client(self.client.state)
        self.assertEqual(logout_reason(again.login()[0]), "LOGOUT_UNKNOWN_SESSION")

    def test_timers_stop_when_the_connection_is_lost(self) -> None:
        self.client.disconnect()
        # Only the session's expiry is left.
        (expiry,) = self.fixture.clock.getDelayedCalls()
        self.assertEqual(expiry.getTime(), 600.0)


class BadInputTests(SynchronousTestCase):
    """Input that cannot be trusted closes that connection, and only that one."""

    def setUp(self) -> None:
        self.fixture = ExchangeFixture(ConnectionSettings(max_frame_size=1024))
        self.bystander = self.fixture.client()
        self.bystander.login("bob", "bob-pw")
        self.client = self.fixture.client()
        self.client.login()
        self.logs = LogCapture(self)

    def assertBystanderUnaffected(self) -> None:
        self.bystander.send(session_message(eto_pb2.PAYLOAD_PING))
        self.assertEqual(self.bystander.names(), ["eto.pong"])
        self.assertFalse(self.bystander.closed)

    def assertDropped(self, words: str) -> None:
        self.assertTrue(self.client.closed)
        self.assertIn("dropping connection of alice", self.logs.text)
        self.assertIn(words, self.logs.text)
        self.assertBystanderUnaffected()

    def test_garbage_payload(self) -> None:
        self.client.send_raw(encode_frame(b"\xff\xff\xff\xff\xff"))
        self.assertDropped("does not decode")

    def test_oversized_frame(self) -> None:
        """The announced size is refused from the header alone."""
        self.client.send_raw(encode_uleb128(10**9))
        self.assertDropped("exceeds the limit of 1024 bytes")

    def test_header_longer_than_ten_bytes(self) -> None:
        self.client.send_raw(b"\x80" * 11)
        self.assertDropped("longer than 10 bytes")

    def test_unknown_eto_type(self) -> None:
        payload = session_message(eto_pb2.PAYLOAD_NONE)
        payload.eto_payload.seq = self.client.state.next_outgoing_seq
        self.client.send_raw(encode_frame(payload.SerializeToString()))
        self.assertDropped("no known eto type")

    def test_missing_required_field(self) -> None:
        payload = Payload(type=seto_pb2.PAYLOAD_ORDER_CANCEL)
        payload.eto_payload.seq = self.client.state.next_outgoing_seq
        payload.order_cancel.reference = 1
        self.client.send_raw(encode_frame(payload.SerializePartialToString()))
        self.assertDropped("lacks required fields")

    def send_order_create(self, extra: bytes) -> None:
        """An order_create whose body has ``extra`` encoded fields appended."""
        body = seto_pb2.OrderCreate(market_id=100, contract_id=1001, side=BUY, quantity=1000, price=5000)
        payload = Payload(type=seto_pb2.PAYLOAD_ORDER_CREATE)
        payload.order_create.MergeFromString(body.SerializeToString() + extra)
        self.client.send(payload)

    def test_enum_value_the_schema_does_not_define(self) -> None:
        """tif = 99 is not read as the default (GOOD_TIL_CANCELLED): the order is refused."""
        tif = seto_pb2.OrderCreate.DESCRIPTOR.fields_by_name["tif"].number
        self.send_order_create(bytes([tif << 3, 99]))
        self.assertDropped("order_create.tif = 99 is not a value the schema defines")
        self.assertEqual(self.fixture.exchange.open_orders("alice"), [])

    def test_label_that_is_not_utf8(self) -> None:
        label = seto_pb2.OrderCreate.DESCRIPTOR.fields_by_name["label"].number
        self.send_order_create(bytes([label << 3 | 2, 4]) + b"a\xff\xfeb")
        self.assertDropped("order_create.label is not UTF-8 text")
        self.assertEqual(self.fixture.exchange.open_orders("alice"), [])
        self.assertNotIn("b'a", self.logs.text)

    def test_garbage_before_login(self) -> None:
        stranger = self.fixture.client()
        stranger.send_raw(b"\x05garbage")
        self.assertTrue(stranger.closed)
        self.assertEqual(stranger.take(), [])
        self.assertBystanderUnaffected()

    def test_nothing_more_is_read_after_the_drop(self) -> None:
        good = session_message(eto_pb2.PAYLOAD_PING)
        good.eto_payload.seq = self.client.state.next_outgoing_seq
        self.client.send_raw(b"\x80" * 11 + encode_frame(good.SerializeToString()))
        self.assertEqual(self.client.take(), [])
        self.assertTrue(self.client.closed)

    def test_an_unexpected_error_drops_only_that_connection(self) -> None:
        def broken(username: str, password: str) -> None:
            raise RuntimeError("bug")

        self.fixture.exchange.authenticate = broken  # type: ignore[method-assign,assignment]
        stranger = self.fixture.client()
        stranger.login()
        self.assertTrue(stranger.closed)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn("error processing seto.login", self.logs.text)
        self.assertBystanderUnaffected()

    def test_a_failing_request_is_logged_and_the_session_carries_on(self) -> None:
        def broken(session: object, payload: Payload) -> None:
            raise RuntimeError("bug")

        self.fixture.exchange.handle = broken  # type: ignore[method-assign,assignment]
        self.client.send_message("market_subscribe", market_id=100)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn("exchange failed to handle seto.market_subscribe from alice", self.logs.text)
        self.client.send(session_message(eto_pb2.PAYLOAD_PING))
        self.assertEqual(self.client.names(), ["eto.pong"])

    def test_a_second_login_on_a_live_connection_is_ignored(self) -> None:
        self.client.send(login_message("alice", "alice-pw"))
        self.assertEqual(self.client.take(), [])
        self.assertFalse(self.client.closed)
        self.assertIn("sent a login on a logged-in connection", self.logs.text)


class TakeoverAndResumeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fixture = ExchangeFixture()
        self.exchange = self.fixture.exchange
        self.first = self.fixture.client()
        self.first.login()

    def resume(self) -> ScriptedClient:
        """A new connection carrying on the first one's session."""
        return self.fixture.client(self.first.state)

    def test_second_login_takes_the_session_over(self) -> None:
        self.first.send_message("settings", cancel_all_on_failure=True)
        self.first.order(BUY, 10_000, 5000)
        self.first.take()
        second = self.resume()
        received = second.login()
        self.assertEqual(handler_name(received[0]), "eto.login_response")
        self.assertTrue(self.first.closed)
        self.assertFalse(second.closed)
        # The old connection's loss is not a failure of the session: orders stay.
        self.first.disconnect()
        self.assertEqual(len(self.exchange.open_orders("alice")), 1)
        (session,) = self.exchange.registry
        self.assertIs(session.connection, second.protocol)
        second.send(session_message(eto_pb2.PAYLOAD_PING))
        self.assertEqual(second.names(), ["eto.pong"])

    def test_resume_continues_both_seqs(self) -> None:
        """The resumed login_response comes at the exchange's next seq; reset is what it expects."""
        self.first.disconnect()
        second = self.resume()
        received = second.login()
        self.assertEqual([describe(p) for p in received], [("eto.login_response", 3),
                                                          ("seto.throttle_limits_changed", 4)])
        self.assertEqual(received[0].eto_payload.login_response.reset, 3)
        self.assertEqual(received[0].eto_payload.login_response.session, self.first.state.session_id)
        second.send(session_message(eto_pb2.PAYLOAD_PING))
        self.assertEqual([describe(p) for p in second.take()], [("eto.pong", 5)])

    def test_payloads_sent_while_detached_arrive_on_resume(self) -> None:
        """Exchange → client: what happened while the client was away arrives once it resumes."""
        self.first.order(SELL, 10_000, 5000)
        self.first.take()
        self.first.disconnect()
        bob = self.fixture.client()
        bob.login("bob", "bob-pw")
        bob.order(BUY, 10_000, 5000)
        second = self.resume()
        received = second.login()
        names = [handler_name(p) for p in received]
        self.assertEqual(names[0], "eto.login_response")
        self.assertEqual(names.count("seto.order_executed"), 1)
        # Each payload is delivered once, in seq order (the login response first, out of turn).
        delivered = [p.eto_payload.seq for p in received[1:]]
        self.assertEqual(sorted(delivered), delivered)

    def test_client_payloads_lost_before_the_drop_are_resent(self) -> None:
        """Client → exchange: an order that never arrived is resent from the client's log and acted on once."""
        self.first.mute = True
        self.first.order(BUY, 10_000, 4000)
        self.first.disconnect()
        self.assertEqual(self.exchange.open_orders("alice"), [])
        second = self.resume()
        received = second.login()
        self.assertEqual(received[0].eto_payload.login_response.reset, 2)
        self.assertIn("seto.order_accepted", [handler_name(p) for p in received])
        self.assertEqual(len(self.exchange.open_orders("alice")), 1)
        third = self.fixture.client(self.first.state)
        third.login()
        self.assertEqual(len(self.exchange.open_orders("alice")), 1)

    def test_session_expires_after_the_retention_window(self) -> None:
        fixture = ExchangeFixture(settings=ExchangeSettings(retention=60.0))
        first = fixture.client()
        first.login()
        first.disconnect()
        fixture.clock.advance(59)
        self.assertEqual(len(fixture.exchange.registry), 1)
        fixture.clock.advance(1)
        self.assertEqual(len(fixture.exchange.registry), 0)
        second = fixture.client(first.state)
        self.assertEqual(logout_reason(second.login()[0]), "LOGOUT_UNKNOWN_SESSION")

    def test_resume_stops_the_expiry(self) -> None:
        self.first.disconnect()
        second = self.resume()
        second.login()
        for _ in range(140):
            second.advance(5)
        self.assertEqual(len(self.exchange.registry), 1)
        self.assertFalse(second.closed)


def replay_request(seq: int) -> Payload:
    payload = session_message(eto_pb2.PAYLOAD_REPLAY)
    payload.eto_payload.replay.seq = seq
    return payload


class LostHistoryTests(SynchronousTestCase):
    """Gapfills never stand in for what the client missed: the session ends instead."""

    def setUp(self) -> None:
        self.fixture = ExchangeFixture(settings=ExchangeSettings(sent_log_size=6))
        self.exchange = self.fixture.exchange
        self.first = self.fixture.client()
        self.first.login()  # login_response 1, throttle_limits_changed 2

    def events_while_detached(self, orders: int) -> None:
        """Each order placed for alice is two payloads to her session: accepted and balance_changed."""
        self.first.disconnect()
        for price in range(2000, 2000 + orders):
            self.exchange.place_order("alice", 100, 1001, BUY, 1000, price)

    def test_resume_after_a_full_log_of_events_is_accepted(self) -> None:
        # Seqs 3..6, then login_response and throttle_limits_changed at 7 and 8: 3..8 all fit.
        self.events_while_detached(2)
        received = self.fixture.client(self.first.state).login()
        self.assertEqual([handler_name(p) for p in received].count("seto.order_accepted"), 2)

    def test_resume_gets_more_events_than_its_sent_log_holds(self) -> None:
        # The missed events come from the account's history, not from copies in the session's log.
        self.events_while_detached(3)
        received = self.fixture.client(self.first.state).login()
        self.assertEqual(handler_name(received[0]), "eto.login_response")
        self.assertEqual([handler_name(p) for p in received].count("seto.order_accepted"), 3)

    def test_resume_after_the_account_history_dropped_events_is_refused(self) -> None:
        fixture = ExchangeFixture(accounts=two_accounts(history_limit=4))
        first = fixture.client()
        first.login()
        first.disconnect()
        for price in range(2000, 2003):  # six account events: the history keeps four
            fixture.exchange.place_order("alice", 100, 1001, BUY, 1000, price)
        resumed = fixture.client(first.state)
        (refusal,) = resumed.login()
        self.assertEqual(logout_reason(refusal), "LOGOUT_UNKNOWN_SESSION")
        self.assertTrue(resumed.closed)
        self.assertEqual(len(fixture.exchange.registry), 0)

    def test_replay_request_below_the_log_ends_the_session(self) -> None:
        logs = LogCapture(self)
        self.first.send_message("settings", cancel_all_on_failure=True)
        self.first.order(BUY, 1000, 2000)
        self.first.take()  # settings_accepted 3, order_accepted 4, balance_changed 5
        for _ in range(3):
            self.first.send(session_message(eto_pb2.PAYLOAD_PING))  # pongs 6..8: the log holds 3..8
        self.first.take()
        self.first.send(replay_request(3))
        self.assertEqual(self.first.take(), [])
        self.assertEqual([p for p in self.first.wire if p.eto_payload.is_replay][0].eto_payload.seq, 3)
        self.first.send(replay_request(2))
        (logout,) = self.first.take()
        self.assertEqual(logout_reason(logout), "LOGOUT_UNKNOWN_SESSION")
        self.assertNotIn("eto.gapfill", [handler_name(p) for p in self.first.wire])
        self.assertTrue(self.first.closed)
        self.assertEqual(len(self.exchange.registry), 0)
        self.assertIn("asked for a replay from 2, the sent log starts at 3: ending the session", logs.text)
        # Not a clean logout: cancel_all_on_failure applies.
        self.first.disconnect()
        self.assertEqual(self.exchange.open_orders("alice"), [])


class ReplayAmplificationTests(SynchronousTestCase):
    """A replay request overlapping one answered on the connection moments ago is ignored."""

    def setUp(self) -> None:
        self.fixture = ExchangeFixture(ConnectionSettings(replay_interval=5.0))
        self.client = self.fixture.client()
        self.client.login()
        for _ in range(3):
            self.client.send(session_message(eto_pb2.PAYLOAD_PING))  # pongs 3, 4, 5
        self.client.take()

    def replayed(self) -> list[int]:
        """The seqs of the replayed payloads the exchange wrote, then forget them."""
        seqs = [p.eto_payload.seq for p in self.client.wire if p.eto_payload.is_replay]
        self.client.wire.clear()
        return seqs

    def test_repeated_requests_are_ignored(self) -> None:
        logs = LogCapture(self)
        self.client.send(replay_request(1))
        self.assertEqual(self.replayed(), [1, 2, 3, 4, 5])
        for _ in range(50):
            self.client.send(replay_request(1))
        self.client.send(replay_request(4))
        self.assertEqual(self.replayed(), [])
        # One line for the 51 ignored requests (the first), not one each: a flood of them was a flood of lines.
        self.assertEqual(logs.text.count("asked again for a replay"), 1)
        self.assertIn("asked again for a replay from 1 within 5.0s: ignored, all of it was just resent; further "
                      "requests that resend nothing are ignored without a line until one does", logs.text)
        # The ignored requests still count as received: the seqs carry on.
        self.client.send(session_message(eto_pb2.PAYLOAD_PING))
        self.assertEqual([describe(p) for p in self.client.take()], [("eto.pong", 6)])
        self.assertFalse(self.client.closed)

    def test_a_later_range_is_answered(self) -> None:
        self.client.send(replay_request(1))
        self.replayed()
        self.client.send(session_message(eto_pb2.PAYLOAD_PING))  # pong 6
        self.client.send(replay_request(6))
        self.assertEqual(self.replayed(), [6])

    def test_what_a_recent_resend_did_not_cover_is_resent(self) -> None:
        self.client.send(replay_request(1))
        self.assertEqual(self.replayed(), [1, 2, 3, 4, 5])
        for _ in range(2):
            self.client.send(session_message(eto_pb2.PAYLOAD_PING))  # pongs 6, 7
        self.client.send(replay_request(3))
        self.assertEqual(self.replayed(), [6, 7])

    def test_a_bogus_request_does_not_block_a_real_one(self) -> None:
        logs = LogCapture(self)
        for bogus in (0, 1000) * 20:
            self.client.send(replay_request(bogus))
        self.assertEqual(self.replayed(), [])
        # One line naming the client for the 40, not one each (nor one naming nobody).
        self.assertEqual([line for line in logs.text.splitlines() if "replay" in line],
                         ["alice asked for a replay from 0, but the seqs sent are 1 to 5: ignored; further requests "
                          "that resend nothing are ignored without a line until one does"])
        self.client.send(replay_request(2))
        self.assertEqual(self.replayed(), [2, 3, 4, 5])
        self.assertFalse(self.client.closed)

    def test_answered_again_after_the_interval(self) -> None:
        self.client.send(replay_request(1))
        self.replayed()
        self.client.clock.advance(5.0)
        self.client.send(replay_request(3))
        self.assertEqual(self.replayed()[:3], [3, 4, 5])


class FrameLimitTests(SynchronousTestCase):
    def test_default_frame_limit_is_64_kib(self) -> None:
        fixture = ExchangeFixture()
        client = fixture.client()
        client.login()
        client.send_raw(encode_uleb128(64 * 1024 + 1))
        self.assertTrue(client.closed)


class SecretsTests(SynchronousTestCase):
    def test_no_session_id_or_password_in_logs_or_reprs(self) -> None:
        logs = LogCapture(self)
        fixture = ExchangeFixture(ConnectionSettings(peer_timeout=20.0))
        client = fixture.client()
        client.login()
        session_id = client.state.session_id
        assert session_id is not None
        bad = fixture.client()
        bad.login(password="not-the-password")
        client.disconnect()
        resumed = fixture.client(client.state)
        resumed.login()
        resumed.mute = True
        resumed.advance(30)
        (session,) = fixture.exchange.registry
        for text in (logs.text, repr(session), repr(resumed.protocol), repr(fixture.exchange.registry)):
            self.assertNotIn(session_id, text)
            self.assertNotIn("alice-pw", text)
            self.assertNotIn("not-the-password", text)
        self.assertIn("LOGOUT_UNAUTHORISED", logs.text)


class SessionBoundsTests(SynchronousTestCase):
    """A client that starts a new session at every reconnect cannot make the exchange hold them all."""

    def churn(self, fixture: ExchangeFixture, count: int) -> list[ScriptedClient]:
        """Log in ``count`` new sessions for alice, each connection then dropped."""
        clients = []
        for _ in range(count):
            client = fixture.client()
            client.login()
            client.disconnect()
            clients.append(client)
        return clients

    def test_sessions_per_account_are_capped(self) -> None:
        fixture = ExchangeFixture()
        clients = self.churn(fixture, 25)
        self.assertEqual(len(fixture.exchange.registry), 10)
        # The longest detached ones made way: they cannot be resumed; the latest can.
        self.assertEqual(logout_reason(fixture.client(clients[0].state).login()[0]), "LOGOUT_UNKNOWN_SESSION")
        self.assertEqual(handler_name(fixture.client(clients[-1].state).login()[0]), "eto.login_response")

    def test_a_new_session_beyond_the_cap_of_connected_ones_is_refused(self) -> None:
        fixture = ExchangeFixture(settings=ExchangeSettings(sessions_per_account=2))
        for _ in range(2):
            fixture.client().login()
        refused = fixture.client()
        self.assertEqual(logout_reason(refused.login()[0]), "LOGOUT_SERVICE_TEMPORARILY_UNAVAILABLE")
        self.assertTrue(refused.closed)
        self.assertEqual(handler_name(fixture.client().login("bob", "bob-pw")[0]), "eto.login_response")

    def test_detached_sessions_are_not_sent_copies_of_account_events(self) -> None:
        fixture = ExchangeFixture()
        self.churn(fixture, 5)
        held = fixture.exchange.registry.detached_bytes
        for price in range(2000, 2100):
            fixture.exchange.place_order("alice", 100, 1001, BUY, 1000, price)
        self.assertEqual(fixture.exchange.registry.detached_bytes, held)
        self.assertEqual({s.state.next_outgoing_seq for s in fixture.exchange.registry}, {3})

    def test_detached_sessions_stay_within_the_budget(self) -> None:
        fixture = ExchangeFixture(settings=ExchangeSettings(detached_budget=250_000))
        for price in range(2000, 2300):
            fixture.exchange.place_order("alice", 100, 1001, BUY, 1000, price)
        for _ in range(6):
            # Each new session is sent the 600 account events: a long sent log to keep.
            client = fixture.client()
            client.login(account_sequence=0)
            client.advance(0)  # the rest of the replay, a turn at a time
            client.disconnect()
        registry = fixture.exchange.registry
        self.assertLessEqual(registry.detached_bytes, 250_000)
        self.assertLess(len(registry), 6)
        self.assertGreater(len(registry), 0)


class FairnessTests(SynchronousTestCase):
    """A client that writes thousands of payloads at once holds the exchange for one turn's worth."""

    def test_a_flood_is_acted_on_a_turn_at_a_time(self) -> None:
        unthrottled = ExchangeSettings(average_rate_ps=10**6, burst_size=10**6)
        fixture = ExchangeFixture(ConnectionSettings(frames_per_turn=10), settings=unthrottled)
        flooder = fixture.client()
        flooder.login()
        honest = fixture.client()
        honest.login("bob", "bob-pw")
        now = fixture.clock.seconds()
        for _ in range(45):
            flooder.session.send(session_message(eto_pb2.PAYLOAD_PING), now)
        flooder.protocol.dataReceived(flooder.session.data_to_send())
        self.assertEqual(flooder.names(), ["eto.pong"] * 10)
        self.assertEqual(flooder.transport.producerState, "paused")
        # The other connection is served between the flooder's turns.
        honest.send(session_message(eto_pb2.PAYLOAD_PING))
        self.assertEqual(honest.names(), ["eto.pong"])
        pongs = 0
        for _ in range(5):
            fixture.clock.advance(0)
            pongs += len(flooder.names())
        self.assertEqual(pongs, 35)
        self.assertEqual(flooder.transport.producerState, "producing")
        self.assertFalse(flooder.closed)

    def test_frames_before_a_bad_header_are_acted_on_across_turns(self) -> None:
        fixture = ExchangeFixture(ConnectionSettings(frames_per_turn=2))
        client = fixture.client()
        client.login()
        now = fixture.clock.seconds()
        for _ in range(3):
            client.session.send(session_message(eto_pb2.PAYLOAD_PING), now)
        client.protocol.dataReceived(client.session.data_to_send() + b"\x80" * 11)
        fixture.clock.advance(0)
        self.assertEqual(client.names(), ["eto.pong"] * 3)
        self.assertTrue(client.closed)
