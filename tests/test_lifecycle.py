"""The connection's transition table (`lifecycle.NEXT`) against the protocol's behaviour.

Every event the exchange, the application or the TLS layer can bring is
fired in every phase a connection can be in, through the real entry points
(frames from a scripted exchange, `send_logout`, `handshakeCompleted`): the
phase that follows is the table's, and an event the table lacks changes
nothing, raises nothing and is logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from smarkets_twisted import errors
from smarkets_twisted.handlers import ClientListener
from smarkets_twisted.lifecycle import NEXT, Event, Intent, Phase
from smarkets_twisted.payloads import handler_name, session_message
from smarkets_twisted.proto import eto_pb2
from smarkets_twisted.protocol import SmarketsClientProtocol
from smarkets_twisted.session import Role, Session
from tests.scripted import SESSION_ID, ScriptedExchange, make_factory
from tests.test_client import result_of
from tests.test_faults import ServiceTestCase


@implementer(ISSLTransport)
class _TLSTransport(StringTransport):
    """A transport the protocol takes for TLS (its login waits for `handshakeCompleted`), without a handshake."""

    def getHandle(self) -> None:
        return None


class _Told(ClientListener, list[str]):
    """What the factory told its listeners, in order."""

    def logged_in(self, resumed: bool) -> None:
        self.append("logged_in")

    def connection_lost(self, reason: Exception) -> None:
        self.append("connection_lost")

    def session_ended(self, reason: Exception) -> None:
        self.append("session_ended")


class LifecycleTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = make_factory(self.clock)
        self.exchange = ScriptedExchange(self.clock)
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)
        self.told = _Told()
        self.factory.add_listener(self.told)

    def warnings(self) -> list[str]:
        return [formatEvent(e) for e in self.logged if e.get("log_level") is LogLevel.warn]

    # Reaching each phase

    def connect(self, tls: bool = False) -> SmarketsClientProtocol:
        protocol = self.factory.buildProtocol(None)
        transport = _TLSTransport() if tls else StringTransport()
        self.exchange.protocol, self.exchange.transport = protocol, transport
        protocol.makeConnection(transport)
        return protocol

    def exchange_sends(self, eto_type: int, **fields: Any) -> None:
        """A session payload from the exchange, at the seq the client expects next."""
        if self.exchange.session is None:
            self.exchange.session = Session(self.exchange.state, Role.EXCHANGE, now=self.clock.seconds())
        payload = session_message(eto_type)
        if eto_type == eto_pb2.PAYLOAD_LOGIN_RESPONSE:
            payload.eto_payload.login_response.session = SESSION_ID
        if eto_type == eto_pb2.PAYLOAD_LOGOUT:
            payload.eto_payload.logout.reason = fields["reason"]
        self.exchange.send(payload)

    def reach(self, phase: Phase) -> SmarketsClientProtocol:
        if phase is Phase.CONNECTING:
            return self.factory.buildProtocol(None)
        tls = phase in (Phase.HANDSHAKING, Phase.LOGOUT_AFTER_HANDSHAKE)
        protocol = self.connect(tls)
        if phase in (Phase.LOGOUT_AFTER_HANDSHAKE, Phase.LOGGING_IN_THEN_OUT):
            protocol.send_logout().addErrback(lambda _: None)
        elif phase not in (Phase.HANDSHAKING, Phase.LOGGING_IN):
            self.exchange.accept_login()
            if phase in (Phase.LOGGING_OUT, Phase.CONFIRMED):
                protocol.send_logout().addErrback(lambda _: None)
            if phase is Phase.CONFIRMED:
                self.exchange_sends(eto_pb2.PAYLOAD_LOGOUT, reason=eto_pb2.LOGOUT_CONFIRMATION)
            elif phase is Phase.CLOSING:
                self.exchange_sends(eto_pb2.PAYLOAD_LOGOUT, reason=eto_pb2.LOGOUT_HEARTBEAT_TIMEOUT)
            elif phase is Phase.DROPPED:
                self.exchange.deliver(b"\xff" * 11)  # a frame header longer than ULEB128 allows
            elif phase is Phase.CLOSED:
                self.exchange.disconnect()
        self.assertIs(protocol.phase, phase)
        return protocol

    # Firing each event

    def fire(self, protocol: SmarketsClientProtocol, event: Event) -> None:
        fire: dict[Event, Callable[[], object]] = {
            Event.CONNECTED: lambda: protocol.makeConnection(_TLSTransport()),
            Event.VERIFIED: protocol.handshakeCompleted,
            Event.LOGIN_RESPONSE: lambda: self.exchange_sends(eto_pb2.PAYLOAD_LOGIN_RESPONSE),
            Event.CONFIRMATION: lambda: self.exchange_sends(eto_pb2.PAYLOAD_LOGOUT,
                                                            reason=eto_pb2.LOGOUT_CONFIRMATION),
            Event.LOGOUT: lambda: self.exchange_sends(eto_pb2.PAYLOAD_LOGOUT, reason=eto_pb2.LOGOUT_DOWNTIME),
            Event.LOGOUT_ASKED: lambda: protocol.send_logout().addErrback(lambda _: None),
            Event.DROP: lambda: self.exchange.deliver(b"\xff" * 11),
            Event.LOST: self.exchange.disconnect,
        }
        fire[event]()


class TransitionTableTests(LifecycleTestCase):
    def test_every_event_in_every_phase_moves_as_the_table_says(self) -> None:
        wrong = []
        for phase in Phase:
            for event in Event:
                if (event is Event.CONNECTED) != (phase is Phase.CONNECTING) or (
                        event is Event.LOST and phase in (Phase.CONNECTING, Phase.CLOSED)):
                    continue  # Twisted connects a protocol once and loses it once
                self.setUp()
                protocol = self.reach(phase)
                self.fire(protocol, event)
                expected = NEXT.get((phase, event), phase)
                if protocol.phase is not expected:
                    wrong.append(f"{event.value} while {phase.value}: {protocol.phase.value}, not {expected.value}")
        self.assertEqual(wrong, [])

    def test_every_phase_is_reached_and_left(self) -> None:
        reached = {after for after in NEXT.values()} | {Phase.CONNECTING}
        left = {phase for phase, _ in NEXT}
        self.assertEqual(reached, set(Phase))
        self.assertEqual(left, set(Phase) - {Phase.CLOSED})


class IllegalEventTests(LifecycleTestCase):
    def test_a_confirmation_before_the_login_answer_refuses_the_login(self) -> None:
        protocol = self.reach(Phase.LOGGING_IN)
        login = result_of(protocol.login())
        self.exchange_sends(eto_pb2.PAYLOAD_LOGOUT, reason=eto_pb2.LOGOUT_CONFIRMATION)
        self.assertEqual(login[0].trap(errors.LoginError) and login[0].value.reason, eto_pb2.LOGOUT_CONFIRMATION)
        self.assertTrue(self.exchange.transport and self.exchange.transport.disconnecting)

    def test_a_second_login_response_is_ignored_with_a_warning(self) -> None:
        protocol = self.reach(Phase.LOGGED_IN)
        self.exchange_sends(eto_pb2.PAYLOAD_LOGIN_RESPONSE)
        self.assertIs(protocol.phase, Phase.LOGGED_IN)
        self.assertEqual(list(self.told), ["logged_in"])
        self.assertIn("login_response while logged in: ignored", self.warnings())

    def test_a_login_response_before_the_login_is_ignored(self) -> None:
        protocol = self.reach(Phase.HANDSHAKING)
        login = result_of(protocol.login())
        self.exchange_sends(eto_pb2.PAYLOAD_LOGIN_RESPONSE)
        self.assertEqual((protocol.phase, login, self.factory.current), (Phase.HANDSHAKING, [], None))
        self.assertIn("login_response while handshaking: ignored", self.warnings())

    def test_a_logout_asked_for_twice_sends_one_and_the_confirmation_answers_both(self) -> None:
        self.reach(Phase.LOGGED_IN)
        first, second = result_of(self.factory.logout()), result_of(self.factory.logout())
        self.assertEqual(self.exchange.received_names(), ["eto.logout"])
        self.exchange_sends(eto_pb2.PAYLOAD_LOGOUT, reason=eto_pb2.LOGOUT_CONFIRMATION)
        self.exchange.disconnect()
        self.assertEqual((first, second), ([None], [None]))

    def test_a_logout_asked_for_as_the_exchange_closes_fails_unconfirmed_and_sends_nothing(self) -> None:
        protocol = self.reach(Phase.CLOSING)
        assert self.exchange.transport is not None
        self.exchange.transport.clear()
        done = result_of(protocol.send_logout())
        self.assertEqual(self.exchange.transport.value(), b"")
        self.exchange.disconnect()
        done[0].trap(errors.LogoutUnconfirmed)

    def test_a_logout_after_the_confirmation_is_ignored_and_the_session_ends_once(self) -> None:
        self.reach(Phase.LOGGED_IN)
        done = result_of(self.factory.logout())
        self.exchange_sends(eto_pb2.PAYLOAD_LOGOUT, reason=eto_pb2.LOGOUT_CONFIRMATION)
        self.exchange_sends(eto_pb2.PAYLOAD_LOGOUT, reason=eto_pb2.LOGOUT_DOWNTIME)
        self.exchange.disconnect()
        self.assertEqual(done, [None])
        self.assertEqual(list(self.told), ["logged_in", "session_ended", "connection_lost"])
        self.assertIn("logout while logout confirmed: ignored", self.warnings())

    def test_nothing_is_read_after_a_drop(self) -> None:
        protocol = self.reach(Phase.DROPPED)
        before = self.factory.state.next_incoming_seq
        protocol.dataReceived(b"")
        assert self.exchange.session is not None
        self.exchange.session.send_heartbeat(self.clock.seconds())
        protocol.dataReceived(self.exchange.session.data_to_send())
        self.assertEqual(self.factory.state.next_incoming_seq, before)


class LogoutDuringLoginTests(LifecycleTestCase):
    """A logout asked for before the login was answered ends the session, however the connection ends."""

    def test_the_connection_lost_before_the_login_answer(self) -> None:
        self.reach(Phase.LOGGING_IN)
        done = result_of(self.factory.logout())
        self.exchange.disconnect()
        done[0].trap(errors.LogoutUnconfirmed)
        self.failureResultOf(self.factory.whenLoggedIn(), errors.SessionLost)

    def test_the_login_timed_out(self) -> None:
        self.reach(Phase.LOGGING_IN)
        done = result_of(self.factory.logout())
        self.clock.advance(self.factory.config.login_timeout)
        self.exchange.disconnect()
        done[0].trap(errors.LogoutUnconfirmed)
        self.failureResultOf(self.factory.whenLoggedIn(), errors.SessionLost)

    def test_the_login_answered_then_the_logout_confirmed(self) -> None:
        self.reach(Phase.LOGGING_IN)
        done = result_of(self.factory.logout())
        (login, logout) = self.exchange.received()
        self.assertEqual(handler_name(logout), "eto.logout")
        self.exchange.accept_login(login)
        self.exchange_sends(eto_pb2.PAYLOAD_LOGOUT, reason=eto_pb2.LOGOUT_CONFIRMATION)
        self.exchange.disconnect()
        self.assertEqual(done, [None])
        self.failureResultOf(self.factory.whenLoggedIn(), errors.SessionLost)


class ServiceLogoutDuringLoginTests(ServiceTestCase):
    def test_a_logout_asked_for_while_logging_in_is_not_followed_by_a_reconnect(self) -> None:
        self.service.startService()  # connected: the login is written, not yet delivered
        done = result_of(self.service.logout())
        connection = self.market.connections[-1]
        connection.pump.clientIO.getOutBuffer()  # neither the login nor the logout reaches the exchange
        connection.drop()
        done[0].trap(errors.LogoutUnconfirmed)
        attempts = self.endpoint.attempts
        self.market.advance(60)
        self.assertEqual(self.endpoint.attempts, attempts)
        self.assertFalse(self.service.connections.running)
        self.failureResultOf(self.factory.whenLoggedIn(), errors.SessionLost)


class IntentTests(LifecycleTestCase):
    """The factory's `Intent`: the session ends once, and a login answered after it is not taken up."""

    def test_a_login_answered_after_a_stop_is_closed_and_forgotten(self) -> None:
        protocol = self.reach(Phase.LOGGING_IN)
        self.factory.stop()
        self.exchange.accept_login()
        self.assertIsNone(self.factory.current)
        self.assertIsNone(self.factory.state.session_id)
        self.assertTrue(self.exchange.transport and self.exchange.transport.disconnecting)
        self.assertEqual(list(self.told), ["session_ended"])
        self.assertIs(protocol.phase, Phase.LOGGED_IN)
        self.exchange.disconnect()
        self.failureResultOf(self.factory.whenLoggedIn(), errors.SessionLost)

    def test_ending_again_changes_nothing(self) -> None:
        self.reach(Phase.LOGGED_IN)
        self.factory.stop()
        self.assertIs(self.factory.intent, Intent.ENDED)
        self.successResultOf(self.factory.logout())
        self.factory.stop()
        self.assertEqual(list(self.told), ["logged_in", "session_ended"])
        self.assertEqual(str(self.factory.ended), "the client was stopped")

    def test_connecting_again_wants_a_session_again(self) -> None:
        self.reach(Phase.LOGGED_IN)
        done = result_of(self.factory.logout())
        self.assertIs(self.factory.intent, Intent.LOGGING_OUT)
        self.exchange.disconnect()
        done[0].trap(errors.LogoutUnconfirmed)
        self.assertIs(self.factory.intent, Intent.ENDED)
        self.connect()
        self.assertIs(self.factory.intent, Intent.WANTED)
        self.assertIsNone(self.factory.ended)
