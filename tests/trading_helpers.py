"""Two clients, alice and bob, against the simulated exchange in memory, for the trading tests."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.exchange.service import ExchangeSettings
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.testing import InMemoryConnection, InMemoryExchange
from smarkets_twisted.trading.orders import OrderState
from tests.exchange_helpers import markets, two_accounts


class TradingTestCase(SynchronousTestCase):
    settings: ExchangeSettings | None = None

    def setUp(self) -> None:
        self.market = InMemoryExchange(accounts=two_accounts(), catalogue=markets(), settings=self.settings)
        self.exchange = self.market.exchange
        self.alice, self.alice_connection = self.client("alice")
        self.bob, self.bob_connection = self.client("bob")

    def client(self, username: str, **settings: Any) -> tuple[SmarketsClientFactory, InMemoryConnection]:
        factory, connection = self.market.client(username, f"{username}-pw", **settings)
        self.market.flush()
        self.successResultOf(factory.whenLoggedIn())
        return factory, connection

    def settle(self, deferred: Any) -> Any:
        """Flush the exchange, then return the Deferred's result."""
        self.market.flush()
        return self.successResultOf(deferred)

    def assertOrdersMatchExchange(self, factory: SmarketsClientFactory, username: str) -> None:
        """The client's live orders are the exchange's open orders, figure for figure."""
        theirs = {o.order_id: (o.price, o.available_quantity, o.executed_quantity)
                  for o in self.exchange.open_orders(username)}
        ours = {o.order_id: (o.price, o.remaining_quantity, o.executed_quantity)
                for o in factory.orders.open() if o.state is OrderState.LIVE}
        self.assertEqual(ours, theirs)
