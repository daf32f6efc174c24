"""Two clients, alice and bob, against the simulated exchange in memory, for the trading tests."""

from __future__ import annotations

from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.trading.orders import OrderState
from tests.test_exchange_client import ClientAgainstExchangeTestCase


class TradingTestCase(ClientAgainstExchangeTestCase):
    def assertOrdersMatchExchange(self, factory: SmarketsClientFactory, username: str) -> None:
        """The client's live orders are the exchange's open orders, figure for figure."""
        theirs = {o.order_id: (o.price, o.available_quantity, o.executed_quantity)
                  for o in self.exchange.open_orders(username)}
        ours = {o.order_id: (o.price, o.remaining_quantity, o.executed_quantity)
                for o in factory.orders.open() if o.state is OrderState.LIVE}
        self.assertEqual(ours, theirs)
