"""A hand-driven client for exchange tests: a Session(Role.CLIENT) wired to an ExchangeProtocol.

The exchange side is real (ExchangeProtocol over a StringTransport); the
client side is the sans-io Session, so that a test decides every byte and
every seq the client sends.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from smarkets_twisted.exchange.accounts import DEFAULT_HISTORY_LIMIT, Account, Accounts, parse_amount
from smarkets_twisted.exchange.catalogue import Catalogue, Contract, Market
from smarkets_twisted.exchange.server import ConnectionSettings, ExchangeFactory, ExchangeProtocol
from smarkets_twisted.exchange.service import Exchange, ExchangeSettings
from smarkets_twisted.framing import Deframer
from smarkets_twisted.payloads import Payload, application_message, handler_name, parse_payload
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.session import Role, Session, SessionState

MARKET = 100
HOME = 1001
AWAY = 1002
HALTABLE = 200
OVER = 2001


def two_accounts(history_limit: int = DEFAULT_HISTORY_LIMIT) -> Accounts:
    """alice and bob, 1000.00 each."""
    return Accounts(
        [
            Account("alice", "alice-pw", 11, "alice@example.com", parse_amount("1000.00"), history_limit),
            Account("bob", "bob-pw", 12, "bob@example.com", parse_amount("1000.00"), history_limit),
        ]
    )


def markets() -> Catalogue:
    """A live two-way market and an open one."""
    return Catalogue(
        [
            Market(MARKET, "Match odds", (Contract(HOME, "Home"), Contract(AWAY, "Away")), seto_pb2.MARKET_STATE_LIVE),
            Market(HALTABLE, "Goals", (Contract(OVER, "Over"), Contract(2002, "Under")), seto_pb2.MARKET_STATE_OPEN),
        ]
    )


class ExchangeFixture:
    """An Exchange on a Clock, and a factory for its connections."""

    def __init__(
        self,
        connection: ConnectionSettings | None = None,
        settings: ExchangeSettings | None = None,
        accounts: Accounts | None = None,
        any_price: bool = True,
    ) -> None:
        self.clock = Clock()
        # Any price: the tests' round figures are off the tick ladder (tests of the ladder say so).
        settings = replace(settings or ExchangeSettings(), any_price=True) if any_price else settings
        self.exchange = Exchange(self.clock, accounts or two_accounts(), markets(), settings)
        self.factory = ExchangeFactory(self.exchange, self.clock, connection)

    def client(self, state: SessionState | None = None) -> ScriptedClient:
        return ScriptedClient(self, state)


class ScriptedClient:
    """One connection to the exchange, driven by hand."""

    def __init__(self, fixture: ExchangeFixture, state: SessionState | None = None) -> None:
        self.clock = fixture.clock
        self.state = state if state is not None else SessionState()
        self.transport = StringTransport()
        self.protocol: ExchangeProtocol = fixture.factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        self.session = Session(self.state, Role.CLIENT, now=self.clock.seconds())
        self.deframer = Deframer()
        #: Payloads delivered to the client, in order, not yet taken.
        self.inbox: list[Payload] = []
        #: Every payload the exchange wrote, as parsed (replays and duplicates included).
        self.wire: list[Payload] = []
        self.lost = False
        #: While True, what the client sends never reaches the exchange.
        self.mute = False

    # Sending

    def login(
        self, username: str = "alice", password: str = "alice-pw", account_sequence: int | None = None
    ) -> list[Payload]:
        """Log in (resuming when the state has a session id); return what came back."""
        self.session.start_login(
            self.clock.seconds(), username=username, password=password, account_sequence=account_sequence
        )
        self.pump()
        return self.take()

    def send(self, payload: Payload) -> int:
        seq = self.session.send(payload, self.clock.seconds())
        self.pump()
        return seq

    def send_message(self, field: str, **fields: object) -> int:
        return self.send(application_message(field, **fields))

    def order(
        self,
        side: int,
        quantity: int,
        price: int,
        market_id: int = MARKET,
        contract_id: int = HOME,
        **fields: object,
    ) -> int:
        return self.send_message(
            "order_create",
            market_id=market_id,
            contract_id=contract_id,
            side=side,
            quantity=quantity,
            price=price,
            **fields,
        )

    def send_raw(self, data: bytes) -> None:
        self.protocol.dataReceived(data)
        self.pump()

    # Receiving

    def pump(self) -> None:
        """Move bytes both ways until neither side has anything to say."""
        while True:
            outgoing = self.session.data_to_send()
            if outgoing and not self.transport.disconnecting and not self.mute:
                self.protocol.dataReceived(outgoing)
            incoming = self.transport.value()
            self.transport.clear()
            if not outgoing and not incoming:
                return
            now = self.clock.seconds()
            for frame in self.deframer.feed(incoming):
                self.wire.append(parse_payload(frame))
                self.inbox.extend(self.session.receive(frame, now))

    def take(self) -> list[Payload]:
        """The payloads delivered since the last call (reading what is waiting first)."""
        self.pump()
        taken, self.inbox = self.inbox, []
        return taken

    def names(self) -> list[str]:
        return [handler_name(payload) for payload in self.take()]

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.pump()

    # The connection

    @property
    def closed(self) -> bool:
        """The exchange asked for the connection to be closed."""
        return bool(self.transport.disconnecting)

    def disconnect(self, clean: bool = False) -> None:
        """The connection goes away (as the reactor would report it)."""
        if not self.lost:
            self.lost = True
            reason = ConnectionDone() if clean else ConnectionLost()
            self.protocol.connectionLost(Failure(reason))
