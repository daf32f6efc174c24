"""A base class for strategies: hooks for what happens, the factory to act through.

Subclass `Strategy`, override the hooks you need, and act through
``self.factory`` (``order``, ``cancel``, ``replace``...), ``self.books``,
``self.orders`` and ``self.positions``.  ``twistd smarkets --strategy
module:Name`` builds ``Name(factory)`` and starts it with the service::

    class Watcher(Strategy):
        def logged_in(self, resumed):
            if not resumed:
                self.factory.subscribe(100)

        def book_changed(self, book, contract_id):
            ...

A hook that raises is logged; it disturbs neither the client nor the other
hooks.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.handlers import ClientListener, notify
from smarkets_twisted.trading.account import AccountPositions
from smarkets_twisted.trading.books import BookListener, Books, MarketBook
from smarkets_twisted.trading.orders import Order, OrderListener, Orders
from smarkets_twisted.trading.prices import money_from_double


class Strategy(ClientListener, BookListener, OrderListener):
    """Hooks called by the client; every one does nothing until overridden."""

    log = Logger()

    def __init__(self, factory: SmarketsClientFactory) -> None:
        self.factory = factory
        self.running = False

    @property
    def books(self) -> Books:
        return self.factory.books

    @property
    def orders(self) -> Orders:
        return self.factory.orders

    @property
    def positions(self) -> AccountPositions:
        return self.factory.positions

    def start(self) -> None:
        """Start hearing the client; ``logged_in`` is called at once if it is logged in."""
        if self.running:
            return
        self.running = True
        self.factory.add_listener(self)
        self.books.add_listener(self)
        self.orders.add_listener(self)
        self.factory.add_handler("seto.balance_changed", self._balance_changed)
        self.factory.add_handler("seto.market_state", self._market_state)
        if self.factory.current is not None:
            # Through `notify`, as the client calls every hook: one that raises is logged.
            notify([self], "logged_in", False)

    def stop(self) -> Deferred[None] | None:
        """Stop hearing the client (orders stay as they are: cancel them first if you mean to).

        An override may return a Deferred: `twistd smarkets` logs out once it fires.
        """
        if not self.running:
            return None
        self.running = False
        self.factory.del_listener(self)
        self.books.del_listener(self)
        self.orders.del_listener(self)
        self.factory.del_handler("seto.balance_changed", self._balance_changed)
        self.factory.del_handler("seto.market_state", self._market_state)
        return None

    # Hooks

    def logged_in(self, resumed: bool) -> None:
        """Logged in: ``resumed`` when the same session carried on (subscriptions and orders kept)."""

    def logged_out(self, reason: Exception) -> None:
        """The session ended: logged out, refused, or it could not be resumed."""

    def connection_lost(self, reason: Exception) -> None:
        """The connection closed: unless ``logged_out`` came first, the client resumes the session on a new one."""

    def book_changed(self, book: MarketBook, contract_id: int | None) -> None:
        """A contract's book moved (``contract_id``), or a whole snapshot arrived (None)."""

    def book_stale(self, book: MarketBook) -> None:
        """The book cannot be trusted until its next snapshot: pull quotes that depend on it."""

    def book_live(self, book: MarketBook) -> None:
        """The book is whole again (a fresh snapshot, or a gap closed): ``book_changed`` follows."""

    def order_changed(self, order: Order) -> None:
        """An order of the account moved (``order.state``, ``order.history[-1]``)."""

    def fill(self, order: Order, price: int, quantity: int) -> None:
        """A fill of ``quantity`` at ``price``; a voided fill has a negative quantity."""

    def balance_changed(self, available_balance: Decimal, exposure: Decimal) -> None:
        """The account's available balance or exposure moved, in pounds."""

    def market_state_changed(self, market_id: int, state: int) -> None:
        """A subscribed market changed state (``seto_pb2.MARKET_STATE_HALTED``...): a halted one refuses orders."""

    # The listeners' names for some of the hooks

    def session_ended(self, reason: Exception) -> None:
        self.logged_out(reason)

    def order_filled(self, order: Order, price: int, quantity: int) -> None:
        self.fill(order, price, quantity)

    def _balance_changed(self, message: Any) -> None:
        self.balance_changed(money_from_double(message.available_balance), money_from_double(message.exposure))

    def _market_state(self, message: Any) -> None:
        self.market_state_changed(message.market_id, message.state)

