"""The faults of issue 7: each test failed on the code before its fix."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import errors
from smarkets_twisted.proto import eto_pb2
from smarkets_twisted.settings import ClientSettings
from tests.scripted import make_factory
from tests.test_client import ClientTestCase, result_of


class PongPairingTests(ClientTestCase):
    """Point 1: each pong settles the ping it answers, whatever path it took."""

    def test_a_pong_replayed_to_fill_a_gap_settles_its_own_ping(self) -> None:
        self.connect_and_login()
        first = result_of(self.factory.ping())
        # The exchange reads the ping and answers, but the pong is lost on the way.
        session = self.exchange.session
        assert session is not None and self.exchange.transport is not None
        for frame in self.exchange.deframer.feed(self.exchange.transport.value()):
            session.receive(frame, self.clock.seconds())
        self.exchange.transport.clear()
        session.data_to_send()
        self.clock.advance(0.25)
        self.exchange.send_session(eto_pb2.PAYLOAD_HEARTBEAT)  # the client sees a gap...
        self.sent()  # ...asks for a replay, and gets the pong back, replayed
        self.assertEqual(first, [0.25])
        self.clock.advance(10)
        second = result_of(self.factory.ping())
        self.clock.advance(0.25)
        self.sent()
        self.assertEqual(second, [0.25])

    def test_a_ping_lost_in_flight_is_answered_after_the_resume_and_pairing_holds(self) -> None:
        self.connect_and_login()
        first = result_of(self.factory.ping())
        self.exchange.transport.clear()  # never reached the exchange
        self.exchange.disconnect()
        self.assertEqual(first, [])
        self.clock.advance(1)
        self.protocol = self.exchange.connect(self.factory)
        self.exchange.accept_login()  # its reset makes the client resend the ping
        self.sent()
        self.assertEqual(first, [1.0])
        for _ in range(3):
            rtt = result_of(self.factory.ping())
            self.clock.advance(0.25)
            self.sent()
            self.assertEqual(rtt, [0.25])

    def test_ping_has_a_default_timeout_and_a_late_pong_keeps_the_pairing(self) -> None:
        self.factory = make_factory(self.clock, peer_timeout=60.0)
        self.connect_and_login()
        late = result_of(self.factory.ping())
        self.clock.advance(30.0)
        late[0].trap(errors.RequestTimeout)
        self.sent()  # its pong, late
        second = result_of(self.factory.ping())
        self.clock.advance(0.25)
        self.sent()
        self.assertEqual(second, [0.25])

    def test_a_ping_whose_pong_cannot_come_fails_with_session_lost(self) -> None:
        self.connect_and_login()
        rtt = result_of(self.factory.ping())
        self.exchange.session.send_logout(self.clock.seconds(), eto_pb2.LOGOUT_UNKNOWN_SESSION)
        self.exchange.flush()
        rtt[0].trap(errors.SessionLost)


class SettingsTests(SynchronousTestCase):
    """Point 9: settings that cannot be misread."""

    def test_immutable_with_no_unknown_attributes(self) -> None:
        settings = ClientSettings(username="u", password="p")
        with self.assertRaises(AttributeError):
            settings.host = "elsewhere"  # type: ignore[attr-defined]
        with self.assertRaises(AttributeError):
            settings.username = "other"  # type: ignore[misc]

    def test_bad_values_fail_at_construction_naming_the_field(self) -> None:
        bad: list[dict[str, Any]] = [
            {"peer_timeout": 0},
            {"heartbeat_interval": -1.0},
            {"request_timeout": "10"},
            {"login_timeout": None},
            {"max_frame_size": 1.5},
            {"sent_log_size": 0},
            {"password": b"bytes"},
        ]
        for fields in bad:
            with self.assertRaises(ValueError) as caught:
                ClientSettings(username="u", **fields)
            self.assertIn(next(iter(fields)), str(caught.exception))
        self.assertRaises(ValueError, ClientSettings)
        self.assertRaises(ValueError, ClientSettings, username="u", cookie=b"a", token=b"b")

    def test_a_str_cookie_or_token_is_sent_as_bytes(self) -> None:
        from twisted.internet.task import Clock

        from tests.scripted import ScriptedExchange

        for settings in ({"cookie": "tok-1"}, {"token": "tok-1"}, {"token": b"tok-1"}):
            clock = Clock()
            exchange = ScriptedExchange(clock)
            exchange.connect(make_factory(clock, username=None, password=None, **settings))
            (login,) = exchange.received()
            self.assertEqual(login.login.cookie, b"tok-1")
        self.assertNotIn("tok-1", repr(ClientSettings(token="tok-1")))
