"""The matching engine's domain events, and the views it gives of its state.

Every engine call returns a list of these events, in causal order.  Account
events carry the username they go to and the account sequence assigned to
them; market events carry the market id and go to that market's subscribers.
Reasons are the seto enum values, ready to be copied into protobuf messages.
Units follow PROTOCOL.md section 7 (see `smarkets_twisted.trading.positions`).

Events are read-only by convention, not frozen: one event is kept in its
account's history and sent to every session of the account, and a frozen
dataclass costs about ten times as much to build (``object.__setattr__`` per
field), which was most of what an order cost the engine.  Their fields come
in a fixed order, so that the builders of the events every order produces
(`smarkets_twisted.exchange.orders`) can pass them positionally.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import NamedTuple, TypeVar

from smarkets_twisted.exchange.accounts import Account
from smarkets_twisted.proto import seto_pb2


@dataclass(slots=True)
class EngineEvent:
    """Anything the engine reports."""


@dataclass(slots=True)
class AccountEvent(EngineEvent):
    """An event for one account, numbered by that account's sequence and kept for replay."""

    username: str
    account_sequence: int


@dataclass(slots=True)
class MarketEvent(EngineEvent):
    """An event for the subscribers of one market."""

    market_id: int


@dataclass(slots=True)
class OrderEvent(AccountEvent):
    """An event about one of the account's orders, with the account's money after it."""

    order_id: int
    market_id: int
    contract_id: int
    side: seto_pb2.Side
    label: str | None
    available_balance: int
    exposure: int


@dataclass(slots=True)
class OrderInvalid(EngineEvent):
    """order_invalid: the order was malformed; every problem is listed.

    Not an account event: nothing changed on the account, and the message has
    no account sequence.
    """

    username: str
    reasons: tuple[seto_pb2.OrderInvalidReason, ...]
    request_seq: int | None
    reference: int | None


@dataclass(slots=True)
class OrderAccepted(OrderEvent):
    """order_accepted: the order was taken; fills, if any, follow."""

    price: int
    quantity: int
    tif: seto_pb2.TimeInForceType
    request_seq: int | None
    reference: int | None


@dataclass(slots=True)
class OrderRejected(AccountEvent):
    """order_rejected: the order was refused."""

    reason: seto_pb2.OrderRejectedReason
    request_seq: int | None
    reference: int | None
    label: str | None


@dataclass(slots=True)
class OrderExecuted(OrderEvent):
    """order_executed: one fill of one order, sent to each of the two parties.

    ``price`` and ``quantity`` are the fill's; ``orig_price`` is the order's limit.
    """

    price: int
    quantity: int
    orig_price: int
    total_executed_quantity: int
    executed_avg_price: int
    available_quantity: int


@dataclass(slots=True)
class OrderCancelled(OrderEvent):
    """order_cancelled: what was left of an order is gone.

    ``cancelled_quantity`` is the quantity that was still available.
    ``reference`` is the order_cancel request's when it gave one, else the order's own.
    """

    reason: seto_pb2.OrderCancelledReason
    orig_price: int
    cancelled_quantity: int
    executed_quantity: int
    executed_avg_price: int
    reference: int | None


@dataclass(slots=True)
class CancelRejected(AccountEvent):
    """order_cancel_rejected."""

    order_id: int
    reason: seto_pb2.OrderCancelRejectedReason
    reference: int | None


@dataclass(slots=True)
class CancelAllAccepted(AccountEvent):
    """order_cancel_all_accepted; an order_cancelled follows for each order."""

    market_id: int | None
    reference: int | None


@dataclass(slots=True)
class CancelAllRejected(AccountEvent):
    """order_cancel_all_rejected (the market named does not exist)."""

    market_id: int | None
    reason: seto_pb2.OrderCancelAllRejectedReason
    reference: int | None


@dataclass(slots=True)
class QuantityReduced(OrderEvent):
    """order_quantity_reduced: the order's available quantity is now ``new_quantity``."""

    new_quantity: int
    reason: seto_pb2.OrderQuantityReducedReason
    orig_price: int
    executed_quantity: int
    executed_avg_price: int
    reference: int | None


@dataclass(slots=True)
class ReduceRejected(AccountEvent):
    """order_quantity_reduce_rejected."""

    order_id: int
    new_quantity: int
    reason: seto_pb2.OrderQuantityReduceRejectedReason
    reference: int | None


@dataclass(slots=True)
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


@dataclass(slots=True)
class ReplaceAccepted(OrderEvent):
    """order_cancel_replace_accepted: the original is gone, the new order is live.

    ``quantity_left`` is what was still available on the original order.
    """

    orig_order_id: int
    price: int
    quantity: int
    quantity_left: int
    reference: int | None


@dataclass(slots=True)
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


@dataclass(slots=True)
class ExecutionVoided(OrderEvent):
    """order_execute_voided: a fill was undone because its market was voided."""

    price: int
    quantity: int
    orig_price: int


@dataclass(slots=True)
class BalanceChanged(AccountEvent):
    """balance_changed: the account's balance or exposure moved."""

    reason: str
    balance: int
    available_balance: int
    exposure: int


@dataclass(slots=True)
class MarketStateChanged(MarketEvent):
    """market_state: the market entered ``state``; ``winner`` is set when settled."""

    state: seto_pb2.MarketStateType
    winner: int | None


class Level(NamedTuple):
    """A price level: its price and the total available quantity there (0: gone)."""

    price: int
    quantity: int


class Execution(NamedTuple):
    """A trade: its price, quantity, and the side of the incoming order that caused it."""

    price: int
    quantity: int
    aggressor_side: seto_pb2.Side


@dataclass(slots=True)
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


# Building account events

_A = TypeVar("_A", bound=AccountEvent)


#: Event type -> the names of its fields, kept: every event not built positionally asks for them, and
#: ``fields`` costs more than the rest of a rejection (1.9 µs a refused cancel with the names kept, 3.9 without).
_FIELD_NAMES: dict[type[EngineEvent], frozenset[str]] = {}


def field_names(event_type: type[EngineEvent]) -> frozenset[str]:
    """The names of an event type's fields."""
    names = _FIELD_NAMES.get(event_type)
    if names is None:
        names = _FIELD_NAMES[event_type] = frozenset(field.name for field in fields(event_type))
    return names


#: Event fields that are the account's money at the time of the event (`balance_changed` builds the one with
#: ``balance``).
_FROM_ACCOUNT: dict[str, Callable[[Account], int]] = {
    "available_balance": attrgetter("available_balance"),
    "exposure": attrgetter("exposure"),
}


def account_event(event_type: type[_A], account: Account, **values: object) -> Callable[[int], _A]:
    """A builder for `Account.record`: the event with ``values``, the account's
    username and sequence, and its money for the money fields not given."""
    names = field_names(event_type)
    money = [(name, get) for name, get in _FROM_ACCOUNT.items() if name in names]

    def build(sequence: int) -> _A:
        for name, get in money:
            values.setdefault(name, get(account))
        return event_type(username=account.username, account_sequence=sequence, **values)

    return build


def balance_changed(sequence: int, account: Account, reason: str) -> BalanceChanged:
    """The account's money now, as its event number ``sequence``."""
    balance, exposure = account.balance, account.exposure
    return BalanceChanged(account.username, sequence, reason, balance, balance - exposure, exposure)

