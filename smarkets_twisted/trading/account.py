"""The account's positions as the client follows them: ``factory.positions``.

Built on `smarkets_twisted.trading.positions`, the one implementation the
simulated exchange reserves money with: every fill this client sees is a
trade, and every live order reserves its remaining quantity at its limit
price, exactly as the exchange counts them.  Those figures are this client's
share only: fills and orders from before it started, or of another client on
the account, are not in them.  The account's own figures are the exchange's,
as its last ``balance_changed`` said them: ``reported_available`` and
``reported_exposure``.

A market's worst case is taken over its contracts as the book shows them
(subscribe to the market, or name them with `set_contracts`); until then a
contract this account holds nothing in is assumed possible, which can only
overstate the loss.  A settled or voided market stops counting when its
``market_state`` says so, which subscribers hear.  Positions count the fills
this client has seen: since it started, or since the account sequence it was
started from.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from smarkets_twisted.handlers import HandlerRegistry
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.trading.books import Books
from smarkets_twisted.trading.orders import Order, OrderListener, Orders, OrderState
from smarkets_twisted.trading.positions import ContractPosition, MarketPosition
from smarkets_twisted.trading.prices import money, money_from_double

#: Stands for "some contract this account holds nothing in" while a market's contracts are unknown.
_ANOTHER_CONTRACT = -1


class AccountPositions(OrderListener):
    """Positions by market and contract, the markets' worst cases and the account's balance, in pounds."""

    def __init__(self, handlers: HandlerRegistry, orders: Orders, books: Books) -> None:
        self.markets: dict[int, MarketPosition] = {}
        #: The cash balance in pounds, as the exchange last reported it (None before it has).
        self.balance: Decimal | None = None
        #: The account's available balance and exposure in pounds, as the exchange last reported them (None
        #: before it has): unlike `available_balance` and `exposure`, they count every client's orders and fills.
        self.reported_available: Decimal | None = None
        self.reported_exposure: Decimal | None = None
        self._books = books
        self._contracts: dict[int, frozenset[int]] = {}
        self._reserved: dict[Order, int] = {}
        #: Markets settled or voided: their money has moved to the balance.
        self.closed: set[int] = set()
        orders.add_listener(self)
        handlers.add_handler("seto.balance_changed", self._balance_changed)
        handlers.add_handler("seto.market_state", self._market_state)

    def __repr__(self) -> str:
        return f"<AccountPositions markets={sorted(self.markets)} exposure={self.exposure}>"

    # Queries

    def market(self, market_id: int) -> MarketPosition | None:
        return self.markets.get(market_id)

    def contract(self, market_id: int, contract_id: int) -> ContractPosition | None:
        """Bought and sold payoff, stakes and average prices of one contract."""
        market = self.markets.get(market_id)
        return market.contracts.get(contract_id) if market is not None else None

    def worst_loss(self, market_id: int) -> Decimal:
        """The most the account can lose in the market, in pounds: the exchange's exposure there."""
        market = self.markets.get(market_id)
        if market is None:
            return money(0)
        return money(market.worst_loss(self._contract_ids(market_id, market)))

    @property
    def exposure(self) -> Decimal:
        """The sum of the markets' worst cases, in pounds: this client's orders and fills only."""
        return sum((self.worst_loss(market_id) for market_id in self.markets), money(0))

    @property
    def available_balance(self) -> Decimal | None:
        """The balance less this client's exposure (None before a balance); the account's is `reported_available`."""
        return None if self.balance is None else self.balance - self.exposure

    def set_contracts(self, market_id: int, contract_ids: list[int]) -> None:
        """Name every contract of a market the books do not show."""
        self._contracts[market_id] = frozenset(contract_ids)

    def _contract_ids(self, market_id: int, market: MarketPosition) -> frozenset[int]:
        known = self._contracts.get(market_id)
        book = self._books.get(market_id)
        if known is None and book is not None and book.contracts:
            known = frozenset(book.contracts)
        if known is None:
            return frozenset(market.contracts) | {_ANOTHER_CONTRACT}
        return known | frozenset(market.contracts)

    # Order events

    def order_filled(self, order: Order, price: int, quantity: int) -> None:
        if order.market_id not in self.closed:
            self._market(order.market_id).add_trade(order.side, order.contract_id, price, quantity)
        # Release the filled quantity now, not at order_changed: the other
        # listeners' fill hooks, called before that, see the exchange's figures.
        self.order_changed(order)

    def order_changed(self, order: Order) -> None:
        """Reserve what a live order has open, as the exchange does; release the rest."""
        # One of unknown fate was live: the exchange may hold it still, and its exposure with it.
        live = (order.state is OrderState.LIVE or (order.state is OrderState.UNKNOWN and order.order_id is not None)
                ) and order.market_id not in self.closed
        reserve = order.remaining_quantity if live else 0
        change = reserve - self._reserved.get(order, 0)
        if change:
            self._market(order.market_id).add_open(order.side, order.contract_id, order.price, change)
        if reserve:
            self._reserved[order] = reserve
        else:
            self._reserved.pop(order, None)

    def _market(self, market_id: int) -> MarketPosition:
        market = self.markets.get(market_id)
        if market is None:
            market = self.markets[market_id] = MarketPosition()
        return market

    def _market_state(self, message: Any) -> None:
        if message.state in (seto_pb2.MARKET_STATE_SETTLED, seto_pb2.MARKET_STATE_VOIDED):
            self.closed.add(message.market_id)
            self.markets.pop(message.market_id, None)
            for order in [order for order in self._reserved if order.market_id == message.market_id]:
                del self._reserved[order]

    def _balance_changed(self, message: Any) -> None:
        self.reported_available = money_from_double(message.available_balance)
        self.reported_exposure = money_from_double(message.exposure)
        self.balance = self.reported_available + self.reported_exposure

