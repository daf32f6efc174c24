"""The matching engine of the simulated exchange, with its account bookkeeping.

Sans-io: every public method takes plain values, changes the exchange's state
and returns the list of domain events that the change produced, in causal
order.  Account events carry the username they go to and the account
sequence assigned to them; market events carry the market id and go to that
market's subscribers.  Reasons are the seto enum values, ready to be copied
into protobuf messages.

Units follow PROTOCOL.md section 7: prices are percent odds in basis points
(1..9999) and quantities are payoffs in 1/10000 of the currency, as are
balances and exposures.

Money model
-----------
Cash moves only at settlement.  Until then, each account's *exposure* in a
market is the most it could lose over every choice of winning contract,
counting matched positions and, for each open order, whichever of "filled" or
"not filled" is worse in that outcome; sums are exact (in 1/10000 of a unit)
and the loss is rounded up to a whole unit once per market, so the exchange
never under-reserves.  A buy and a sell that hedge each other therefore
reserve less than their two liabilities.  The account's exposure is the sum
over markets; an order is rejected for insufficient funds when the exposure
with the order would exceed the balance.  At settlement the account's net
result in the market is added to its balance, rounded down (so a winner gets
at most what it won and a loser pays at most its exposure).
"""

from __future__ import annotations

from bisect import insort
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count

from smarkets_twisted.errors import SmarketsError
from smarkets_twisted.exchange.accounts import Account, Accounts
from smarkets_twisted.exchange.catalogue import Catalogue, Market, state_name
from smarkets_twisted.proto import seto_pb2

MIN_PRICE = 1
MAX_PRICE = 9999
#: A contract that wins pays out its whole quantity: price 10000 is certainty.
PRICE_SCALE = 10_000
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


# Domain events


@dataclass(frozen=True, kw_only=True)
class EngineEvent:
    """Anything the engine reports."""


@dataclass(frozen=True, kw_only=True)
class AccountEvent(EngineEvent):
    """An event for one account, numbered by that account's sequence and kept for replay."""

    username: str
    account_sequence: int


@dataclass(frozen=True, kw_only=True)
class MarketEvent(EngineEvent):
    """An event for the subscribers of one market."""

    market_id: int


@dataclass(frozen=True, kw_only=True)
class OrderInvalid(EngineEvent):
    """order_invalid: the order was malformed; every problem is listed.

    Not an account event: nothing changed on the account, and the message has
    no account sequence.
    """

    username: str
    reasons: tuple[seto_pb2.OrderInvalidReason, ...]
    request_seq: int | None
    reference: int | None


@dataclass(frozen=True, kw_only=True)
class OrderAccepted(AccountEvent):
    """order_accepted: the order was taken; fills, if any, follow."""

    order_id: int
    market_id: int
    contract_id: int
    side: seto_pb2.Side
    price: int
    quantity: int
    tif: seto_pb2.TimeInForceType
    request_seq: int | None
    reference: int | None
    label: str | None
    available_balance: int
    exposure: int


@dataclass(frozen=True, kw_only=True)
class OrderRejected(AccountEvent):
    """order_rejected: the order was refused."""

    reason: seto_pb2.OrderRejectedReason
    request_seq: int | None
    reference: int | None
    label: str | None


@dataclass(frozen=True, kw_only=True)
class OrderExecuted(AccountEvent):
    """order_executed: one fill of one order, sent to each of the two parties.

    ``price`` and ``quantity`` are the fill's; ``orig_price`` is the order's limit.
    """

    order_id: int
    market_id: int
    contract_id: int
    side: seto_pb2.Side
    price: int
    quantity: int
    orig_price: int
    total_executed_quantity: int
    executed_avg_price: int
    available_quantity: int
    label: str | None
    available_balance: int
    exposure: int


@dataclass(frozen=True, kw_only=True)
class OrderCancelled(AccountEvent):
    """order_cancelled: what was left of an order is gone.

    ``cancelled_quantity`` is the quantity that was still available.
    ``reference`` is the order_cancel request's when it gave one, else the order's own.
    """

    order_id: int
    reason: seto_pb2.OrderCancelledReason
    market_id: int
    contract_id: int
    side: seto_pb2.Side
    orig_price: int
    cancelled_quantity: int
    executed_quantity: int
    executed_avg_price: int
    reference: int | None
    label: str | None
    available_balance: int
    exposure: int


@dataclass(frozen=True, kw_only=True)
class CancelRejected(AccountEvent):
    """order_cancel_rejected."""

    order_id: int
    reason: seto_pb2.OrderCancelRejectedReason
    reference: int | None


@dataclass(frozen=True, kw_only=True)
class CancelAllAccepted(AccountEvent):
    """order_cancel_all_accepted; an order_cancelled follows for each order."""

    market_id: int | None
    reference: int | None


@dataclass(frozen=True, kw_only=True)
class CancelAllRejected(AccountEvent):
    """order_cancel_all_rejected (the market named does not exist)."""

    market_id: int | None
    reason: seto_pb2.OrderCancelAllRejectedReason
    reference: int | None


@dataclass(frozen=True, kw_only=True)
class QuantityReduced(AccountEvent):
    """order_quantity_reduced: the order's available quantity is now ``new_quantity``."""

    order_id: int
    new_quantity: int
    reason: seto_pb2.OrderQuantityReducedReason
    market_id: int
    contract_id: int
    side: seto_pb2.Side
    orig_price: int
    executed_quantity: int
    executed_avg_price: int
    reference: int | None
    label: str | None
    available_balance: int
    exposure: int


@dataclass(frozen=True, kw_only=True)
class ReduceRejected(AccountEvent):
    """order_quantity_reduce_rejected."""

    order_id: int
    new_quantity: int
    reason: seto_pb2.OrderQuantityReduceRejectedReason
    reference: int | None


@dataclass(frozen=True, kw_only=True)
class PendingReplace(AccountEvent):
    """order_pending_replace: a replace is under way; ``order_id`` is the new order's."""

    order_id: int
    orig_order_id: int
    price: int
    quantity: int
    market_id: int
    contract_id: int
    side: seto_pb2.Side
    reference: int | None
    label: str | None


@dataclass(frozen=True, kw_only=True)
class ReplaceAccepted(AccountEvent):
    """order_cancel_replace_accepted: the original is gone, the new order is live.

    ``quantity_left`` is what was still available on the original order.
    """

    order_id: int
    orig_order_id: int
    price: int
    quantity: int
    quantity_left: int
    market_id: int
    contract_id: int
    side: seto_pb2.Side
    reference: int | None
    label: str | None
    available_balance: int
    exposure: int


@dataclass(frozen=True, kw_only=True)
class ReplaceRejected(AccountEvent):
    """order_cancel_replace_rejected: the original order is unchanged.

    ``order_id`` and the market fields are None when the original order was
    not found.  ``detail`` says in words why, which matters where the schema
    has no fitting reason (invalid price or quantity, insufficient funds: these
    are sent as SERVICE_TEMPORARILY_UNAVAILABLE).
    """

    order_id: int | None
    orig_order_id: int
    reason: seto_pb2.OrderCancelReplaceRejectedReason
    detail: str
    market_id: int | None
    contract_id: int | None
    side: seto_pb2.Side | None
    reference: int | None
    label: str | None


@dataclass(frozen=True, kw_only=True)
class ExecutionVoided(AccountEvent):
    """order_execute_voided: a fill was undone because its market was voided."""

    order_id: int
    market_id: int
    contract_id: int
    side: seto_pb2.Side
    price: int
    quantity: int
    orig_price: int
    label: str | None
    available_balance: int
    exposure: int


@dataclass(frozen=True, kw_only=True)
class BalanceChanged(AccountEvent):
    """balance_changed: the account's balance or exposure moved."""

    reason: str
    balance: int
    available_balance: int
    exposure: int


@dataclass(frozen=True, kw_only=True)
class MarketStateChanged(MarketEvent):
    """market_state: the market entered ``state``; ``winner`` is set when settled."""

    state: seto_pb2.MarketStateType
    winner: int | None


@dataclass(frozen=True)
class Level:
    """A price level: its price and the total available quantity there (0: gone)."""

    price: int
    quantity: int


@dataclass(frozen=True)
class Execution:
    """A trade: its price, quantity, and the side of the incoming order that caused it."""

    price: int
    quantity: int
    aggressor_side: seto_pb2.Side


@dataclass(frozen=True, kw_only=True)
class BookChanged(MarketEvent):
    """contract_quotes: the visible levels that changed, best first, and the trades.

    A level that left the visible depth is reported with quantity 0, a level
    that entered it with its total, so that applying the deltas to the
    snapshot keeps an exact copy of the visible book.
    """

    contract_id: int
    bids: tuple[Level, ...]
    offers: tuple[Level, ...]
    executions: tuple[Execution, ...]


# Views


@dataclass(frozen=True)
class ContractBook:
    """One contract's visible book: bids best (highest) first, offers best (lowest) first."""

    contract_id: int
    bids: tuple[Level, ...]
    offers: tuple[Level, ...]


@dataclass(frozen=True)
class MarketBook:
    """A market_quotes snapshot: every contract's visible book and the volume traded."""

    market_id: int
    contracts: tuple[ContractBook, ...]
    executed_volume: int


@dataclass(frozen=True)
class OpenOrder:
    """A copy of one open order's state."""

    order_id: int
    username: str
    market_id: int
    contract_id: int
    side: seto_pb2.Side
    price: int
    quantity: int
    available_quantity: int
    executed_quantity: int
    tif: seto_pb2.TimeInForceType
    reference: int | None
    label: str | None


# Internal state


class _Order:
    """An order as the engine keeps it."""

    __slots__ = (
        "account",
        "available",
        "contract_id",
        "executed",
        "executed_value",
        "label",
        "market_id",
        "order_id",
        "price",
        "quantity",
        "reference",
        "side",
        "tif",
    )

    def __init__(
        self,
        order_id: int,
        account: Account,
        market_id: int,
        contract_id: int,
        side: seto_pb2.Side,
        price: int,
        quantity: int,
        tif: seto_pb2.TimeInForceType,
        reference: int | None,
        label: str | None,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.market_id = market_id
        self.contract_id = contract_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.available = quantity
        self.executed = 0
        self.executed_value = 0
        self.tif = tif
        self.reference = reference
        self.label = label

    @property
    def executed_avg_price(self) -> int:
        """The quantity-weighted average fill price, rounded half up (0 before any fill)."""
        if not self.executed:
            return 0
        return (2 * self.executed_value + self.executed) // (2 * self.executed)

    def view(self) -> OpenOrder:
        return OpenOrder(
            self.order_id,
            self.account.username,
            self.market_id,
            self.contract_id,
            self.side,
            self.price,
            self.quantity,
            self.available,
            self.executed,
            self.tif,
            self.reference,
            self.label,
        )


class _Position:
    """One account's stake in one market, as profit per winning contract.

    Profit if contract ``c`` wins is ``base + wins.get(c, 0)``, in 1/10000 of
    a unit, counting matched trades and, for open orders, their worse case.
    """

    __slots__ = ("account", "base", "exposure", "wins")

    def __init__(self, account: Account) -> None:
        self.account = account
        self.base = 0
        self.wins: dict[int, int] = {}
        self.exposure = 0

    def add_open(self, order: _Order, quantity: int) -> None:
        """Reserve (or, with a negative quantity, release) open quantity of an order."""
        if order.side == BUY:
            # Loses quantity*price unless its contract wins; then, unfilled is worst.
            self.base -= quantity * order.price
            self._win(order.contract_id, quantity * order.price)
        else:
            # Loses quantity*(1-price) if its contract wins; else unfilled is worst.
            self._win(order.contract_id, -quantity * (PRICE_SCALE - order.price))

    def add_trade(self, side: seto_pb2.Side, contract_id: int, price: int, quantity: int) -> None:
        """Count a matched trade: pays ``quantity`` to the buyer if the contract wins."""
        sign = 1 if side == BUY else -1
        self.base -= sign * quantity * price
        self._win(contract_id, sign * quantity * PRICE_SCALE)

    def worst_loss(self, market: Market) -> int:
        """The most this position can lose, in whole units, rounded up."""
        worst = min(self.base + self.wins.get(contract.id, 0) for contract in market.contracts)
        return max(0, -(worst // PRICE_SCALE))

    def result(self, winner: int) -> int:
        """The net result in whole units if ``winner`` wins, rounded down."""
        return (self.base + self.wins.get(winner, 0)) // PRICE_SCALE

    def _win(self, contract_id: int, amount: int) -> None:
        self.wins[contract_id] = self.wins.get(contract_id, 0) + amount


class _BookSide:
    """The resting orders of one side of one contract, by price then arrival."""

    def __init__(self, best_is_highest: bool) -> None:
        self.best_is_highest = best_is_highest
        self._levels: dict[int, dict[int, _Order]] = {}
        self._prices: list[int] = []

    def add(self, order: _Order) -> None:
        level = self._levels.get(order.price)
        if level is None:
            level = self._levels[order.price] = {}
            insort(self._prices, order.price)
        level[order.order_id] = order

    def remove(self, order: _Order) -> None:
        level = self._levels[order.price]
        del level[order.order_id]
        if not level:
            del self._levels[order.price]
            self._prices.remove(order.price)

    def best(self) -> _Order | None:
        """The order first in line: best price, earliest arrival."""
        if not self._prices:
            return None
        price = self._prices[-1] if self.best_is_highest else self._prices[0]
        return next(iter(self._levels[price].values()))

    def prices(self) -> Iterator[int]:
        """Prices best first."""
        return reversed(self._prices) if self.best_is_highest else iter(self._prices)

    def in_priority(self) -> Iterator[_Order]:
        """Every order in the order they would be matched."""
        for price in self.prices():
            yield from self._levels[price].values()

    def visible(self, depth: int | None) -> dict[int, int]:
        """Total available quantity per price, for the best ``depth`` prices."""
        result: dict[int, int] = {}
        for price in self.prices():
            if depth is not None and len(result) >= depth:
                break
            result[price] = sum(order.available for order in self._levels[price].values())
        return result

    def crosses(self, price: int, limit: int) -> bool:
        """Whether a resting order at ``price`` matches an incoming order at ``limit``."""
        return price >= limit if self.best_is_highest else price <= limit


class _ContractBook:
    """Bids and offers of one contract."""

    def __init__(self) -> None:
        self.bids = _BookSide(best_is_highest=True)
        self.offers = _BookSide(best_is_highest=False)

    def side(self, side: seto_pb2.Side) -> _BookSide:
        return self.bids if side == BUY else self.offers

    def opposite(self, side: seto_pb2.Side) -> _BookSide:
        return self.offers if side == BUY else self.bids


@dataclass
class _Fill:
    """A trade kept until its market settles, so that voiding can undo it."""

    buy: _Order
    sell: _Order
    price: int
    quantity: int


class _Batch:
    """What one engine call did: its events, the books and accounts it touched."""

    def __init__(self, balance_reason: str) -> None:
        self.balance_reason = balance_reason
        self.events: list[EngineEvent] = []
        self.books: dict[int, tuple[int, dict[int, int], dict[int, int]]] = {}
        self.executions: dict[int, list[Execution]] = {}
        self.accounts: dict[str, tuple[Account, int, int]] = {}

    def record(self, account: Account, build: Callable[[int], AccountEvent]) -> None:
        self.touch_account(account)
        self.events.append(account.record(build))

    def touch_account(self, account: Account) -> None:
        if account.username not in self.accounts:
            self.accounts[account.username] = (account, account.balance, account.exposure)


class MatchingEngine:
    """Order books for every contract of the catalogue, and the accounts' money.

    :param depth: price levels per side shown in snapshots and deltas (None: all).
    :param first_order_id: the id given to the first order.
    :param finished_order_memory: how many finished orders to remember, so that
        acting on one is answered "too late" rather than "not found".
    """

    def __init__(
        self,
        accounts: Accounts,
        catalogue: Catalogue,
        depth: int | None = DEFAULT_DEPTH,
        first_order_id: int = 1,
        finished_order_memory: int = DEFAULT_FINISHED_ORDER_MEMORY,
    ) -> None:
        if depth is not None and depth < 1:
            raise ValueError("depth must be at least 1")
        self.accounts = accounts
        self.catalogue = catalogue
        self.depth = depth
        self._order_ids = count(first_order_id)
        self._finished_order_memory = finished_order_memory
        self._books: dict[int, _ContractBook] = {}
        self._market_of_contract: dict[int, int] = {}
        self._orders: dict[int, _Order] = {}
        self._orders_by_market: dict[int, dict[int, _Order]] = {}
        self._orders_by_account: dict[str, dict[int, _Order]] = {}
        self._finished: OrderedDict[int, str] = OrderedDict()
        self._positions: dict[int, dict[str, _Position]] = {}
        self._fills: dict[int, list[_Fill]] = {}
        self._volume: dict[int, int] = {}
        self._in_play: set[int] = set()
        for market in catalogue:
            self._positions[market.id] = {}
            self._orders_by_market[market.id] = {}
            self._fills[market.id] = []
            self._volume[market.id] = 0
            for contract in market.contracts:
                self._books[contract.id] = _ContractBook()
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
        reasons = _invalid_reasons(price, quantity)
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
            order = _Order(
                next(self._order_ids), account, market_id, contract_id, side, price, quantity, tif, reference, label
            )
            if self._reserve(batch, market, order, None):
                batch.record(account, _accepted(order, request_seq))
                self._touch_book(batch, contract_id)
                self._match(batch, market, order)
                self._rest_or_expire(batch, market, order)
                return self._finish(batch)
            reason = seto_pb2.ORDER_REJECTED_INSUFFICIENT_FUNDS
        batch.record(account, _rejected(account, reason, request_seq, reference, label))
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
            batch.record(account, _cancel_rejected(account, order_id, reason, reference))
            return self._finish(batch)
        market = self._market_of(order)
        self._cancel_order(batch, market, order, seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED, reference)
        return self._finish(batch)

    def cancel_all(
        self, account: Account, market_id: int | None = None, reference: int | None = None
    ) -> list[EngineEvent]:
        """Cancel every open order of the account, in one market or in all."""
        batch = _Batch("cancel")
        if market_id is not None and self.catalogue.market(market_id) is None:
            batch.record(account, _cancel_all_rejected(account, market_id, reference))
            return self._finish(batch)
        batch.record(account, _cancel_all_accepted(account, market_id, reference))
        orders = [
            order
            for order in self._orders_by_account.get(account.username, {}).values()
            if market_id is None or order.market_id == market_id
        ]
        for order in orders:
            self._cancel_order(batch, self._market_of(order), order, seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED, None)
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
            self._position(market, account).add_open(order, new_quantity - order.available)
            order.available = new_quantity
            self._refresh_exposure(batch, market, account)
            batch.record(account, _reduced(order, reference))
        else:
            if order is not None:
                reason = seto_pb2.ORDER_QUANTITY_REDUCE_REJECTED_INVALID_NEW_QUANTITY
            elif self._finished.get(order_id) == account.username:
                reason = seto_pb2.ORDER_QUANTITY_REDUCE_REJECTED_NOT_LIVE
            else:
                reason = seto_pb2.ORDER_QUANTITY_REDUCE_REJECTED_NOT_FOUND
            batch.record(account, _reduce_rejected(account, order_id, new_quantity, reason, reference))
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
            batch.record(account, _replace_not_found(account, order_id, reference, label))
            return self._finish(batch)
        market = self._market_of(orig)
        new = _Order(
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
        batch.record(account, _pending_replace(new, orig, reference))
        invalid = _invalid_reasons(price, quantity)
        unavailable = seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_SERVICE_TEMPORARILY_UNAVAILABLE
        if not label_fits:
            reason, detail = unavailable, f"label longer than {MAX_LABEL_LENGTH} characters"
        elif invalid:
            reason, detail = unavailable, " and ".join(_INVALID_DETAIL[item] for item in invalid)
        elif market.state in _REPLACE_REJECTED_FOR_STATE:
            reason, detail = _REPLACE_REJECTED_FOR_STATE[market.state], f"market is {market.state_name}"
        elif self._would_cross_self(account, new.contract_id, new.side, price, quantity):
            reason, detail = seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_CROSSED_SELF, "would cross own order"
        elif not self._reserve(batch, market, new, orig):
            reason, detail = unavailable, "insufficient funds"
        else:
            self._touch_book(batch, orig.contract_id)
            quantity_left = orig.available
            self._unrest(orig)
            orig.available = 0
            batch.record(account, _replace_accepted(new, orig, quantity_left, reference))
            self._match(batch, market, new)
            self._rest_or_expire(batch, market, new)
            return self._finish(batch)
        batch.record(account, _replace_rejected(new, orig, reason, detail, reference))
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
        - voided: open orders are cancelled, every trade is voided, exposure released.

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
        orders = list(self._orders_by_market[market_id].values())
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
                self._cancel_order(batch, market, order, seto_pb2.ORDER_CANCELLED_ADMIN_REQUESTED, None)
            self._close(batch, market, winner)
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

    def _own_open_order(self, account: Account, order_id: int) -> _Order | None:
        order = self._orders.get(order_id)
        return order if order is not None and order.account is account else None

    def _would_cross_self(
        self, account: Account, contract_id: int, side: seto_pb2.Side, price: int, quantity: int
    ) -> bool:
        """Whether an order would reach one of the account's own resting orders."""
        opposite = self._books[contract_id].opposite(side)
        remaining = quantity
        for resting in opposite.in_priority():
            if remaining <= 0 or not opposite.crosses(resting.price, price):
                return False
            if resting.account is account:
                return True
            remaining -= resting.available
        return False

    def _match(self, batch: _Batch, market: Market, order: _Order) -> None:
        opposite = self._books[order.contract_id].opposite(order.side)
        while order.available:
            resting = opposite.best()
            if resting is None or not opposite.crosses(resting.price, order.price):
                return
            self._fill(batch, market, order, resting, min(order.available, resting.available))
            if not resting.available:
                self._unrest(resting)

    def _fill(self, batch: _Batch, market: Market, incoming: _Order, resting: _Order, quantity: int) -> None:
        """Trade ``quantity`` between an incoming and a resting order, at the resting price."""
        price = resting.price
        for order in (incoming, resting):
            position = self._position(market, order.account)
            position.add_open(order, -quantity)
            position.add_trade(order.side, order.contract_id, price, quantity)
            order.available -= quantity
            order.executed += quantity
            order.executed_value += quantity * price
            self._refresh_exposure(batch, market, order.account)
        for order in (incoming, resting):
            batch.record(order.account, _executed(order, price, quantity))
        buy, sell = (incoming, resting) if incoming.side == BUY else (resting, incoming)
        self._fills[market.id].append(_Fill(buy, sell, price, quantity))
        self._volume[market.id] += quantity
        batch.executions.setdefault(incoming.contract_id, []).append(Execution(price, quantity, incoming.side))

    def _rest_or_expire(self, batch: _Batch, market: Market, order: _Order) -> None:
        """Rest what is left of a new order, or cancel it at once if it is IOC."""
        if not order.available:
            self._remember_finished(order)
        elif order.tif == seto_pb2.IMMEDIATE_OR_CANCEL:
            self._remember_finished(order)
            self._release(batch, market, order, seto_pb2.ORDER_CANCELLED_INSUFFICIENT_LIQUIDITY, None)
        else:
            self._orders[order.order_id] = order
            self._orders_by_market[order.market_id][order.order_id] = order
            self._orders_by_account.setdefault(order.account.username, {})[order.order_id] = order
            self._books[order.contract_id].side(order.side).add(order)

    def _cancel_where(
        self,
        batch: _Batch,
        market: Market,
        orders: list[_Order],
        tifs: set[seto_pb2.TimeInForceType],
        reason: seto_pb2.OrderCancelledReason,
    ) -> None:
        for order in orders:
            if order.tif in tifs:
                self._cancel_order(batch, market, order, reason, None)

    def _cancel_order(
        self,
        batch: _Batch,
        market: Market,
        order: _Order,
        reason: seto_pb2.OrderCancelledReason,
        reference: int | None,
    ) -> None:
        """Take a resting order off the book and release what it reserved."""
        self._touch_book(batch, order.contract_id)
        self._unrest(order)
        self._release(batch, market, order, reason, reference)

    def _release(
        self,
        batch: _Batch,
        market: Market,
        order: _Order,
        reason: seto_pb2.OrderCancelledReason,
        reference: int | None,
    ) -> None:
        """Cancel the available quantity of an order that is not (or no longer) resting."""
        cancelled = order.available
        self._position(market, order.account).add_open(order, -cancelled)
        order.available = 0
        self._refresh_exposure(batch, market, order.account)
        batch.record(order.account, _cancelled(order, reason, cancelled, reference))

    def _unrest(self, order: _Order) -> None:
        """Take a resting order off its book and out of the indexes; remember it finished."""
        self._books[order.contract_id].side(order.side).remove(order)
        del self._orders[order.order_id]
        del self._orders_by_market[order.market_id][order.order_id]
        del self._orders_by_account[order.account.username][order.order_id]
        self._remember_finished(order)

    def _remember_finished(self, order: _Order) -> None:
        self._finished[order.order_id] = order.account.username
        while len(self._finished) > self._finished_order_memory:
            self._finished.popitem(last=False)

    # Money

    def _position(self, market: Market, account: Account) -> _Position:
        positions = self._positions[market.id]
        position = positions.get(account.username)
        if position is None:
            position = positions[account.username] = _Position(account)
        return position

    def _refresh_exposure(self, batch: _Batch, market: Market, account: Account) -> None:
        """Recompute the account's exposure in one market, after its position changed."""
        batch.touch_account(account)
        position = self._position(market, account)
        exposure = position.worst_loss(market)
        account.exposure += exposure - position.exposure
        position.exposure = exposure

    def _reserve(self, batch: _Batch, market: Market, order: _Order, replacing: _Order | None) -> bool:
        """Reserve a new order's open quantity (releasing ``replacing``'s); False if unaffordable."""
        position = self._position(market, order.account)
        position.add_open(order, order.quantity)
        if replacing is not None:
            position.add_open(replacing, -replacing.available)
        self._refresh_exposure(batch, market, order.account)
        if order.account.exposure <= order.account.balance:
            return True
        position.add_open(order, -order.quantity)
        if replacing is not None:
            position.add_open(replacing, replacing.available)
        self._refresh_exposure(batch, market, order.account)
        return False

    def _close(self, batch: _Batch, market: Market, winner: int | None) -> None:
        """Settle (with a winner) or void (without) a market whose orders are all cancelled."""
        positions = self._positions[market.id]
        for position in positions.values():
            batch.touch_account(position.account)
            if winner is not None:
                position.account.balance += position.result(winner)
            position.account.exposure -= position.exposure
        if winner is None:
            for fill in self._fills[market.id]:
                for order in (fill.buy, fill.sell):
                    batch.record(order.account, _execution_voided(order, fill))
        positions.clear()
        self._fills[market.id].clear()

    # Market data and the end of a call

    def _touch_book(self, batch: _Batch, contract_id: int) -> None:
        if contract_id not in batch.books:
            book = self._books[contract_id]
            market_id = self._market_of_contract[contract_id]
            batch.books[contract_id] = (market_id, book.bids.visible(self.depth), book.offers.visible(self.depth))

    def _finish(self, batch: _Batch) -> list[EngineEvent]:
        """Add the market data deltas and balance changes to a call's events."""
        for contract_id, (market_id, bids_before, offers_before) in batch.books.items():
            book = self._books[contract_id]
            bids = _changed_levels(bids_before, book.bids.visible(self.depth), best_is_highest=True)
            offers = _changed_levels(offers_before, book.offers.visible(self.depth), best_is_highest=False)
            executions = tuple(batch.executions.get(contract_id, ()))
            if bids or offers or executions:
                batch.events.append(
                    BookChanged(
                        market_id=market_id,
                        contract_id=contract_id,
                        bids=bids,
                        offers=offers,
                        executions=executions,
                    )
                )
        for account, balance, exposure in batch.accounts.values():
            if (account.balance, account.exposure) != (balance, exposure):
                batch.events.append(account.record(_balance_changed(account, batch.balance_reason)))
        return batch.events

    def _market_of(self, order: _Order) -> Market:
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


def _check_side_and_tif(side: seto_pb2.Side, tif: seto_pb2.TimeInForceType) -> None:
    if side not in (BUY, SELL):
        raise ValueError(f"unknown side {side}")
    if tif not in seto_pb2.TimeInForceType.values():
        raise ValueError(f"unknown time in force {tif}")


def _label_fits(label: str | None) -> bool:
    return label is None or len(label) <= MAX_LABEL_LENGTH


def _invalid_reasons(price: int, quantity: int) -> tuple[seto_pb2.OrderInvalidReason, ...]:
    reasons = []
    if not MIN_PRICE <= price <= MAX_PRICE:
        reasons.append(seto_pb2.ORDER_INVALID_INVALID_PRICE)
    if quantity <= 0:
        reasons.append(seto_pb2.ORDER_INVALID_INVALID_QUANTITY)
    return tuple(reasons)


def _changed_levels(before: dict[int, int], after: dict[int, int], best_is_highest: bool) -> tuple[Level, ...]:
    prices = sorted(set(before) | set(after), reverse=best_is_highest)
    return tuple(Level(price, after.get(price, 0)) for price in prices if before.get(price, 0) != after.get(price, 0))


# Event builders: each returns a function of the account sequence.


def _accepted(order: _Order, request_seq: int | None) -> Callable[[int], AccountEvent]:
    account = order.account
    return lambda sequence: OrderAccepted(
        username=account.username,
        account_sequence=sequence,
        order_id=order.order_id,
        market_id=order.market_id,
        contract_id=order.contract_id,
        side=order.side,
        price=order.price,
        quantity=order.quantity,
        tif=order.tif,
        request_seq=request_seq,
        reference=order.reference,
        label=order.label,
        available_balance=account.available_balance,
        exposure=account.exposure,
    )


def _rejected(
    account: Account,
    reason: seto_pb2.OrderRejectedReason,
    request_seq: int | None,
    reference: int | None,
    label: str | None,
) -> Callable[[int], AccountEvent]:
    return lambda sequence: OrderRejected(
        username=account.username,
        account_sequence=sequence,
        reason=reason,
        request_seq=request_seq,
        reference=reference,
        label=label,
    )


def _executed(order: _Order, price: int, quantity: int) -> Callable[[int], AccountEvent]:
    account = order.account
    return lambda sequence: OrderExecuted(
        username=account.username,
        account_sequence=sequence,
        order_id=order.order_id,
        market_id=order.market_id,
        contract_id=order.contract_id,
        side=order.side,
        price=price,
        quantity=quantity,
        orig_price=order.price,
        total_executed_quantity=order.executed,
        executed_avg_price=order.executed_avg_price,
        available_quantity=order.available,
        label=order.label,
        available_balance=account.available_balance,
        exposure=account.exposure,
    )


def _cancelled(
    order: _Order, reason: seto_pb2.OrderCancelledReason, cancelled: int, reference: int | None
) -> Callable[[int], AccountEvent]:
    account = order.account
    return lambda sequence: OrderCancelled(
        username=account.username,
        account_sequence=sequence,
        order_id=order.order_id,
        reason=reason,
        market_id=order.market_id,
        contract_id=order.contract_id,
        side=order.side,
        orig_price=order.price,
        cancelled_quantity=cancelled,
        executed_quantity=order.executed,
        executed_avg_price=order.executed_avg_price,
        reference=reference if reference is not None else order.reference,
        label=order.label,
        available_balance=account.available_balance,
        exposure=account.exposure,
    )


def _cancel_rejected(
    account: Account, order_id: int, reason: seto_pb2.OrderCancelRejectedReason, reference: int | None
) -> Callable[[int], AccountEvent]:
    return lambda sequence: CancelRejected(
        username=account.username, account_sequence=sequence, order_id=order_id, reason=reason, reference=reference
    )


def _cancel_all_accepted(
    account: Account, market_id: int | None, reference: int | None
) -> Callable[[int], AccountEvent]:
    return lambda sequence: CancelAllAccepted(
        username=account.username, account_sequence=sequence, market_id=market_id, reference=reference
    )


def _cancel_all_rejected(account: Account, market_id: int, reference: int | None) -> Callable[[int], AccountEvent]:
    return lambda sequence: CancelAllRejected(
        username=account.username,
        account_sequence=sequence,
        market_id=market_id,
        reason=seto_pb2.ORDER_CANCEL_ALL_REJECTED_UNKNOWN_ERROR,
        reference=reference,
    )


def _reduced(order: _Order, reference: int | None) -> Callable[[int], AccountEvent]:
    account = order.account
    return lambda sequence: QuantityReduced(
        username=account.username,
        account_sequence=sequence,
        order_id=order.order_id,
        new_quantity=order.available,
        reason=seto_pb2.ORDER_QUANTITY_REDUCED_MEMBER_REQUESTED,
        market_id=order.market_id,
        contract_id=order.contract_id,
        side=order.side,
        orig_price=order.price,
        executed_quantity=order.executed,
        executed_avg_price=order.executed_avg_price,
        reference=reference,
        label=order.label,
        available_balance=account.available_balance,
        exposure=account.exposure,
    )


def _reduce_rejected(
    account: Account,
    order_id: int,
    new_quantity: int,
    reason: seto_pb2.OrderQuantityReduceRejectedReason,
    reference: int | None,
) -> Callable[[int], AccountEvent]:
    return lambda sequence: ReduceRejected(
        username=account.username,
        account_sequence=sequence,
        order_id=order_id,
        new_quantity=new_quantity,
        reason=reason,
        reference=reference,
    )


def _pending_replace(new: _Order, orig: _Order, reference: int | None) -> Callable[[int], AccountEvent]:
    return lambda sequence: PendingReplace(
        username=new.account.username,
        account_sequence=sequence,
        order_id=new.order_id,
        orig_order_id=orig.order_id,
        price=new.price,
        quantity=new.quantity,
        market_id=new.market_id,
        contract_id=new.contract_id,
        side=new.side,
        reference=reference,
        label=new.label,
    )


def _replace_accepted(
    new: _Order, orig: _Order, quantity_left: int, reference: int | None
) -> Callable[[int], AccountEvent]:
    account = new.account
    return lambda sequence: ReplaceAccepted(
        username=account.username,
        account_sequence=sequence,
        order_id=new.order_id,
        orig_order_id=orig.order_id,
        price=new.price,
        quantity=new.quantity,
        quantity_left=quantity_left,
        market_id=new.market_id,
        contract_id=new.contract_id,
        side=new.side,
        reference=reference,
        label=new.label,
        available_balance=account.available_balance,
        exposure=account.exposure,
    )


def _replace_rejected(
    new: _Order,
    orig: _Order,
    reason: seto_pb2.OrderCancelReplaceRejectedReason,
    detail: str,
    reference: int | None,
) -> Callable[[int], AccountEvent]:
    return lambda sequence: ReplaceRejected(
        username=new.account.username,
        account_sequence=sequence,
        order_id=new.order_id,
        orig_order_id=orig.order_id,
        reason=reason,
        detail=detail,
        market_id=new.market_id,
        contract_id=new.contract_id,
        side=new.side,
        reference=reference,
        label=new.label,
    )


def _replace_not_found(
    account: Account, orig_order_id: int, reference: int | None, label: str | None
) -> Callable[[int], AccountEvent]:
    return lambda sequence: ReplaceRejected(
        username=account.username,
        account_sequence=sequence,
        order_id=None,
        orig_order_id=orig_order_id,
        reason=seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_TOO_LATE,
        detail="order not found or no longer open",
        market_id=None,
        contract_id=None,
        side=None,
        reference=reference,
        label=label,
    )


def _execution_voided(order: _Order, fill: _Fill) -> Callable[[int], AccountEvent]:
    account = order.account
    return lambda sequence: ExecutionVoided(
        username=account.username,
        account_sequence=sequence,
        order_id=order.order_id,
        market_id=order.market_id,
        contract_id=order.contract_id,
        side=order.side,
        price=fill.price,
        quantity=fill.quantity,
        orig_price=order.price,
        label=order.label,
        available_balance=account.available_balance,
        exposure=account.exposure,
    )


def _balance_changed(account: Account, reason: str) -> Callable[[int], AccountEvent]:
    return lambda sequence: BalanceChanged(
        username=account.username,
        account_sequence=sequence,
        reason=reason,
        balance=account.balance,
        available_balance=account.available_balance,
        exposure=account.exposure,
    )
