"""An order as the matching engine keeps it, and the account events made from one.

The events about an order share most of their fields with it.  Those of
every order's life (accepted, executed, cancelled) are most of the engine's
work, and each has a builder that passes the fields positionally; the others
(reduced, replaced, voided) are built by `order_event`, which fills in what
they share with the order from one table, so that each names only what is
its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from smarkets_twisted.exchange.accounts import Account
from smarkets_twisted.exchange.events import (
    AccountEvent,
    OpenOrder,
    OrderAccepted,
    OrderCancelled,
    OrderExecuted,
    account_event,
    field_names,
)
from smarkets_twisted.proto import seto_pb2


class Order:
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
        "resting",
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
        #: True while the order is on its book (the book skips the others).
        self.resting = False

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


_A = TypeVar("_A", bound=AccountEvent)

# The events of every order's life, built positionally (see `smarkets_twisted.exchange.events`).


def _about(order: Order, sequence: int) -> tuple[str, int, int, int, int, seto_pb2.Side, str | None, int, int]:
    """The fields every `OrderEvent` starts with, in their order."""
    account = order.account
    exposure = account.exposure
    return (
        account.username,
        sequence,
        order.order_id,
        order.market_id,
        order.contract_id,
        order.side,
        order.label,
        account.balance - exposure,
        exposure,
    )


def accepted(sequence: int, order: Order, request_seq: int | None) -> OrderAccepted:
    """order_accepted for a new order."""
    return OrderAccepted(*_about(order, sequence), order.price, order.quantity, order.tif, request_seq, order.reference)


def executed(sequence: int, order: Order, price: int, quantity: int) -> OrderExecuted:
    """order_executed for a fill of ``quantity`` at ``price``, counted on the order already."""
    return OrderExecuted(
        *_about(order, sequence),
        price,
        quantity,
        order.price,
        order.executed,
        order.executed_avg_price,
        order.available,
    )


def cancelled(
    sequence: int, order: Order, reason: seto_pb2.OrderCancelledReason, quantity: int, reference: int | None
) -> OrderCancelled:
    """order_cancelled for the ``quantity`` that was still available."""
    return OrderCancelled(
        *_about(order, sequence),
        reason,
        order.price,
        quantity,
        order.executed,
        order.executed_avg_price,
        reference,
    )


# The other events about an order, with fields named

#: Event field -> the attribute of the order it copies, when the event does not give it.
_FROM_ORDER: dict[str, str] = {
    "order_id": "order_id",
    "market_id": "market_id",
    "contract_id": "contract_id",
    "side": "side",
    "price": "price",
    "orig_price": "price",
    "quantity": "quantity",
    "reference": "reference",
    "label": "label",
    "executed_quantity": "executed",
    "executed_avg_price": "executed_avg_price",
}


def order_event(event_type: type[_A], order: Order, **values: object) -> Callable[[int], _A]:
    """A builder for `Account.record`: an event about ``order``, for its account.

    Fields not in ``values`` are taken from the order (see `_FROM_ORDER`) and
    the account's money.
    """
    for name in field_names(event_type) & _FROM_ORDER.keys():
        values.setdefault(name, getattr(order, _FROM_ORDER[name]))
    return account_event(event_type, order.account, **values)
