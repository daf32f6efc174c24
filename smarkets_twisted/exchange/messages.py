"""The matching engine's domain events, written as seto payloads.

One function per event type; `event_payload` picks the right one.  Money in
the engine is integer 1/10000 units of the currency; the protocol's
``available_balance`` and ``exposure`` are doubles in currency units.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from smarkets_twisted.exchange import engine
from smarkets_twisted.exchange.accounts import UNITS_PER_CURRENCY
from smarkets_twisted.payloads import Payload, application_message
from smarkets_twisted.proto import seto_pb2

_UINT32_LIMIT = 2**32


def money(units: int) -> float:
    """Engine units (1/10000 of the currency) as the protocol's double."""
    return units / UNITS_PER_CURRENCY


def _sequence(event: engine.AccountEvent) -> dict[str, int | None]:
    """Both account sequence fields: the 32-bit one only while it fits."""
    sequence = event.account_sequence
    return {
        "account_sequence": sequence if sequence < _UINT32_LIMIT else None,
        "account_sequence_64": sequence,
    }


def quotes(levels: Iterable[engine.Level]) -> list[seto_pb2.Quote]:
    return [seto_pb2.Quote(price=level.price, quantity=level.quantity) for level in levels]


def order_invalid(event: engine.OrderInvalid) -> Payload:
    return application_message(
        "order_invalid", seq=event.request_seq or 0, reasons=list(event.reasons), reference=event.reference
    )


def order_accepted(event: engine.OrderAccepted) -> Payload:
    return application_message(
        "order_accepted",
        seq=event.request_seq or 0,
        order_id=event.order_id,
        reference=event.reference,
        price=event.price,
        quantity=event.quantity,
        market_id=event.market_id,
        contract_id=event.contract_id,
        side=event.side,
        label=event.label,
        available_balance=money(event.available_balance),
        exposure=money(event.exposure),
        **_sequence(event),
    )


def order_rejected(event: engine.OrderRejected) -> Payload:
    return application_message(
        "order_rejected",
        seq=event.request_seq or 0,
        reason=event.reason,
        reference=event.reference,
        label=event.label,
        **_sequence(event),
    )


def order_executed(event: engine.OrderExecuted) -> Payload:
    return application_message(
        "order_executed",
        order_id=event.order_id,
        price=event.price,
        quantity=event.quantity,
        side=event.side,
        market_id=event.market_id,
        contract_id=event.contract_id,
        total_executed_quantity=event.total_executed_quantity,
        executed_avg_price=event.executed_avg_price,
        available_quantity=event.available_quantity,
        orig_price=event.orig_price,
        label=event.label,
        available_balance=money(event.available_balance),
        exposure=money(event.exposure),
        **_sequence(event),
    )


def order_cancelled(event: engine.OrderCancelled) -> Payload:
    return application_message(
        "order_cancelled",
        order_id=event.order_id,
        reason=event.reason,
        reference=event.reference,
        market_id=event.market_id,
        contract_id=event.contract_id,
        side=event.side,
        orig_price=event.orig_price,
        executed_quantity=event.executed_quantity,
        executed_avg_price=event.executed_avg_price,
        label=event.label,
        available_balance=money(event.available_balance),
        exposure=money(event.exposure),
        **_sequence(event),
    )


def order_cancel_rejected(event: engine.CancelRejected) -> Payload:
    return application_message(
        "order_cancel_rejected",
        order_id=event.order_id,
        reason=event.reason,
        reference=event.reference,
        **_sequence(event),
    )


def order_cancel_all_accepted(event: engine.CancelAllAccepted) -> Payload:
    return application_message("order_cancel_all_accepted", reference=event.reference, **_sequence(event))


def order_cancel_all_rejected(event: engine.CancelAllRejected) -> Payload:
    return application_message(
        "order_cancel_all_rejected", reason=event.reason, reference=event.reference, **_sequence(event)
    )


def order_quantity_reduced(event: engine.QuantityReduced) -> Payload:
    return application_message(
        "order_quantity_reduced",
        order_id=event.order_id,
        reason=event.reason,
        new_quantity=event.new_quantity,
        reference=event.reference,
        market_id=event.market_id,
        contract_id=event.contract_id,
        side=event.side,
        orig_price=event.orig_price,
        executed_quantity=event.executed_quantity,
        executed_avg_price=event.executed_avg_price,
        label=event.label,
        **_sequence(event),
    )


def order_quantity_reduce_rejected(event: engine.ReduceRejected) -> Payload:
    return application_message(
        "order_quantity_reduce_rejected",
        order_id=event.order_id,
        reason=event.reason,
        new_quantity=event.new_quantity,
        reference=event.reference,
        **_sequence(event),
    )


def order_pending_replace(event: engine.PendingReplace) -> Payload:
    return application_message(
        "order_pending_replace",
        order_id=event.order_id,
        orig_order_id=event.orig_order_id,
        price=event.price,
        quantity=event.quantity,
        reference=event.reference,
        label=event.label,
        market_id=event.market_id,
        contract_id=event.contract_id,
        side=event.side,
        **_sequence(event),
    )


def order_cancel_replace_accepted(event: engine.ReplaceAccepted) -> Payload:
    return application_message(
        "order_cancel_replace_accepted",
        order_id=event.order_id,
        orig_order_id=event.orig_order_id,
        price=event.price,
        quantity=event.quantity,
        quantity_left=event.quantity_left,
        reference=event.reference,
        label=event.label,
        market_id=event.market_id,
        contract_id=event.contract_id,
        side=event.side,
        **_sequence(event),
    )


def order_cancel_replace_rejected(event: engine.ReplaceRejected) -> Payload:
    # The schema requires the order's fields even when the original order was
    # not found: 0 is what a proto reader would see for an absent value.
    return application_message(
        "order_cancel_replace_rejected",
        order_id=event.order_id or 0,
        orig_order_id=event.orig_order_id,
        reason=event.reason,
        reference=event.reference,
        label=event.label,
        market_id=event.market_id or 0,
        contract_id=event.contract_id or 0,
        side=event.side or seto_pb2.SIDE_BUY,
        **_sequence(event),
    )


def order_execute_voided(event: engine.ExecutionVoided) -> Payload:
    return application_message(
        "order_execute_voided",
        order_id=event.order_id,
        price=event.price,
        quantity=event.quantity,
        market_id=event.market_id,
        contract_id=event.contract_id,
        side=event.side,
        orig_price=event.orig_price,
        label=event.label,
        available_balance=money(event.available_balance),
        exposure=money(event.exposure),
        **_sequence(event),
    )


def balance_changed(event: engine.BalanceChanged) -> Payload:
    return application_message(
        "balance_changed",
        reason=event.reason,
        available_balance=money(event.available_balance),
        exposure=money(event.exposure),
    )


def market_state(event: engine.MarketStateChanged) -> Payload:
    return application_message("market_state", market_id=event.market_id, state=event.state)


def contract_quotes(event: engine.BookChanged, microseconds: int) -> Payload:
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


def market_quotes(book: engine.MarketBook) -> Payload:
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


#: Engine event type → the function that writes its payload.
_WRITERS: dict[type[engine.EngineEvent], Callable[[Any], Payload]] = {
    engine.OrderInvalid: order_invalid,
    engine.OrderAccepted: order_accepted,
    engine.OrderRejected: order_rejected,
    engine.OrderExecuted: order_executed,
    engine.OrderCancelled: order_cancelled,
    engine.CancelRejected: order_cancel_rejected,
    engine.CancelAllAccepted: order_cancel_all_accepted,
    engine.CancelAllRejected: order_cancel_all_rejected,
    engine.QuantityReduced: order_quantity_reduced,
    engine.ReduceRejected: order_quantity_reduce_rejected,
    engine.PendingReplace: order_pending_replace,
    engine.ReplaceAccepted: order_cancel_replace_accepted,
    engine.ReplaceRejected: order_cancel_replace_rejected,
    engine.ExecutionVoided: order_execute_voided,
    engine.BalanceChanged: balance_changed,
    engine.MarketStateChanged: market_state,
}


def event_payload(event: engine.EngineEvent) -> Payload:
    """The seto payload for an order, account or market-state event.

    Book changes need a timestamp: use `contract_quotes` for them.
    """
    return _WRITERS[type(event)](event)
