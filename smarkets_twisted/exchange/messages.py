"""The matching engine's domain events, written as seto payloads.

Event and message share their field names: one table says which message
carries which event, and `event_payload` copies the fields across.  Money in
the engine is integer 1/10000 units of the currency; the protocol's
``available_balance`` and ``exposure`` are doubles in currency units.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from smarkets_twisted.exchange import events
from smarkets_twisted.exchange.accounts import UNITS_PER_CURRENCY
from smarkets_twisted.payloads import Payload, application_message
from smarkets_twisted.proto import seto_pb2

_UINT32_LIMIT = 2**32


def money(units: int) -> float:
    """Engine units (1/10000 of the currency) as the protocol's double."""
    return units / UNITS_PER_CURRENCY


def _sequence(event: events.EngineEvent, name: str) -> int | None:
    """Both account sequence fields: the 32-bit one only while it fits."""
    sequence = getattr(event, "account_sequence", None)
    if name == "account_sequence" and sequence is not None and sequence >= _UINT32_LIMIT:
        return None
    return sequence


def quotes(levels: Iterable[events.Level]) -> list[seto_pb2.Quote]:
    return [seto_pb2.Quote(price=level.price, quantity=level.quantity) for level in levels]


#: Event type -> the seto message that carries it.
_MESSAGES: dict[type[events.EngineEvent], str] = {
    events.OrderInvalid: "order_invalid",
    events.OrderAccepted: "order_accepted",
    events.OrderRejected: "order_rejected",
    events.OrderExecuted: "order_executed",
    events.OrderCancelled: "order_cancelled",
    events.CancelRejected: "order_cancel_rejected",
    events.CancelAllAccepted: "order_cancel_all_accepted",
    events.CancelAllRejected: "order_cancel_all_rejected",
    events.QuantityReduced: "order_quantity_reduced",
    events.ReduceRejected: "order_quantity_reduce_rejected",
    events.PendingReplace: "order_pending_replace",
    events.ReplaceAccepted: "order_cancel_replace_accepted",
    events.ReplaceRejected: "order_cancel_replace_rejected",
    events.ExecutionVoided: "order_execute_voided",
    events.BalanceChanged: "balance_changed",
    events.MarketStateChanged: "market_state",
}

#: Message fields whose value is not the event's field of the same name.
_CONVERTED: dict[str, Callable[[Any], object]] = {
    # The order_create's seq, for correlation; 0 when there was none (outside a session, or replayed).
    "seq": lambda event: event.request_seq or 0,
    "available_balance": lambda event: money(event.available_balance),
    "exposure": lambda event: money(event.exposure),
}


def _fields(event_type: type[events.EngineEvent], message: str) -> tuple[tuple[str, bool, object], ...]:
    """(name, required, default) of each message field the event fills in."""
    descriptor = getattr(Payload(), message).DESCRIPTOR
    names = events.field_names(event_type)
    return tuple(
        (field.name, field.label == field.LABEL_REQUIRED, field.default_value)
        for field in descriptor.fields
        if field.name in names or field.name in _CONVERTED or field.name.startswith("account_sequence")
    )


_FIELDS = {event_type: _fields(event_type, message) for event_type, message in _MESSAGES.items()}


def event_payload(event: events.EngineEvent) -> Payload:
    """The seto payload for an order, account or market-state event.

    Each message field is copied from the event's field of the same name (or
    converted, see `_CONVERTED`); a required field the event leaves None (an
    order that was not found) is sent as the schema's default, which is what
    a reader would see for it.  Book changes need a timestamp: use
    `contract_quotes` for them.
    """
    event_type = type(event)
    values: dict[str, object] = {}
    for name, required, default in _FIELDS[event_type]:
        if name in _CONVERTED:
            value = _CONVERTED[name](event)
        elif name.startswith("account_sequence"):
            value = _sequence(event, name)
        else:
            value = getattr(event, name)
        values[name] = default if value is None and required else value
    return application_message(_MESSAGES[event_type], **values)


def contract_quotes(event: events.BookChanged, microseconds: int) -> Payload:
    """A delta of one contract's visible book, with the trades that caused it.

    ``liquidity`` on each execution is the side of the incoming order that
    took the liquidity; all executions of one engine call share a timestamp.
    """
    executions = [
        seto_pb2.Execution(
            price=execution.price,
            quantity=execution.quantity,
            liquidity=execution.aggressor_side,
            microseconds=microseconds,
        )
        for execution in event.executions
    ]
    return application_message(
        "contract_quotes",
        market_id=event.market_id,
        contract_id=event.contract_id,
        bids=quotes(event.bids),
        offers=quotes(event.offers),
        executions=executions,
        last_execution=executions[-1] if executions else None,
    )


def market_quotes(book: events.MarketBook) -> Payload:
    """A snapshot of every contract's visible book in one market."""
    contracts = [
        seto_pb2.ContractQuotes(
            market_id=book.market_id,
            contract_id=contract.contract_id,
            bids=quotes(contract.bids),
            offers=quotes(contract.offers),
        )
        for contract in book.contracts
    ]
    return application_message(
        "market_quotes", market_id=book.market_id, contract_quotes=contracts, executed_volume=book.executed_volume
    )
