"""The matching engine of the simulated exchange: orders in, fills and market data out.

Sans-io: every public method takes plain values, changes the exchange's state
and returns the list of domain events (`smarkets_twisted.exchange.events`)
that the change produced, in causal order.  It keeps the books
(`smarkets_twisted.exchange.book`) and the orders, and moves markets through
their states; the money it leaves to `smarkets_twisted.exchange.ledger` and
the accounts, and the events' wire form to `smarkets_twisted.exchange.messages`.

Units follow PROTOCOL.md section 7: prices are percent odds in basis points
(1..9999) and quantities are payoffs in 1/10000 of the currency, as are
balances and exposures.

Money model
-----------
Cash moves only at settlement.  Until then, each account's *exposure* in a
market is its worst-case loss there, as `smarkets_twisted.trading.positions`
computes it from the account's fills and open orders (the client uses the
same module; `smarkets_twisted.exchange.ledger` keeps it for the engine); the
account's exposure is the sum over markets, and an order
is rejected for insufficient funds when the exposure with the order would
exceed the balance.  At settlement the account's net result in the market is
added to its balance, rounded down (so a winner gets at most what it won and
a loser pays at most its exposure).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from itertools import count
from typing import Concatenate, ParamSpec

from smarkets_twisted.errors import SmarketsError
from smarkets_twisted.exchange.accounts import Account, Accounts
from smarkets_twisted.exchange.book import Book
from smarkets_twisted.exchange.catalogue import Catalogue, Market, state_name
from smarkets_twisted.exchange.events import (
    AccountEvent,
    BookChanged,
    CancelAllAccepted,
    CancelAllRejected,
    CancelRejected,
    ContractBook,
    EngineEvent,
    Execution,
    ExecutionVoided,
    Level,
    MarketBook,
    MarketStateChanged,
    OpenOrder,
    OrderInvalid,
    OrderRejected,
    PendingReplace,
    QuantityReduced,
    ReduceRejected,
    ReplaceAccepted,
    ReplaceRejected,
    account_event,
    balance_changed,
)
from smarkets_twisted.exchange.ledger import Ledger
from smarkets_twisted.exchange.orders import Order, accepted, cancelled, executed, order_event
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.trading.prices import is_tick

MIN_PRICE = 1
MAX_PRICE = 9999
#: How many price levels per side market data shows by default.
DEFAULT_DEPTH = 10
#: How many finished orders are remembered, to answer TOO_LATE instead of NOT_FOUND.
DEFAULT_FINISHED_ORDER_MEMORY = 10_000
#: The longest order label the exchange keeps and echoes (characters).
MAX_LABEL_LENGTH = 200

BUY = seto_pb2.SIDE_BUY
SELL = seto_pb2.SIDE_SELL

_TRANSITIONS: dict[int, frozenset[int]] = {
    seto_pb2.MARKET_STATE_NEW: frozenset(
        {seto_pb2.MARKET_STATE_OPEN, seto_pb2.MARKET_STATE_LIVE, seto_pb2.MARKET_STATE_VOIDED}
    ),
    seto_pb2.MARKET_STATE_OPEN: frozenset(
        {
            seto_pb2.MARKET_STATE_LIVE,
            seto_pb2.MARKET_STATE_HALTED,
            seto_pb2.MARKET_STATE_SETTLED,
            seto_pb2.MARKET_STATE_VOIDED,
        }
    ),
    seto_pb2.MARKET_STATE_LIVE: frozenset(
        {seto_pb2.MARKET_STATE_HALTED, seto_pb2.MARKET_STATE_SETTLED, seto_pb2.MARKET_STATE_VOIDED}
    ),
    seto_pb2.MARKET_STATE_HALTED: frozenset(
        {
            seto_pb2.MARKET_STATE_OPEN,
            seto_pb2.MARKET_STATE_LIVE,
            seto_pb2.MARKET_STATE_SETTLED,
            seto_pb2.MARKET_STATE_VOIDED,
        }
    ),
    seto_pb2.MARKET_STATE_SETTLED: frozenset(),
    seto_pb2.MARKET_STATE_VOIDED: frozenset(),
}


class MarketStateError(SmarketsError, ValueError):
    """A market state change that cannot be made (unknown market, bad transition or winner)."""


_P = ParamSpec("_P")


class _Batch:
    """What one engine call did: its events, the books and accounts it touched."""

    __slots__ = ("accounts", "balance_reason", "books", "events", "executions")

    def __init__(self, balance_reason: str) -> None:
        self.balance_reason = balance_reason
        self.events: list[EngineEvent] = []
        #: Contract id -> market id, for every book the call changed.
        self.books: dict[int, int] = {}
        self.executions: dict[int, list[Execution]] = {}
        #: Username -> the account, its balance and exposure before the call changed them.
        self.accounts: dict[str, tuple[Account, int, int]] = {}

    def record(
        self, account: Account, build: Callable[Concatenate[int, _P], AccountEvent], *args: _P.args, **kwargs: _P.kwargs
    ) -> None:
        self.events.append(account.record(build, *args, **kwargs))

    def touch_account(self, account: Account) -> None:
        """Note the account's money before the ledger changes it (see `_Batch.accounts`)."""
        if account.username not in self.accounts:
            self.accounts[account.username] = (account, account.balance, account.exposure)


class MatchingEngine:
    """Order books for every contract of the catalogue, and the accounts' money.

    :param depth: price levels per side shown in snapshots and deltas (None: all).
    :param first_order_id: the id given to the first order.
    :param finished_order_memory: how many finished orders to remember, so that
        acting on one is answered "too late" rather than "not found".
    :param any_price: accept any price from 1 to 9999, not only the ticks of
        `smarkets_twisted.trading.prices` (production's odds ladder).
    """

    def __init__(
        self,
        accounts: Accounts,
        catalogue: Catalogue,
        depth: int | None = DEFAULT_DEPTH,
        first_order_id: int = 1,
        finished_order_memory: int = DEFAULT_FINISHED_ORDER_MEMORY,
        any_price: bool = False,
    ) -> None:
        if depth is not None and depth < 1:
            raise ValueError("depth must be at least 1")
        self.accounts = accounts
        self.catalogue = catalogue
        self.depth = depth
        self.any_price = any_price
        self._order_ids = count(first_order_id)
        self._finished_order_memory = finished_order_memory
        self._books: dict[int, Book] = {}
        self._market_of_contract: dict[int, int] = {}
        self._orders: dict[int, Order] = {}
        self._orders_by_account: dict[str, dict[int, Order]] = {}
        self._finished: OrderedDict[int, str] = OrderedDict()
        self.ledger = Ledger(catalogue)
        self._volume: dict[int, int] = {}
        self._in_play: set[int] = set()
        for market in catalogue:
            self._volume[market.id] = 0
            for contract in market.contracts:
                self._books[contract.id] = Book(depth)
                self._market_of_contract[contract.id] = market.id
            if market.state == seto_pb2.MARKET_STATE_LIVE:
                self._in_play.add(market.id)

    # Orders

    def create_order(
        self,
        account: Account,
        market_id: int,
        contract_id: int,
        side: seto_pb2.Side,
        quantity: int,
        price: int,
        tif: seto_pb2.TimeInForceType = seto_pb2.GOOD_TIL_CANCELLED,
        reference: int | None = None,
        label: str | None = None,
        request_seq: int | None = None,
    ) -> list[EngineEvent]:
        """Take a limit order: accept, match and rest it, or refuse it.

        A label longer than `MAX_LABEL_LENGTH` is refused with
        ORDER_REJECTED_LIMIT_EXCEEDED (order_invalid has no reason for it), and
        not echoed: every answer is kept in the sent logs, so a long label
        would cost memory many times over.

        :param request_seq: the seq of the client's order_create payload, echoed
            in the answer so that the client can correlate.
        """
        _check_side_and_tif(side, tif)
        reasons = _invalid_reasons(price, quantity, self.any_price)
        if reasons:
            return [
                OrderInvalid(username=account.username, reasons=reasons, request_seq=request_seq, reference=reference)
            ]
        batch = _Batch("order")
        market = self.catalogue.market(market_id)
        if not _label_fits(label):
            reason: seto_pb2.OrderRejectedReason = seto_pb2.ORDER_REJECTED_LIMIT_EXCEEDED
            label = None
        elif market is None:
            reason = seto_pb2.ORDER_REJECTED_MARKET_NOT_FOUND
        elif market.contract(contract_id) is None:
            reason = seto_pb2.ORDER_REJECTED_CONTRACT_NOT_FOUND
        elif market.state in _ORDER_REJECTED_FOR_STATE:
            reason = _ORDER_REJECTED_FOR_STATE[market.state]
        elif self._would_cross_self(account, contract_id, side, price, quantity):
            reason = seto_pb2.ORDER_REJECTED_CROSSED_SELF
        else:
            order = Order(
                next(self._order_ids), account, market_id, contract_id, side, price, quantity, tif, reference, label
            )
            if self.ledger.reserve(batch, market, order, None):
                batch.record(account, accepted, order, request_seq)
                self._touch_book(batch, contract_id)
                self._match(batch, market, order)
                self._rest_or_expire(batch, market, order)
                return self._finish(batch)
            reason = seto_pb2.ORDER_REJECTED_INSUFFICIENT_FUNDS
        batch.record(
            account,
            account_event(
                OrderRejected, account, reason=reason, request_seq=request_seq, reference=reference, label=label
            ),
        )
        return self._finish(batch)

    def cancel(self, account: Account, order_id: int, reference: int | None = None) -> list[EngineEvent]:
        """Cancel what is left of one of the account's orders."""
        batch = _Batch("cancel")
        order = self._own_open_order(account, order_id)
        if order is None:
            reason = (
                seto_pb2.ORDER_CANCEL_REJECTED_TOO_LATE
                if self._finished.get(order_id) == account.username
                else seto_pb2.ORDER_CANCEL_REJECTED_NOT_FOUND
            )
            batch.record(
                account, account_event(CancelRejected, account, order_id=order_id, reason=reason, reference=reference)
            )
            return self._finish(batch)
        market = self._market_of(order)
        self._cancel(batch, market, order, seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED, reference)
        return self._finish(batch)

    def cancel_all(
        self, account: Account, market_id: int | None = None, reference: int | None = None
    ) -> list[EngineEvent]:
        """Cancel every open order of the account, in one market or in all."""
        batch = _Batch("cancel")
        if market_id is not None and self.catalogue.market(market_id) is None:
            unknown = seto_pb2.ORDER_CANCEL_ALL_REJECTED_UNKNOWN_ERROR
            batch.record(
                account,
                account_event(CancelAllRejected, account, market_id=market_id, reason=unknown, reference=reference),
            )
            return self._finish(batch)
        batch.record(account, account_event(CancelAllAccepted, account, market_id=market_id, reference=reference))
        orders = [
            order
            for order in self._orders_by_account.get(account.username, {}).values()
            if market_id is None or order.market_id == market_id
        ]
        for order in orders:
            self._cancel(batch, self._market_of(order), order, seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED)
        return self._finish(batch)

    def reduce(
        self, account: Account, order_id: int, new_quantity: int, reference: int | None = None
    ) -> list[EngineEvent]:
        """Lower an order's available quantity to ``new_quantity``, keeping its place in line.

        ``new_quantity`` must be above 0 and below the available quantity.
        """
        batch = _Batch("reduce")
        order = self._own_open_order(account, order_id)
        if order is not None and 0 < new_quantity < order.available:
            market = self._market_of(order)
            self._touch_book(batch, order.contract_id)
            self.ledger.release(batch, market, order, order.available - new_quantity)
            self._books[order.contract_id].side(order.side).take(order, order.available - new_quantity)
            reduced = seto_pb2.ORDER_QUANTITY_REDUCED_MEMBER_REQUESTED
            batch.record(
                account,
                order_event(QuantityReduced, order, new_quantity=new_quantity, reason=reduced, reference=reference),
            )
        else:
            if order is not None:
                reason = seto_pb2.ORDER_QUANTITY_REDUCE_REJECTED_INVALID_NEW_QUANTITY
            elif self._finished.get(order_id) == account.username:
                reason = seto_pb2.ORDER_QUANTITY_REDUCE_REJECTED_NOT_LIVE
            else:
                reason = seto_pb2.ORDER_QUANTITY_REDUCE_REJECTED_NOT_FOUND
            batch.record(
                account,
                account_event(
                    ReduceRejected,
                    account,
                    order_id=order_id,
                    new_quantity=new_quantity,
                    reason=reason,
                    reference=reference,
                ),
            )
        return self._finish(batch)

    def replace(
        self,
        account: Account,
        order_id: int,
        price: int,
        quantity: int,
        reference: int | None = None,
        label: str | None = None,
    ) -> list[EngineEvent]:
        """Cancel an order and put a new one at ``price`` for ``quantity`` in its place.

        The new order has a new id, the same market, contract, side and
        time-in-force, and goes to the back of the queue at its price.  If the
        replacement is refused, the original order is left as it was.  A label
        longer than `MAX_LABEL_LENGTH` refuses it (SERVICE_TEMPORARILY_UNAVAILABLE,
        the schema having no better reason), and is not echoed.
        """
        batch = _Batch("replace")
        label_fits = _label_fits(label)
        if not label_fits:
            label = None
        orig = self._own_open_order(account, order_id)
        if orig is None:
            not_found = account_event(
                ReplaceRejected,
                account,
                order_id=None,
                orig_order_id=order_id,
                reason=seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_TOO_LATE,
                detail="order not found or no longer open",
                market_id=None,
                contract_id=None,
                side=None,
                reference=reference,
                label=label,
            )
            batch.record(account, not_found)
            return self._finish(batch)
        market = self._market_of(orig)
        new = Order(
            next(self._order_ids),
            account,
            orig.market_id,
            orig.contract_id,
            orig.side,
            price,
            quantity,
            orig.tif,
            reference if reference is not None else orig.reference,
            label if label is not None else orig.label,
        )
        batch.record(account, order_event(PendingReplace, new, orig_order_id=orig.order_id, reference=reference))
        invalid = _invalid_reasons(price, quantity, self.any_price)
        unavailable = seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_SERVICE_TEMPORARILY_UNAVAILABLE
        if not label_fits:
            reason, detail = unavailable, f"label longer than {MAX_LABEL_LENGTH} characters"
        elif invalid:
            reason, detail = unavailable, " and ".join(_INVALID_DETAIL[item] for item in invalid)
        elif market.state in _REPLACE_REJECTED_FOR_STATE:
            reason, detail = _REPLACE_REJECTED_FOR_STATE[market.state], f"market is {market.state_name}"
        elif self._would_cross_self(account, new.contract_id, new.side, price, quantity):
            reason, detail = seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_CROSSED_SELF, "would cross own order"
        elif not self.ledger.reserve(batch, market, new, orig):
            reason, detail = unavailable, "insufficient funds"
        else:
            self._touch_book(batch, orig.contract_id)
            quantity_left = orig.available
            self._unrest(orig)
            orig.available = 0
            replaced = order_event(
                ReplaceAccepted, new, orig_order_id=orig.order_id, quantity_left=quantity_left, reference=reference
            )
            batch.record(account, replaced)
            self._match(batch, market, new)
            self._rest_or_expire(batch, market, new)
            return self._finish(batch)
        rejected = order_event(
            ReplaceRejected, new, orig_order_id=orig.order_id, reason=reason, detail=detail, reference=reference
        )
        batch.record(account, rejected)
        return self._finish(batch)

    # Markets

    def set_market_state(
        self, market_id: int, state: seto_pb2.MarketStateType, winner: int | None = None
    ) -> list[EngineEvent]:
        """Move a market to ``state``, with what that means for its orders and money.

        - halted: GOOD_TILL_HALTED orders are cancelled; no new orders until it reopens.
        - live, the first time: every order but KEEP_IN_PLAY ones is cancelled.
        - settled (``winner`` names the winning contract): open orders are
          cancelled, each account's result is paid and its exposure released.
        - voided: open orders are cancelled, every trade is voided, exposure
          released: each account gets one order_execute_voided per contract
          and side it traded, for the total quantity at the average price,
          against the last of its orders that traded there.

        :raises MarketStateError: unknown market, a transition that is not
            allowed, or a missing or foreign winner.
        """
        market = self.catalogue.market(market_id)
        if market is None:
            raise MarketStateError(f"no market {market_id}")
        if state not in _TRANSITIONS.get(market.state, frozenset()):
            raise MarketStateError(f"market {market_id} cannot go from {market.state_name} to {state_name(state)}")
        if state == seto_pb2.MARKET_STATE_OPEN and market_id in self._in_play:
            raise MarketStateError(f"market {market_id} has gone in play and cannot reopen before play")
        if (state == seto_pb2.MARKET_STATE_SETTLED) != (winner is not None):
            raise MarketStateError("a winner is given when, and only when, a market is settled")
        if winner is not None and market.contract(winner) is None:
            raise MarketStateError(f"contract {winner} is not in market {market_id}")
        batch = _Batch("market " + state_name(state))
        market.state = state
        market.winner = winner
        batch.events.append(MarketStateChanged(market_id=market_id, state=state, winner=winner))
        # A market changes state rarely: a walk over every open order costs less than an index kept per order.
        orders = [order for order in self._orders.values() if order.market_id == market_id]
        if state == seto_pb2.MARKET_STATE_HALTED:
            self._cancel_where(
                batch, market, orders, {seto_pb2.GOOD_TILL_HALTED}, seto_pb2.ORDER_CANCELLED_MARKET_HALTED
            )
        elif state == seto_pb2.MARKET_STATE_LIVE and market_id not in self._in_play:
            self._in_play.add(market_id)
            not_in_play = {seto_pb2.GOOD_TIL_CANCELLED, seto_pb2.GOOD_TILL_HALTED}
            self._cancel_where(batch, market, orders, not_in_play, seto_pb2.ORDER_CANCELLED_TRADING_SUSPENDED)
        elif state in (seto_pb2.MARKET_STATE_SETTLED, seto_pb2.MARKET_STATE_VOIDED):
            for order in orders:
                self._cancel(batch, market, order, seto_pb2.ORDER_CANCELLED_ADMIN_REQUESTED)
            for traded in self.ledger.close(batch, market, winner):
                order = traded.last_order
                voided = order_event(ExecutionVoided, order, price=traded.avg_price, quantity=traded.quantity)
                batch.record(order.account, voided)
        return self._finish(batch)

    def book(self, market_id: int, depth: int | None = None) -> MarketBook | None:
        """A snapshot of a market's visible book (None for an unknown market).

        :param depth: levels per side; the engine's depth when None.
        """
        market = self.catalogue.market(market_id)
        if market is None:
            return None
        shown = self.depth if depth is None else depth
        contracts = []
        for contract in market.contracts:
            book = self._books[contract.id]
            contracts.append(
                ContractBook(
                    contract.id,
                    tuple(Level(price, total) for price, total in book.bids.visible(shown).items()),
                    tuple(Level(price, total) for price, total in book.offers.visible(shown).items()),
                )
            )
        return MarketBook(market_id, tuple(contracts), self._volume[market_id])

    def open_orders(self, account: Account, market_id: int | None = None) -> list[OpenOrder]:
        """The account's open orders, oldest first, in one market or in all."""
        return [
            order.view()
            for order in self._orders_by_account.get(account.username, {}).values()
            if market_id is None or order.market_id == market_id
        ]

    def open_order(self, account: Account, order_id: int) -> OpenOrder | None:
        """One of the account's open orders, or None."""
        order = self._own_open_order(account, order_id)
        return order.view() if order is not None else None

    # Matching

    def _own_open_order(self, account: Account, order_id: int) -> Order | None:
        order = self._orders.get(order_id)
        return order if order is not None and order.account is account else None

    def _would_cross_self(
        self, account: Account, contract_id: int, side: seto_pb2.Side, price: int, quantity: int
    ) -> bool:
        """Whether an order would reach one of the account's own resting orders."""
        opposite = self._books[contract_id].opposite(side)
        return opposite.reaches(price) and opposite.would_meet(account, price, quantity)

    def _match(self, batch: _Batch, market: Market, order: Order) -> None:
        opposite = self._books[order.contract_id].opposite(order.side)
        while order.available and opposite.reaches(order.price):
            resting = opposite.best()
            self._fill(batch, market, order, resting, min(order.available, resting.available))
            if not resting.available:
                self._unrest(resting)

    def _fill(self, batch: _Batch, market: Market, incoming: Order, resting: Order, quantity: int) -> None:
        """Trade ``quantity`` between an incoming and a resting order, at the resting price."""
        price = resting.price
        self._books[resting.contract_id].side(resting.side).take(resting, quantity)
        incoming.available -= quantity
        self.ledger.trade(batch, market, incoming, resting, price, quantity)
        for order in (incoming, resting):
            order.executed += quantity
            order.executed_value += quantity * price
        for order in (incoming, resting):
            batch.record(order.account, executed, order, price, quantity)
        self._volume[market.id] += quantity
        batch.executions.setdefault(incoming.contract_id, []).append(Execution(price, quantity, incoming.side))

    def _rest_or_expire(self, batch: _Batch, market: Market, order: Order) -> None:
        """Rest what is left of a new order, or cancel it at once if it is IOC."""
        if not order.available:
            self._remember_finished(order)
        elif order.tif == seto_pb2.IMMEDIATE_OR_CANCEL:
            self._remember_finished(order)
            self._cancel(batch, market, order, seto_pb2.ORDER_CANCELLED_INSUFFICIENT_LIQUIDITY)
        else:
            self._orders[order.order_id] = order
            self._orders_by_account.setdefault(order.account.username, {})[order.order_id] = order
            self._books[order.contract_id].side(order.side).add(order)

    def _cancel_where(
        self,
        batch: _Batch,
        market: Market,
        orders: list[Order],
        tifs: set[seto_pb2.TimeInForceType],
        reason: seto_pb2.OrderCancelledReason,
    ) -> None:
        for order in orders:
            if order.tif in tifs:
                self._cancel(batch, market, order, reason)

    def _cancel(
        self,
        batch: _Batch,
        market: Market,
        order: Order,
        reason: seto_pb2.OrderCancelledReason,
        reference: int | None = None,
    ) -> None:
        """Cancel the available quantity of an order, taking it off its book if it rests there."""
        if order.resting:
            self._touch_book(batch, order.contract_id)
            self._unrest(order)
        quantity = order.available
        self.ledger.release(batch, market, order, quantity)
        order.available = 0
        if reference is None:
            reference = order.reference
        batch.record(order.account, cancelled, order, reason, quantity, reference)

    def _unrest(self, order: Order) -> None:
        """Take a resting order off its book and out of the indexes; remember it finished."""
        self._books[order.contract_id].side(order.side).remove(order)
        del self._orders[order.order_id]
        del self._orders_by_account[order.account.username][order.order_id]
        self._remember_finished(order)

    def _remember_finished(self, order: Order) -> None:
        self._finished[order.order_id] = order.account.username
        while len(self._finished) > self._finished_order_memory:
            self._finished.popitem(last=False)

    # Market data and the end of a call

    def _touch_book(self, batch: _Batch, contract_id: int) -> None:
        batch.books[contract_id] = self._market_of_contract[contract_id]

    def _finish(self, batch: _Batch) -> list[EngineEvent]:
        """Add the market data deltas and balance changes to a call's events."""
        for contract_id, market_id in batch.books.items():
            book = self._books[contract_id]
            bids = book.bids.changes()
            offers = book.offers.changes()
            executions = tuple(batch.executions.get(contract_id, ()))
            if bids or offers or executions:
                batch.events.append(BookChanged(market_id, contract_id, bids, offers, executions))
        for account, balance, exposure in batch.accounts.values():
            if (account.balance, account.exposure) != (balance, exposure):
                batch.events.append(account.record(balance_changed, account, batch.balance_reason))
        return batch.events

    def _market_of(self, order: Order) -> Market:
        market = self.catalogue.market(order.market_id)
        assert market is not None, "orders only exist in markets of the catalogue"
        return market


_ORDER_REJECTED_FOR_STATE: dict[int, seto_pb2.OrderRejectedReason] = {
    seto_pb2.MARKET_STATE_NEW: seto_pb2.ORDER_REJECTED_MARKET_NOT_OPEN,
    seto_pb2.MARKET_STATE_HALTED: seto_pb2.ORDER_REJECTED_MARKET_HALTED,
    seto_pb2.MARKET_STATE_SETTLED: seto_pb2.ORDER_REJECTED_MARKET_SETTLED,
    seto_pb2.MARKET_STATE_VOIDED: seto_pb2.ORDER_REJECTED_MARKET_SETTLED,
}

_REPLACE_REJECTED_FOR_STATE: dict[int, seto_pb2.OrderCancelReplaceRejectedReason] = {
    seto_pb2.MARKET_STATE_NEW: seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_MARKET_NOT_OPEN,
    seto_pb2.MARKET_STATE_HALTED: seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_MARKET_HALTED,
    seto_pb2.MARKET_STATE_SETTLED: seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_MARKET_SETTLED,
    seto_pb2.MARKET_STATE_VOIDED: seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_MARKET_SETTLED,
}
_INVALID_DETAIL = {
    seto_pb2.ORDER_INVALID_INVALID_PRICE: "invalid price",
    seto_pb2.ORDER_INVALID_INVALID_QUANTITY: "invalid quantity",
}


_TIFS = frozenset(seto_pb2.TimeInForceType.values())


def _check_side_and_tif(side: seto_pb2.Side, tif: seto_pb2.TimeInForceType) -> None:
    if side not in (BUY, SELL):
        raise ValueError(f"unknown side {side}")
    if tif not in _TIFS:
        raise ValueError(f"unknown time in force {tif}")


def _label_fits(label: str | None) -> bool:
    return label is None or len(label) <= MAX_LABEL_LENGTH


def _invalid_reasons(price: int, quantity: int, any_price: bool) -> tuple[seto_pb2.OrderInvalidReason, ...]:
    valid_price = MIN_PRICE <= price <= MAX_PRICE if any_price else is_tick(price)
    if valid_price and quantity > 0:
        return ()
    reasons = []
    if not valid_price:
        reasons.append(seto_pb2.ORDER_INVALID_INVALID_PRICE)
    if quantity <= 0:
        reasons.append(seto_pb2.ORDER_INVALID_INVALID_QUANTITY)
    return tuple(reasons)
