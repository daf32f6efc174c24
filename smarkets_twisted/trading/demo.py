"""The strategy `twistd smarkets` runs when given none: a small market maker.

Every ``interval`` seconds it quotes both sides of each contract of its
markets, one tick either side of the mid of the others' best prices, for a
small payoff; it moves a quote (cancel-replace) when the mid moves, sizes
each quote so that even a full fill keeps the contract's net position within
the limit, pulls its quotes from a market whose book goes stale (and all of
them when it stops), and never queues requests behind the throttle: a side
with a request in flight waits for its answer.  A quote the exchange no longer
has (a move or cancel refused as too late or not found), or whose fate the end
of a session left unknown, is forgotten: the side is quoted afresh at the next
interval.
It logs what it does in prices a person reads (25.00% (4.0), £2.00).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from smarkets_twisted import errors
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.trading import prices
from smarkets_twisted.trading.books import ContractBook, MarketBook
from smarkets_twisted.trading.orders import Order, OrderState, is_gone_reason
from smarkets_twisted.trading.prices import BUY, SELL, SIDE_NAMES, format_money, format_position, format_price, money
from smarkets_twisted.trading.strategy import Strategy
from smarkets_twisted.wording import counted

#: The payoff of each quote: £2.00, in 1/10000 of the currency.
DEMO_QUANTITY = 20_000

#: The net payoff held in one contract, either way, past which that side stops quoting: £10.00.
POSITION_LIMIT = 100_000

#: Seconds a stopping maker waits for the exchange to close its orders.
STOP_TIMEOUT = 5.0

#: The label of the market maker's orders: it quotes with these, and leaves the account's others alone.
LABEL = "smarkets_twisted demo"

class MarketMaker(Strategy):
    """Quote both sides around the mid of each contract, within a position limit."""

    def __init__(
        self,
        factory: SmarketsClientFactory,
        market_ids: Iterable[int],
        interval: float = 5.0,
        quantity: int = DEMO_QUANTITY,
        position_limit: int = POSITION_LIMIT,
        verbose: bool = False,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        super().__init__(factory)
        #: Log each quote and move, and every change of the balance (else the trade log and the status line
        #: say them).
        self.verbose = verbose
        self.market_ids = list(market_ids)
        self.interval = interval
        self.quantity = quantity
        self.position_limit = position_limit
        self.stop_timeout = stop_timeout
        #: (contract_id, side) -> the live order quoting it.
        self.quotes: dict[tuple[int, int], Order] = {}
        self._in_flight: set[tuple[int, int]] = set()
        #: The order a fill was just heard for, until its order_changed.
        self._filled: Order | None = None
        #: Requests sent and not yet answered; and, while stopping, the orders cancelled.
        self._outstanding = 0
        self._cancelled: set[int] = set()
        self._said_stopping = False
        self._stop_timer: IDelayedCall | None = None
        self._stop_waiters: list[Deferred[None]] = []
        self._quoter = LoopingCall(self.requote)
        self._quoter.clock = factory.clock

    def start(self) -> None:
        super().start()
        if not self._quoter.running:
            self._quoter.start(self.interval, now=False).addErrback(self._quoting_failed)

    def stop(self) -> Deferred[None]:
        """Stop quoting and cancel the maker's orders, then stop hearing the client.

        Fires once the exchange has closed every one of them (cancelled, or
        filled first), or after ``stop_timeout`` seconds: `twistd smarkets`
        logs out only then, since ``cancel_all_on_failure`` does not cover a
        logout, and quotes left behind would rest in the market unwatched.
        """
        if self._quoter.running:
            self._quoter.stop()
        if not self.running:
            return succeed(None)
        stopped: Deferred[None] = Deferred()
        self._stop_waiters.append(stopped)
        if self._stop_timer is None:
            mine = self._mine()
            if mine and self.factory.session_available:
                self.log.info("stopping: cancelling {orders} before the logout", orders=counted(len(mine), "order"))
                self._said_stopping = True
            self._stop_timer = self.factory.clock.callLater(self.stop_timeout, self._stopped)
            self._wind_down()
        return stopped

    def _mine(self) -> list[Order]:
        """The maker's orders that are open or on their way to the book."""
        return [order for order in self.orders.open() if order.label == LABEL and order.market_id in self.market_ids
                and order.state is not OrderState.UNKNOWN]

    def _wind_down(self) -> None:
        """While stopping, at each answer and order event: cancel what is live and has no request on its way
        (a move's new order once it is accepted), and stop once nothing is left."""
        if self._stop_timer is None:
            return
        for order in self._mine():
            if (order.order_id is not None and order.state is OrderState.LIVE and order.order_id not in self._cancelled
                    and (order.contract_id, order.side) not in self._in_flight):
                self._cancelled.add(order.order_id)
                self._pull(order)
        if not self.factory.session_available or not (self._outstanding or self._mine()):
            self._stopped()

    def _stopped(self) -> None:
        """Every order of the maker closed, or ``stop_timeout`` passed: stop hearing the client (and say so once)."""
        timer, self._stop_timer = self._stop_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self.running:
            left = self._mine()
            if left:
                self.log.warn("stopping: {orders} still open ({ids}); they may rest on the exchange",
                              orders=counted(len(left), "order"),
                              ids=", ".join(str(order.order_id or "unanswered") for order in left))
            elif self._said_stopping:
                self.log.info("stopping: every order of the market maker is closed")
            super().stop()
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # Hooks

    def logged_in(self, resumed: bool) -> None:
        if resumed:
            return
        self.factory.settings(cancel_all_on_failure=True).addErrback(self._failed, "settings")
        for market_id in self.market_ids:
            if market_id not in self.factory.subscriptions:
                self.factory.subscribe(market_id).addErrback(self._failed, f"subscribe to market {market_id}")

    def logged_out(self, reason: Exception) -> None:
        # `Orders` heard first: a quote live when the session ended is now of unknown fate.
        unknown = [key for key, order in self.quotes.items() if order.state is not OrderState.LIVE]
        if unknown:
            self.log.info("the session ended: {quotes} of unknown fate forgotten; their sides are quoted"
                          " afresh once logged in again", quotes=counted(len(unknown), "quote"))
        for key in unknown:
            del self.quotes[key]

    def book_stale(self, book: MarketBook) -> None:
        mine = [order for order in self.quotes.values() if order.market_id == book.market_id]
        if not mine:
            return
        self.log.info("market {market}: prices can no longer be trusted; pulling {quotes}",
                      market=book.market_id, quotes=counted(len(mine), "quote"))
        for order in mine:
            self._pull(order)

    def order_changed(self, order: Order) -> None:
        if order is self._filled:
            # After the trade log's line for the fill, what it leaves the maker holding.
            self._filled = None
            position = self.positions.contract(order.market_id, order.contract_id)
            self.log.info("market {market} contract {contract}: this run's position {net}, worst loss in the market"
                          " {worst}", market=order.market_id, contract=order.contract_id,
                          net=format_position(position.net if position else 0),
                          worst=format_money(self.positions.worst_loss(order.market_id)))
        key = (order.contract_id, order.side)
        if order.label != LABEL:
            return
        self._wind_down()
        if order.state is OrderState.LIVE and order.market_id in self.market_ids and key not in self.quotes:
            self.quotes[key] = order
        elif order.closed and self.quotes.get(key) is order:
            del self.quotes[key]

    def fill(self, order: Order, price: int, quantity: int) -> None:
        # Said at the order_changed that follows every fill, once the trade log has said the fill.
        self._filled = order

    def balance_changed(self, available_balance: Decimal, exposure: Decimal) -> None:
        if self.verbose:
            self.log.info("available balance {available}, exposure {exposure}",
                          available=format_money(available_balance), exposure=format_money(exposure))

    # Quoting

    def requote(self) -> None:
        """Bring every quote to one tick either side of its contract's mid."""
        if self.factory.current is None or self.factory.queued:
            return
        for market_id in self.market_ids:
            book = self.books.get(market_id)
            if book is None or book.stale:
                continue
            for contract_id, contract in sorted(book.contracts.items()):
                mid = self._mid(contract)
                if mid is None:
                    continue
                below, above = prices.ticks_below(mid), prices.ticks_above(mid)
                position = self.positions.contract(market_id, contract_id)
                net = position.net if position is not None else 0
                self._quote(market_id, contract_id, BUY, below[0] if below else None, self.position_limit - net)
                self._quote(market_id, contract_id, SELL, above[0] if above else None, self.position_limit + net)

    def _mid(self, contract: ContractBook) -> int | None:
        """The mid of the best bid and offer that are not ours."""
        bid = self._others_best(contract, BUY)
        offer = self._others_best(contract, SELL)
        if bid is None or offer is None:
            return None
        return (bid + offer) // 2

    def _others_best(self, contract: ContractBook, side: int) -> int | None:
        mine = self.quotes.get((contract.contract_id, side))
        for level in contract.depth(side):
            ours = mine.remaining_quantity if mine is not None and mine.price == level.price else 0
            if level.quantity > ours:
                return level.price
        return None

    def _quote(self, market_id: int, contract_id: int, side: int, price: int | None, room: int) -> None:
        """Quote ``side`` of the contract at ``price``, within ``room``: the payoff the position
        limit leaves that way, so that even a full fill keeps the position within it."""
        key = (contract_id, side)
        if key in self._in_flight:
            return
        current = self.quotes.get(key)
        if current is not None and current.remaining_quantity > room:
            self.log.info("contract {contract}: at the position limit; pulling the {side} quote",
                          contract=contract_id, side=SIDE_NAMES[side])
            self._pull(current)
            return
        if price is None:
            return  # the mid is at the end of the ladder: no tick beyond it
        other = self.quotes.get((contract_id, SELL if side == BUY else BUY))
        if other is not None and (price >= other.price if side == BUY else price <= other.price):
            return  # would cross our own other quote: it moves first
        if current is None:
            quantity = min(self.quantity, room)
            if quantity > 0:
                what = self._describe(market_id, contract_id, side, quantity, price)
                if self.verbose:  # else the trade log says it, as "order N accepted: ..."
                    self.log.info("quoting: {what}", what=what)
                self._send(key, self.factory.order(market_id, contract_id, side, quantity, price, label=LABEL), what)
        elif current.price != price and current.order_id is not None and not current.replace_pending:
            # Until the replace lands the old quote can still fill, partly, and the new one
            # comes whole: it is sized for that (a full fill first makes the replace too late).
            quantity = min(self.quantity, room - current.remaining_quantity)
            if quantity <= 0:
                self._pull(current)  # and quote afresh, sized exactly, once it is gone
                return
            what = f"moving order {current.order_id} at {format_price(current.price)} -> " \
                   f"{self._describe(market_id, contract_id, side, quantity, price)}"
            if self.verbose:
                self.log.info("{what}", what=what)
            self._send(key, self.factory.replace(current.order_id, price, quantity, label=LABEL), what, current)

    @staticmethod
    def _describe(market_id: int, contract_id: int, side: int, quantity: int, price: int) -> str:
        return (f"{SIDE_NAMES[side]} {format_money(money(quantity))} payoff of market {market_id}"
                f" contract {contract_id} at {format_price(price)}")

    def _pull(self, order: Order) -> None:
        """Cancel a quote the exchange has accepted."""
        if order.order_id is not None:
            self._send((order.contract_id, order.side), self.factory.cancel(order.order_id),
                       f"cancel order {order.order_id}", order)

    def _send(self, key: tuple[int, int], deferred: Any, what: str, about: Order | None = None) -> None:
        """Send a request for the ``key`` side; ``about``: the quote it moves or cancels."""
        self._in_flight.add(key)
        self._outstanding += 1
        deferred.addErrback(self._failed, what, about)
        deferred.addBoth(self._answered, key)

    def _answered(self, result: object, key: tuple[int, int]) -> None:
        self._in_flight.discard(key)
        self._outstanding -= 1
        self._wind_down()

    def _forget(self, order: Order) -> None:
        key = (order.contract_id, order.side)
        if self.quotes.get(key) is order:
            del self.quotes[key]

    def _quoting_failed(self, failure: Failure) -> None:
        """A bug stopped the quoting loop: stop, pulling the quotes nothing would move any more."""
        self.log.failure("the market maker's quoting failed; stopping", failure)
        self.stop()

    def _failed(self, failure: Failure, what: str, about: Order | None = None) -> None:
        error = failure.value
        if not self.running and failure.check(errors.SessionLost):
            return  # stopped: the orders left open were named then
        if isinstance(error, errors.RequestRejected) and error.reason_name is not None:
            # Routine for a maker (a move that comes too late, after a fill): said in words.
            self.log.info("{what}: refused ({reason})", what=what, reason=errors.reason_words(error.reason_name))
            if about is not None and is_gone_reason(error.reason_name):
                # The exchange no longer has it (`Orders` closed it as gone, if it was open here).
                self._forget(about)
        elif failure.check(errors.RequestRejected, errors.RequestTimeout, errors.SessionLost, errors.NotLoggedIn):
            self.log.warn("{what}: {error}", what=what, error=failure.getErrorMessage())
        else:
            self.log.failure("{what} failed", failure, what=what)

