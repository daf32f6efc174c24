"""Orders and fills in words a trader reads, for the log of `twistd smarkets`.

The wire speaks in units (price 3133, quantity 20000); a trader reads "buy
£2.00 payoff at 31.33% (3.19)", a stake in currency, and above all how each
order ended: filled, partly filled then cancelled, expired unfilled, refused
and why.  `TradeLog` listens to ``factory.orders`` and says each of these
once, whatever strategy placed the order.
"""

from __future__ import annotations

from twisted.logger import Logger

from smarkets_twisted.errors import reason_words
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.trading.orders import Order, OrderListener, OrderState
from smarkets_twisted.trading.prices import SIDE_NAMES, format_money, format_price, liability, money

_TIFS: dict[int, str] = {
    seto_pb2.GOOD_TIL_CANCELLED: "good till cancelled",
    seto_pb2.IMMEDIATE_OR_CANCEL: "immediate or cancel",
}


def describe(order: Order) -> str:
    """'buy £2.00 payoff of market 100 contract 1001 at 31.33% (3.19), immediate or cancel, risking £0.63'."""
    side = SIDE_NAMES[order.side]
    tif = _TIFS.get(order.tif, "time in force " + str(order.tif))
    risk = format_money(liability(order.quantity, order.price, order.side))
    return (f"{side} {format_money(money(order.quantity))} payoff of market {order.market_id} contract "
            f"{order.contract_id} at {format_price(order.price)}, {tif}, risking {risk}")


def ending(order: Order) -> str:
    """How a closed order ended, in words."""
    executed, asked = format_money(money(order.executed_quantity)), format_money(money(order.quantity))
    reason = f" ({reason_words(order.reason_name)})" if order.reason_name else ""
    state = order.state
    if state is OrderState.FILLED:
        return f"filled: {asked}" + _average(order)
    if state is OrderState.CANCELLED:
        if order.executed_quantity:
            return f"partly filled ({executed} of {asked}{_average(order)}) then cancelled{reason}"
        if order.tif == seto_pb2.IMMEDIATE_OR_CANCEL:
            return "expired unfilled: nothing matched at once"
        return f"cancelled unfilled{reason}"
    if state is OrderState.REPLACED:
        filled = f" after {executed} filled" if order.executed_quantity else ""
        return f"replaced by order {order.replaced_by}{filled}"
    if state in (OrderState.REJECTED, OrderState.INVALID):
        return f"refused by the exchange{reason}"
    if state is OrderState.VOIDED:
        if order.executed_quantity:  # the void took its open rest (and maybe some fills), not all
            return f"voided by the exchange; {executed} filled{_average(order)} stands"
        return "voided by the exchange: none of its fills stand"
    if state is OrderState.GONE:
        return f"gone from the exchange{reason}: how it ended is unknown here"
    if state is OrderState.NOT_SENT:
        return order.history[-1].name  # 'not sent: ' and why
    return str(state.value)


def adopted_ending(order: Order) -> str:
    """How an order first heard of at its end ended: only what its closing event says."""
    if order.state is OrderState.CANCELLED:
        filled = (f" after {format_money(money(order.executed_quantity))} filled{_average(order)}"
                  if order.executed_quantity else "")
        return f"cancelled{filled}" + (f": {reason_words(order.reason_name)}" if order.reason_name else "")
    return ending(order)


def _average(order: Order) -> str:
    average = order.average_price
    if average is None:
        return ""
    return f" at an average {format_price(int(average))}" if average == int(average) else (
        f" at an average {average / 100:.2f}%")


class TradeLog(OrderListener):
    """Logs each order's acceptance, fills and end, in words."""

    log = Logger()

    def __init__(self) -> None:
        #: The state each open order was last logged in.
        self._told: dict[Order, OrderState] = {}

    def order_filled(self, order: Order, price: int, quantity: int) -> None:
        if quantity < 0:
            self.log.warn("{name}: a fill of {amount} at {price} was voided", name=order_name(order),
                          amount=format_money(money(-quantity)), price=format_price(price))
            return
        if quantity == order.quantity == order.executed_quantity:
            return  # filled at once: its "filled" line says it all
        verb = "bought" if order.side == seto_pb2.SIDE_BUY else "sold"
        self.log.info(
            "{name}: {verb} {amount} payoff at {price} ({executed} of {asked} filled)",
            name=order_name(order), verb=verb, amount=format_money(money(quantity)), price=format_price(price),
            executed=format_money(money(order.executed_quantity)), asked=format_money(money(order.quantity)),
        )

    def order_changed(self, order: Order) -> None:
        before = self._told.get(order)
        if order.state is before:
            return
        if order.closed:
            self._told.pop(order, None)
            if before is None and order.adopted:
                self.log.info("{name} (not placed by this client) {ending}", name=order_name(order),
                              ending=adopted_ending(order))
            elif before is None:
                # Never seen open (refused, or accepted and closed by one event): say what it was.
                self.log.info("{name} ({order}) {ending}", name=order_name(order), order=describe(order),
                              ending=ending(order))
            else:
                self.log.info("{name} {ending}", name=order_name(order), ending=ending(order))
            return
        self._told[order] = order.state
        if order.state is OrderState.LIVE and before is None and order.adopted:
            self.log.info("{name} (not placed by this client) is live: {order}", name=order_name(order),
                          order=describe(order))
        elif order.state is OrderState.LIVE:
            self.log.info("{name} accepted: {order}", name=order_name(order), order=describe(order))
        elif order.state is OrderState.UNKNOWN:
            # Its last event says why no answer will come (timeout, cancel, session lost).
            self.log.warn("{name}: {why}; it may be at the exchange", name=order_name(order),
                          why=order.history[-1].name)


def order_name(order: Order) -> str:
    """'order 181', or 'an order' before the exchange gave it an id."""
    return f"order {order.order_id}" if order.order_id is not None else "an order"
