"""A scripted exchange for client tests: a Session(Role.EXCHANGE) over StringTransport."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.framing import Deframer, encode_frame
from smarkets_twisted.payloads import Payload, application_message, handler_name, parse_payload, session_message
from smarkets_twisted.proto import eto_pb2
from smarkets_twisted.protocol import SmarketsClientProtocol
from smarkets_twisted.session import Role, Session, SessionState
from smarkets_twisted.settings import ClientSettings

SESSION_ID = "scripted-session-token-0123456789"


class ScriptedExchange:
    """Plays the exchange by hand: the test decides every answer."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.state = SessionState()
        self.session: Session | None = None
        self.protocol: SmarketsClientProtocol | None = None
        self.transport: StringTransport | None = None
        self.deframer = Deframer()

    def connect(self, factory: SmarketsClientFactory) -> SmarketsClientProtocol:
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        self.protocol, self.transport, self.deframer = protocol, transport, Deframer()
        protocol.makeConnection(transport)
        return protocol

    def received(self) -> list[Payload]:
        """Every payload the client wrote since the last call, parsed."""
        assert self.transport is not None
        data = self.transport.value()
        self.transport.clear()
        return [parse_payload(frame) for frame in self.deframer.feed(data)]

    def received_names(self) -> list[str]:
        return [handler_name(p) for p in self.received()]

    def accept_login(
        self, login: Payload | None = None, throttle: tuple[int, int, int] | None = (500, 1000, 200)
    ) -> None:
        """Answer the client's login as the exchange would: login_response, then the throttle limits."""
        if login is None:
            (login,) = self.received()
        assert handler_name(login) == "seto.login", handler_name(login)
        if self.state.session_id is None:
            self.state.session_id = SESSION_ID
        self.session = Session(self.state, Role.EXCHANGE, now=self.clock.seconds())
        self.session.accept_login(login, self.clock.seconds(), email="user@example.com", account_id=42)
        if throttle is not None:
            rate, burst, tick = throttle
            self.send(application_message("throttle_limits_changed", average_rate_ps=rate, burst_size=burst,
                                          tick_ms=tick))
        self.flush()

    def refuse_login(self, reason: int) -> None:
        self.received()
        refusal = Session(SessionState(), Role.EXCHANGE, now=self.clock.seconds())
        refusal.send_logout(self.clock.seconds(), reason)
        self.deliver(refusal.data_to_send())

    def send(self, payload: Payload) -> int:
        """Send one payload through the exchange's session (sequenced)."""
        assert self.session is not None
        seq = self.session.send(payload, self.clock.seconds())
        self.flush()
        return seq

    def send_app(self, field: str, **fields: Any) -> int:
        return self.send(application_message(field, **fields))

    def send_session(self, eto_type: int) -> int:
        return self.send(session_message(eto_type))

    def numbered(self, payloads: list[Payload]) -> list[bytes]:
        """The payloads serialized as the exchange would send them next (seqs from its next one), unsent:
        a stream to feed ``dataReceived`` again and again."""
        sender = Session(SessionState(), Role.EXCHANGE, now=0.0)
        sender.state.next_outgoing_seq = self.state.next_outgoing_seq
        return [sender.state.sent.get(sender.send(payload, 0.0)) or b"" for payload in payloads]

    def process(self) -> list[Payload]:
        """Run what the client wrote through the exchange's session; return what it delivers."""
        assert self.session is not None and self.transport is not None
        data = self.transport.value()
        self.transport.clear()
        delivered = []
        for frame in self.deframer.feed(data):
            delivered.extend(self.session.receive(frame, self.clock.seconds()))
        self.flush()
        return delivered

    def flush(self) -> None:
        if self.session is not None:
            self.deliver(self.session.data_to_send())

    def deliver(self, data: bytes) -> None:
        if data and self.protocol is not None and self.protocol.is_connected:
            self.protocol.dataReceived(data)

    def deliver_frame(self, payload_bytes: bytes) -> None:
        self.deliver(encode_frame(payload_bytes))

    def disconnect(self) -> None:
        assert self.protocol is not None and self.transport is not None
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionLost("test")))


def make_factory(clock: Clock, **settings: Any) -> SmarketsClientFactory:
    settings.setdefault("username", "user")
    settings.setdefault("password", "hunter2-secret")
    return SmarketsClientFactory(ClientSettings(**settings), clock=clock)


def logged_in(
    clock: Clock, throttle: tuple[int, int, int] | None = (500, 1000, 200), **settings: Any
) -> tuple[ScriptedExchange, SmarketsClientFactory, SmarketsClientProtocol]:
    """A client factory logged in to a ScriptedExchange, and its protocol: where benches start from."""
    exchange = ScriptedExchange(clock)
    factory = make_factory(clock, **settings)
    protocol = exchange.connect(factory)
    exchange.accept_login(throttle=throttle)
    return exchange, factory, protocol


def logout_reason(payload: Payload) -> int | None:
    logout = payload.eto_payload.logout
    return logout.reason if logout.HasField("reason") else None


__all__ = ["ScriptedExchange", "make_factory", "logout_reason", "eto_pb2"]
