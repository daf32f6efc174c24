"""Two clients, alice and bob, against the simulated exchange in memory, for the trading tests."""

from __future__ import annotations

from collections.abc import Callable

from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.framing import Deframer, encode_frame
from smarkets_twisted.payloads import Payload, parse_payload
from smarkets_twisted.testing import InMemoryConnection
from smarkets_twisted.trading.orders import OrderState
from tests.test_exchange_client import ClientAgainstExchangeTestCase


class TradingTestCase(ClientAgainstExchangeTestCase):
    def assertOrdersMatchExchange(self, factory: SmarketsClientFactory, username: str) -> None:
        """The client's live orders (and those of unknown fate since a session ended) are the exchange's
        open orders, figure for figure."""
        theirs = {o.order_id: (o.price, o.available_quantity, o.executed_quantity)
                  for o in self.exchange.open_orders(username)}
        ours = {o.order_id: (o.price, o.remaining_quantity, o.executed_quantity)
                for o in factory.orders.open() if o.order_id is not None and o.state is not OrderState.PENDING}
        self.assertEqual(ours, theirs)


class ExchangeOutput:
    """What the exchange writes to one client, passed payload by payload through ``rewrite``
    on its way: the network (or an exchange) losing, holding back or changing a payload.

    ``rewrite`` returns the payloads to send in its place (none to lose it);
    `send` writes payloads held back earlier.
    """

    def __init__(self, connection: InMemoryConnection, rewrite: Callable[[Payload], list[Payload]]) -> None:
        self.rewrite = rewrite
        self._transport = connection.pump.serverIO
        self._write = self._transport.write
        self._deframer = Deframer()
        self._transport.write = self._rewritten  # type: ignore[method-assign]

    def _rewritten(self, data: bytes) -> None:
        for frame in self._deframer.feed(data):
            self.send(self.rewrite(parse_payload(frame)))

    def send(self, payloads: list[Payload]) -> None:
        for payload in payloads:
            self._write(encode_frame(payload.SerializeToString()))
