"""Orders as the account sees them: one `Order` per order_create, moved by every event.

``factory.order(...)`` creates the Order when the request is queued; the
answer (accepted, rejected, invalid, matched by the order's client
reference, which the library always sets) and then the account events
(executed, cancelled, reduced, replace pending/accepted/rejected, execution
voided or confirmed, order voided, cancel or reduce rejected), matched by
order id, move it.  A replacement is an Order of its own that ``replaces``
the original.

What the schema says of voids, reductions and confirmations, as read here
(the simulated exchange sends neither ``order_voided`` nor ``order_reduced``,
and PROTOCOL.md does not say what their fields mean): an ``order_executed``
with a ``pending_timeout`` (in play) is a fill that counts at once but stands
only once ``order_execute_confirmed`` says so; ``order_execute_voided`` takes
one execution back (a pending one, or any when its market is voided).
``order_voided`` voids ``quantity`` of the order's ``source_quantity`` (its
executed and open quantity before the void); ``executed_quantity`` is what
stays executed after it, so the void takes back the fills above that and the
rest of ``quantity`` leaves the open quantity.  Without ``executed_quantity``
it takes fills back first: open quantity counts whichever of filled or not is
worse, so that reading can only overstate the exposure, never understate it.
A void of all of ``source_quantity`` voids the whole order.  ``order_reduced``
is the exchange reducing an order unasked (``order_quantity_reduced`` answers
the member's ``order_quantity_reduce``): its ``available_quantity`` is the
open quantity now, its ``executed_quantity`` what stays executed (fills above
it are taken back).  Without ``available_quantity``, ``quantity`` is read as
the quantity taken off, or as the order's new quantity, whichever leaves more
open (the reading that can only overstate).  Listeners hear a fill taken
back as a fill of negative quantity, at the price it was made at.

Nothing is applied twice: account events carry an increasing account
sequence, and one at or below the last applied (an account-sequence replay
after a new session, or a restart from a saved sequence) is skipped.  An
event that does not fit the order's state is logged, not applied.  An order
whose Deferred failed without the exchange's answer (session lost, timeout,
cancelled...) is NOT_SENT if the request layer says it never went out, else
UNKNOWN until an event settles it.  So is a live order when the session ends:
the exchange may cancel it (``cancel_all_on_failure``) or forget it (a
restart); the next session's events for it bring it back to life (a refusal
for another reason, the throttle's, says nothing of it), and a cancel or
replace refused because the exchange no longer has it (not found, not live,
too late) closes it as GONE.  A fill heard after that still stands: the
refusal may overtake the fill that made it too late.

An order placed before this run, or by another session of the account, is
adopted at its first event: a fill, a cancellation or a void.

Closed orders are kept up to ``max_closed`` (oldest forgotten first), so the
memory held is bounded however long the client runs.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, NamedTuple

from twisted.logger import Logger
from twisted.python.failure import Failure

from smarkets_twisted import errors
from smarkets_twisted.handlers import ClientListener, HandlerRegistry, notify
from smarkets_twisted.payloads import enum_name
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.trading.prices import SIDE_NAMES

#: Closed orders kept for queries by default.
MAX_CLOSED = 10_000


class OrderState(enum.Enum):
    PENDING = "pending"  # queued or sent; no answer yet
    UNKNOWN = "unknown"  # sent, then no answer (session lost, timeout, cancelled): the exchange may have it
    LIVE = "live"  # accepted, with quantity left to match
    FILLED = "filled"
    CANCELLED = "cancelled"  # by request, reduction, halt, or an IOC's unmatched rest
    REPLACED = "replaced"
    VOIDED = "voided"  # closed by the exchange's void: its open rest and the fills it took back do not stand
    GONE = "gone"  # the exchange no longer has it (a refusal said so): how it ended is unknown here
    REJECTED = "rejected"
    INVALID = "invalid"
    NOT_SENT = "not sent"  # failed before it left this process

    @property
    def closed(self) -> bool:
        return self not in _OPEN_STATES


_OPEN_STATES = frozenset({OrderState.PENDING, OrderState.UNKNOWN, OrderState.LIVE})


#: The first history entry of an order this client did not place in this run.
ADOPTED = "adopted"

#: Refusals of a cancel, reduce or replace that say the order is no longer open on the exchange.
_GONE_REASONS = frozenset({
    "ORDER_CANCEL_REJECTED_NOT_FOUND", "ORDER_CANCEL_REJECTED_NOT_LIVE", "ORDER_CANCEL_REJECTED_TOO_LATE",
    "ORDER_QUANTITY_REDUCE_REJECTED_NOT_FOUND", "ORDER_QUANTITY_REDUCE_REJECTED_NOT_LIVE",
    "ORDER_CANCEL_REPLACE_REJECTED_TOO_LATE",
})


def is_gone_reason(reason_name: str | None) -> bool:
    """Whether a refusal's reason says the order is no longer open on the exchange."""
    return reason_name in _GONE_REASONS


class OrderEvent(NamedTuple):
    """One entry of an order's history."""

    name: str
    account_sequence: int | None
    state: OrderState


class Order:
    """One order and everything the exchange said about it."""

    # A client may hold thousands: no per-order dict.
    __slots__ = ("market_id", "contract_id", "side", "price", "quantity", "reference", "label", "tif", "order_id",
                 "state", "executed_quantity", "executed_value", "fills", "unconfirmed_quantity",
                 "remaining_quantity", "reason", "reason_name", "replaces", "replaced_by", "replace_pending",
                 "history")

    def __init__(
        self,
        market_id: int,
        contract_id: int,
        side: int,
        price: int,
        quantity: int,
        reference: int | None = None,
        label: str | None = None,
        tif: int = seto_pb2.GOOD_TIL_CANCELLED,
    ) -> None:
        self.market_id = market_id
        self.contract_id = contract_id
        self.side = side
        #: The limit price and the quantity asked for.
        self.price = price
        self.quantity = quantity
        self.reference = reference
        self.label = label
        self.tif = tif
        self.order_id: int | None = None
        self.state = OrderState.PENDING
        self.executed_quantity = 0
        #: Sum of price x quantity over the fills, for an exact average.
        self.executed_value = 0
        #: Quantity executed at each price, in fills this client heard (so its
        #: positions count them), less what was voided.
        self.fills: dict[int, int] = {}
        #: Executed in fills the exchange reported pending, not yet confirmed.
        self.unconfirmed_quantity = 0
        #: Open on the book (or, before an answer, asked for); 0 once closed.
        self.remaining_quantity = quantity
        #: The reason enum value of a rejection or cancellation, and its name.
        self.reason: int | None = None
        self.reason_name: str | None = None
        #: The order this one replaces, and the order that replaced this one.
        self.replaces: int | None = None
        self.replaced_by: int | None = None
        self.replace_pending = False
        self.history: list[OrderEvent] = []

    def __repr__(self) -> str:
        side = SIDE_NAMES.get(self.side, self.side)
        return (f"<Order {self.order_id} {self.state.value} {side} {self.quantity} at {self.price}"
                f" executed={self.executed_quantity} remaining={self.remaining_quantity}>")

    @property
    def closed(self) -> bool:
        return self.state.closed

    @property
    def adopted(self) -> bool:
        """Placed before this run or by another session: first seen at an account event."""
        return bool(self.history) and self.history[0].name == ADOPTED

    @property
    def average_price(self) -> Decimal | None:
        """The exact average executed price, in wire units; None before a fill."""
        if not self.executed_quantity:
            return None
        return Decimal(self.executed_value) / Decimal(self.executed_quantity)

    def _fill(self, price: int, quantity: int) -> None:
        """Count a fill (a negative quantity takes one back)."""
        self.executed_quantity += quantity
        if self.executed_quantity == 0:
            # All taken back: a voided market's void names the fills' rounded average
            # price, not theirs, so nothing would be left exactly at 0 by subtraction.
            self.executed_value = 0
            self.fills.clear()
            return
        self.executed_value += price * quantity
        left = self.fills.get(price, 0) + quantity
        if left > 0:
            self.fills[price] = left
        else:
            self.fills.pop(price, None)

    def _move(self, name: str, sequence: int | None, state: OrderState | None = None) -> None:
        if state is not None:
            self.state = state
        if self.state.closed:
            self.remaining_quantity = 0
        self.history.append(OrderEvent(name, sequence, self.state))


class OrderListener:
    """Hooks for order events; override the ones you need."""

    def order_changed(self, order: Order) -> None:
        """The order moved (any event, fills included)."""

    def order_filled(self, order: Order, price: int, quantity: int) -> None:
        """A fill of ``quantity`` at ``price``; a voided fill comes with a negative quantity."""


class Orders(ClientListener):
    """Every order of the account this client has seen: ``factory.orders``."""

    log = Logger()

    def __init__(self, handlers: HandlerRegistry, max_closed: int = MAX_CLOSED) -> None:
        self.max_closed = max_closed
        #: The last account sequence applied.
        self.account_sequence: int | None = None
        self._by_id: dict[int, Order] = {}
        self._by_reference: dict[int, Order] = {}
        # Answers not yet in, by reference: the order or, when several share one,
        # all of them, oldest first (most have their own: no deque allocated each).
        self._awaiting: dict[int, Order | deque[Order]] = {}
        # Ordered sets, oldest first.
        self._open: dict[Order, None] = {}
        self._closed: OrderedDict[Order, None] = OrderedDict()
        self._listeners: list[OrderListener] = []
        for name, method in self._events().items():
            handlers.add_handler(name, method)
        handlers.add_listener(self)

    def _events(self) -> dict[str, Callable[[Any], None]]:
        return {
            "seto.order_accepted": self._accepted,
            "seto.order_rejected": self._rejected,
            "seto.order_invalid": self._invalid,
            "seto.order_executed": self._executed,
            "seto.order_cancelled": self._cancelled,
            "seto.order_quantity_reduced": self._quantity_reduced,
            "seto.order_reduced": self._reduced,
            "seto.order_pending_replace": self._pending_replace,
            "seto.order_cancel_replace_accepted": self._replace_accepted,
            "seto.order_cancel_replace_rejected": self._replace_rejected,
            "seto.order_execute_voided": self._execute_voided,
            "seto.order_execute_confirmed": self._execute_confirmed,
            "seto.order_voided": self._voided,
            "seto.order_cancel_rejected": self._cancel_rejected,
            "seto.order_quantity_reduce_rejected": self._reduce_rejected,
        }

    # Queries

    def __len__(self) -> int:
        return len(self._open) + len(self._closed)

    def __iter__(self) -> Iterator[Order]:
        yield from self._closed
        yield from self._open

    def get(self, order_id: int) -> Order | None:
        """The order with this exchange id."""
        return self._by_id.get(order_id)

    def by_reference(self, reference: int) -> Order | None:
        """The latest order placed with this client reference."""
        return self._by_reference.get(reference)

    def open(self, market_id: int | None = None, contract_id: int | None = None) -> list[Order]:
        """Orders not closed (pending, unknown or live), oldest first, in a market or contract."""
        return [order for order in self._open
                if (market_id is None or order.market_id == market_id)
                and (contract_id is None or order.contract_id == contract_id)]

    def add_listener(self, listener: OrderListener) -> None:
        self._listeners.append(listener)

    def del_listener(self, listener: OrderListener) -> None:
        self._listeners.remove(listener)

    # Orders placed by this client

    def placed(self, order: Order, answer: Any) -> Order:
        """Track an order just queued; ``answer`` is its request Deferred.

        The Deferred is observed, never changed: a failure still reaches the caller.
        """
        self._add(order)
        if order.reference is not None:
            waiting = self._awaiting.get(order.reference)
            if waiting is None:
                self._awaiting[order.reference] = order
            elif isinstance(waiting, Order):
                self._awaiting[order.reference] = deque((waiting, order))
            else:
                waiting.append(order)
        # One callback for both outcomes: a placed order costs one bound method and one tuple less.
        answer.addBoth(self._settled, order)
        return order

    def _settled(self, outcome: Any, order: Order) -> Any:
        if isinstance(outcome, Failure):
            return self._failed(outcome, order)
        return self._answered(outcome, order)

    def _answered(self, accepted: Any, order: Order) -> Any:
        # The handler has matched the answer by reference unless the exchange echoed none.
        if order.order_id is None and order.state in _OPEN_STATES:
            self._apply_accepted(order, accepted)
        return accepted

    def _failed(self, failure: Failure, order: Order) -> Failure:
        if order.state not in (OrderState.PENDING, OrderState.UNKNOWN):
            return failure
        error = failure.value
        # The handlers have matched a refusal by reference unless the exchange echoed none.
        if isinstance(error, errors.OrderRejected):
            self._rejected(error.message, order)
        elif isinstance(error, errors.OrderInvalid):
            self._invalid(error.message, order)
        elif getattr(error, "sent", None) is False:
            # The request layer says it never went out, so it never will.
            self._unawait(order)
            self._set(order, "not sent: " + str(error), None, OrderState.NOT_SENT)
        else:
            self._set(order, "fate unknown: " + (str(error) or "cancelled"), None, OrderState.UNKNOWN)
        return failure

    def session_ended(self, reason: Exception) -> None:
        """Live orders outlive the session only if the exchange kept them: their fate is unknown."""
        for order in [order for order in self._open if order.state is OrderState.LIVE]:
            self._set(order, f"fate unknown: the session ended ({reason})", None, OrderState.UNKNOWN)

    # Answers

    def _answer_for(self, message: Any) -> Order | None:
        if not message.HasField("reference"):
            return None
        waiting = self._awaiting.get(message.reference)
        if waiting is None:
            return None
        order = waiting if isinstance(waiting, Order) else waiting.popleft()
        if order is waiting or not waiting:
            del self._awaiting[message.reference]
        return order

    def _unawait(self, order: Order) -> None:
        if order.reference is None:
            return
        waiting = self._awaiting.get(order.reference)
        if waiting is order:
            del self._awaiting[order.reference]
        elif isinstance(waiting, deque) and order in waiting:
            waiting.remove(order)
            if not waiting:
                del self._awaiting[order.reference]

    def _accepted(self, message: Any) -> None:
        if self._seen(message):
            return
        order = self._by_id.get(message.order_id) or self._answer_for(message)
        if order is None:
            if not message.HasField("reference") and self._awaiting:
                return  # maybe the answer to one of ours: its Deferred brings it (`_answered`)
            # Placed by another session of this account, or before a restart.
            order = self._add(Order(message.market_id, message.contract_id, message.side, message.price,
                                    message.quantity, message.reference if message.HasField("reference") else None,
                                    message.label if message.HasField("label") else None))
        if order.order_id is not None:
            self._misfit(order, "order_accepted")
            return
        self._apply_accepted(order, message)

    def _apply_accepted(self, order: Order, message: Any) -> None:
        self._unawait(order)
        order.order_id = message.order_id
        self._by_id[message.order_id] = order
        if message.HasField("price"):
            order.price = message.price
        if message.HasField("quantity"):
            order.quantity = order.remaining_quantity = message.quantity
        self._set(order, "accepted", _sequence(message), OrderState.LIVE)

    def _rejected(self, message: Any, order: Order | None = None) -> None:
        self._refused(message, order, OrderState.REJECTED, message.reason,
                      enum_name(seto_pb2.OrderRejectedReason, message.reason))

    def _invalid(self, message: Any, order: Order | None = None) -> None:
        reasons = [enum_name(seto_pb2.OrderInvalidReason, reason) for reason in message.reasons]
        self._refused(message, order, OrderState.INVALID, message.reasons[0] if message.reasons else None,
                      ", ".join(reasons))

    def _refused(
        self, message: Any, order: Order | None, state: OrderState, reason: int | None, reason_name: str
    ) -> None:
        """Close the order a refusal answers: found by reference, or ``order``, whose Deferred it failed."""
        if order is None:
            if self._seen(message):
                return
            order = self._answer_for(message)
            if order is None:
                return  # an answer to another client's order
        else:
            self._unawait(order)
        order.reason, order.reason_name = reason, reason_name
        self._set(order, f"{state.value}: {reason_name}", _sequence(message), state)

    # Account events of accepted orders

    def _executed(self, message: Any) -> None:
        if self._seen(message):
            return
        order = self._by_id.get(message.order_id)
        if order is None:
            order = self._adopt(message, message.orig_price if message.HasField("orig_price") else message.price,
                                message.total_executed_quantity + message.available_quantity,
                                message.total_executed_quantity - message.quantity)
            if order.executed_quantity:
                # Fills before this one are known only through the exchange's rounded average.
                order.executed_value = (message.executed_avg_price * message.total_executed_quantity
                                        - message.price * message.quantity)
        if not _proven_live(order) and order.state is not OrderState.GONE:
            # A refusal may overtake the fill that made it too late: a gone order's fill still stands.
            self._misfit(order, "order_executed")
            return
        order._fill(message.price, message.quantity)
        pending = ""
        if message.pending_timeout:
            order.unconfirmed_quantity += message.quantity
            pending = ", pending confirmation"
        if message.HasField("available_quantity"):
            order.remaining_quantity = message.available_quantity
        else:
            order.remaining_quantity = max(0, order.remaining_quantity - message.quantity)
        if message.HasField("total_executed_quantity") and message.total_executed_quantity != order.executed_quantity:
            self.log.warn("order {order}: the exchange counts {theirs} executed, we count {ours}",
                          order=order.order_id, theirs=message.total_executed_quantity, ours=order.executed_quantity)
        if order.remaining_quantity == 0:
            state: OrderState | None = OrderState.FILLED
        else:  # with some left, it outlived the session (a gone one stays gone: the exchange said so since)
            state = OrderState.LIVE if order.state is OrderState.UNKNOWN else None
        self._set(order, f"executed {message.quantity} at {message.price}{pending}", _sequence(message), state,
                  fills=[(message.price, message.quantity)])

    def _adopt(self, message: Any, price: int, quantity: int, executed_quantity: int = 0) -> Order:
        """An order this client did not see accepted, rebuilt live from its first event, before applying it."""
        order = Order(message.market_id, message.contract_id, message.side, price, quantity,
                      label=message.label if message.HasField("label") else None)
        order.order_id = message.order_id
        order.executed_quantity = executed_quantity
        order.state = OrderState.LIVE
        self._add(order)
        self._by_id[message.order_id] = order
        order.history.append(OrderEvent(ADOPTED, _sequence(message), order.state))
        return order

    def _cancelled(self, message: Any) -> None:
        def adopt() -> Order:
            # Its asked quantity is not said: what executed stands for it.
            order = self._adopt(message, message.orig_price, message.executed_quantity, message.executed_quantity)
            order.executed_value = message.executed_avg_price * message.executed_quantity
            return order

        self._live_event(message, "cancelled: " + enum_name(seto_pb2.OrderCancelledReason, message.reason),
                         OrderState.CANCELLED, reason=message.reason, adopt=adopt)

    def _quantity_reduced(self, message: Any) -> None:
        self._live_event(message, f"reduced to {message.new_quantity}", None,
                         change=lambda order: setattr(order, "remaining_quantity", message.new_quantity))

    def _reduced(self, message: Any) -> None:
        """The exchange reduced the order unasked: open quantity, and fills, as its figures say."""
        if self._seen(message):
            return
        order = self._by_id.get(message.order_id)
        if order is None or not _proven_live(order):
            if order is not None:
                self._misfit(order, "order_reduced")
            return
        if message.HasField("available_quantity"):
            remaining = message.available_quantity
        else:  # the quantity taken off, or the new quantity: whichever leaves more open
            remaining = max(order.remaining_quantity - message.quantity, message.quantity - order.executed_quantity)
        order.remaining_quantity = max(0, min(order.remaining_quantity, remaining))
        fills = []
        if message.HasField("executed_quantity"):
            fills = _take_back(order, order.executed_quantity - message.executed_quantity)
        state = OrderState.CANCELLED if order.remaining_quantity == 0 else (
            OrderState.LIVE if order.state is OrderState.UNKNOWN else None)
        undone = f", {-sum(quantity for _, quantity in fills)} executed undone" if fills else ""
        self._set(order, f"reduced by the exchange to {order.remaining_quantity} open{undone}", _sequence(message),
                  state, fills=fills)

    def _pending_replace(self, message: Any) -> None:
        orig = self._live_event(message, f"replace pending: order {message.order_id}", None,
                                order_id=message.orig_order_id,
                                change=lambda order: setattr(order, "replace_pending", True))
        if orig is None:
            return
        new = self._add(Order(message.market_id, message.contract_id, message.side, message.price, message.quantity,
                              message.reference if message.HasField("reference") else orig.reference,
                              message.label if message.HasField("label") else orig.label, orig.tif))
        new.order_id = message.order_id
        new.replaces = orig.order_id
        self._by_id[message.order_id] = new
        self._set(new, f"replacing order {orig.order_id}", _sequence(message), None)

    def _replace_accepted(self, message: Any) -> None:
        def replaced(order: Order) -> None:
            order.replace_pending = False
            order.replaced_by = message.order_id

        orig = self._live_event(message, f"replaced by order {message.order_id}", OrderState.REPLACED,
                                order_id=message.orig_order_id, change=replaced)
        if orig is None:
            return
        new = self._by_id.get(message.order_id)
        if new is not None and new.state is OrderState.PENDING:
            new.quantity = new.remaining_quantity = message.quantity
            self._set(new, "accepted", _sequence(message), OrderState.LIVE)

    def _replace_rejected(self, message: Any) -> None:
        name = enum_name(seto_pb2.OrderCancelReplaceRejectedReason, message.reason)
        # Too late, most often: the order filled or was cancelled meanwhile (and this client heard it
        # first, or it never will: another session's events, or an exchange restarted since).
        self._live_event(message, f"replace rejected: {name}", _gone_if(name), order_id=message.orig_order_id,
                         change=lambda order: setattr(order, "replace_pending", False), closed_too=True,
                         reason=message.reason)
        new = self._by_id.get(message.order_id)
        if new is not None and new.state is OrderState.PENDING:
            new.reason, new.reason_name = message.reason, name
            self._set(new, f"rejected: {name}", _sequence(message), OrderState.REJECTED)

    def _execute_voided(self, message: Any) -> None:
        if self._seen(message):
            return
        order = self._by_id.get(message.order_id)
        if order is None or order.state is OrderState.PENDING:
            self.log.warn("execution void for order {order}, which has no fills here", order=message.order_id)
            return
        name = f"execution of {message.quantity} at {message.price} voided"
        for voided, quantity in self._void_shares(order, message.quantity):
            voided.unconfirmed_quantity = max(0, voided.unconfirmed_quantity - quantity)
            voided._fill(message.price, -quantity)
            self._set(voided, name if voided is order else f"{name} (order {order.order_id}'s void)",
                      _sequence(message), None, fills=[(message.price, -quantity)])

    def _void_shares(self, order: Order, quantity: int) -> list[tuple[Order, int]]:
        """Who an execution void of ``quantity`` takes it back from: ``order``, up to what it executed.

        A voided market's executions come as one void per contract and side,
        against the last order that traded there (as the simulated exchange
        sends them): what exceeds that order's fills comes off the account's
        other orders there, newest first, and only what none of them holds
        stays with ``order``.
        """
        shares = [(order, min(quantity, order.executed_quantity))]
        rest = quantity - shares[0][1]
        for other in reversed([*self._closed, *self._open]):
            if not rest:
                break
            if (other is not order and other.executed_quantity > 0 and other.market_id == order.market_id
                    and other.contract_id == order.contract_id and other.side == order.side):
                share = min(rest, other.executed_quantity)
                shares.append((other, share))
                rest -= share
        shares[0] = (order, shares[0][1] + rest)
        return [(voided, share) for voided, share in shares if share]

    def _execute_confirmed(self, message: Any) -> None:
        def confirmed(order: Order) -> None:
            order.unconfirmed_quantity = max(0, order.unconfirmed_quantity - message.quantity)

        self._live_event(message, f"execution of {message.quantity} at {message.price} confirmed", None,
                         change=confirmed, closed_too=True)

    def _voided(self, message: Any) -> None:
        """The exchange voided ``quantity`` of the order: fills above its ``executed_quantity``, then open quantity."""
        if self._seen(message):
            return
        order = self._by_id.get(message.order_id)
        whole = message.quantity >= message.source_quantity
        stays = message.executed_quantity if message.HasField("executed_quantity") and not whole else None
        if order is None:
            # Adopted from the void's own figures; none executed unless it says so (which keeps more open).
            executed = stays or 0
            order = self._adopt(message, message.orig_price, message.source_quantity, executed)
            order.executed_value = message.executed_avg_price * executed
            order.remaining_quantity = max(0, message.source_quantity - executed)
        if order.state is OrderState.VOIDED:
            self._misfit(order, "order_voided")
            return
        if whole:
            undo, close = order.executed_quantity, order.remaining_quantity
        else:
            undo = min(message.quantity, max(0, order.executed_quantity - (0 if stays is None else stays)))
            close = min(order.remaining_quantity, message.quantity - undo)
        if stays is not None and order.executed_quantity - undo != stays:
            self.log.warn("order {order} voided: the exchange leaves {theirs} executed, we count {ours}",
                          order=order.order_id, theirs=stays, ours=order.executed_quantity - undo)
        fills = _take_back(order, undo)
        order.remaining_quantity -= close
        if order.remaining_quantity == 0 and (whole or not order.closed):
            state: OrderState | None = OrderState.VOIDED
        else:  # a closed order's fills voided, or some left open
            state = OrderState.LIVE if order.state is OrderState.UNKNOWN and order.remaining_quantity else None
        self._set(order, f"voided {message.quantity} of {message.source_quantity}: {undo} executed undone,"
                  f" {close} open", _sequence(message), state, fills=fills)

    def _cancel_rejected(self, message: Any) -> None:
        name = enum_name(seto_pb2.OrderCancelRejectedReason, message.reason)
        self._live_event(message, f"cancel rejected: {name}", _gone_if(name), closed_too=True, reason=message.reason)

    def _reduce_rejected(self, message: Any) -> None:
        name = enum_name(seto_pb2.OrderQuantityReduceRejectedReason, message.reason)
        self._live_event(message, f"reduce to {message.new_quantity} rejected: {name}", _gone_if(name),
                         closed_too=True, reason=message.reason)

    def _live_event(
        self, message: Any, name: str, state: OrderState | None, reason: int | None = None,
        order_id: int | None = None, change: Callable[[Order], object] | None = None, closed_too: bool = False,
        adopt: Callable[[], Order] | None = None,
    ) -> Order | None:
        """Apply an event that only a live order can take; the order, or None if it was not applied.

        ``change`` makes the event's other changes, before the listeners hear of it; ``closed_too``
        lets a closed order take the event as well (into its history), for an event that moves no state;
        ``adopt`` builds an order this client never saw, from the event.
        """
        if self._seen(message):
            return None
        order = self._by_id.get(message.order_id if order_id is None else order_id)
        if order is None:
            if adopt is None:
                return None  # an order this client never saw live
            order = adopt()
        if not _proven_live(order) and not (closed_too and order.closed):
            self._misfit(order, name)
            return None
        if state is None and order.state is OrderState.UNKNOWN and not closed_too:
            # An event only a live order takes: it outlived the session (a refusal or a confirmation says
            # nothing of that: a throttled cancel is never looked up).
            state = OrderState.LIVE
        if reason is not None and state is not None and not order.closed:
            order.reason, order.reason_name = reason, name.split(": ", 1)[-1]
        if change is not None:
            change(order)
        if order.closed:
            # Nothing moved: into its history, without telling the listeners again.
            order.history.append(OrderEvent(name, _sequence(message), order.state))
        else:
            self._set(order, name, _sequence(message), state)
        return order

    # Bookkeeping

    def _seen(self, message: Any) -> bool:
        """Whether this account event was applied already; records its sequence if not."""
        sequence = _sequence(message)
        if sequence is None:
            return False
        if self.account_sequence is not None and sequence <= self.account_sequence:
            return True
        self.account_sequence = sequence
        return False

    def _misfit(self, order: Order, event: str) -> None:
        self.log.warn("{event} does not fit order {order} in state {state}: not applied",
                      event=event, order=order.order_id, state=order.state.value)

    def _add(self, order: Order) -> Order:
        self._open[order] = None
        if order.reference is not None:
            self._by_reference[order.reference] = order
        return order

    def _set(
        self, order: Order, name: str, sequence: int | None, state: OrderState | None,
        fills: list[tuple[int, int]] | None = None,
    ) -> None:
        order._move(name, sequence, state)
        if order.closed:
            self._close(order)
        for price, quantity in fills or ():
            notify(self._listeners, "order_filled", order, price, quantity)
        notify(self._listeners, "order_changed", order)

    def _close(self, order: Order) -> None:
        if order not in self._open:
            return
        del self._open[order]
        self._closed[order] = None
        while len(self._closed) > self.max_closed:
            old, _ = self._closed.popitem(last=False)
            if old.order_id is not None and self._by_id.get(old.order_id) is old:
                del self._by_id[old.order_id]
            if old.reference is not None and self._by_reference.get(old.reference) is old:
                del self._by_reference[old.reference]


def _take_back(order: Order, quantity: int) -> list[tuple[int, int]]:
    """Take ``quantity`` of the order's executions back; the fills taken, as negative fills.

    Fills this client heard go first (the prices first filled last first), then
    executions made before it adopted the order, which its positions never counted.
    """
    taken = []
    for price, held in reversed(order.fills.items()):
        if quantity <= 0:
            break
        share = min(quantity, held)
        taken.append((price, -share))
        quantity -= share
    for price, share in taken:
        order._fill(price, share)
    unheard = order.executed_quantity - sum(order.fills.values())
    if quantity > 0 and unheard > 0:
        share = min(quantity, unheard)
        order.executed_value -= (order.executed_value - sum(p * q for p, q in order.fills.items())) * share // unheard
        order.executed_quantity -= share
        if not order.executed_quantity:
            order.executed_value = 0
    order.unconfirmed_quantity = min(order.unconfirmed_quantity, order.executed_quantity)
    return taken


def _proven_live(order: Order) -> bool:
    """Whether an account event of a live order may apply: live here, or of unknown fate once it was."""
    return order.state is OrderState.LIVE or (order.state is OrderState.UNKNOWN and order.order_id is not None)


def _gone_if(reason_name: str) -> OrderState | None:
    """GONE when a refusal says the order is no longer open on the exchange; else no change of state."""
    return OrderState.GONE if is_gone_reason(reason_name) else None


def _sequence(message: Any) -> int | None:
    """The account sequence of an account event; None when it has none (order_invalid has no such field)."""
    try:
        if message.HasField("account_sequence_64"):
            return int(message.account_sequence_64)
    except ValueError:
        pass
    return None
