"""An order as the matching engine keeps it, and the account events made from one.

The events about an order (accepted, executed, cancelled, reduced,
replaced...) share most of their fields with it; `order_event` fills them in
from one table, so that each event is built by naming only what is its own.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import TypeVar

from smarkets_twisted.exchange.accounts import Account
from smarkets_twisted.exchange.events import AccountEvent, OpenOrder, account_event_from, field_names
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

#: Event field -> the attribute of the order it copies, when the event does not give it.
_FROM_ORDER: dict[str, str] = {
    "order_id": "order_id",
    "market_id": "market_id",
    "contract_id": "contract_id",
    "side": "side",
    "price": "price",
    "orig_price": "price",
    "quantity": "quantity",
    "tif": "tif",
    "reference": "reference",
    "label": "label",
    "executed_quantity": "executed",
    "total_executed_quantity": "executed",
    "executed_avg_price": "executed_avg_price",
    "available_quantity": "available",
}

#: Event type -> the names of its fields taken from the order, and a getter of their values.
_ORDER_FIELDS: dict[type[AccountEvent], tuple[tuple[str, ...], Callable[[Order], tuple[object, ...]]]] = {}


def order_event(event_type: type[_A], order: Order, **values: object) -> Callable[[int], _A]:
    """A builder for `Account.record`: an event about ``order``, for its account.

    Fields not in ``values`` are taken from the order (see `_FROM_ORDER`) and
    the account's money.
    """
    from_order = _ORDER_FIELDS.get(event_type)
    if from_order is None:
        names = tuple(name for name in _FROM_ORDER if name in field_names(event_type))
        # With two names or more, attrgetter gives a tuple (every order event has several).
        assert len(names) > 1, event_type
        from_order = _ORDER_FIELDS[event_type] = (names, attrgetter(*(_FROM_ORDER[name] for name in names)))
    names, get = from_order
    fields = dict(zip(names, get(order), strict=True))
    fields.update(values)
    return account_event_from(event_type, order.account, fields)
