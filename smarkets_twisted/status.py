"""The status line: what a person watching the log needs, every few seconds.

One line every ``interval`` seconds instead of a line per price change:
connected or not, the session, seqs in and out, the last ping's round trip,
requests waiting for the throttle, open orders (and how many are of unknown
fate) and orders not yet accepted, the account's available balance and
exposure as the exchange last reported them (unknown until it has), and per
market the best bid / best offer of each contract, and this run's net
position and worst loss there: this client's orders and fills only, never
read as the account's (an earlier run's or another client's are not in them).
Each line also sends a ping, whose round trip the next line shows.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.trading.books import Level
from smarkets_twisted.trading.orders import Order, OrderState
from smarkets_twisted.trading.prices import format_money, format_position, format_price
from smarkets_twisted.wording import counted

#: Seconds between status lines by default.
DEFAULT_STATUS_INTERVAL = 10.0


def status_line(factory: SmarketsClientFactory, rtt: float | None) -> str:
    """The status of ``factory`` in one line; ``rtt`` is the last ping's round trip, if any."""
    state = factory.state
    parts = [
        "logged in" if factory.current is not None else "not connected",
        "session held" if state.session_id is not None else "no session",
        f"seq in {state.next_incoming_seq - 1} out {state.next_outgoing_seq - 1}",
        "no ping answer" if rtt is None else f"ping {rtt * 1000:.1f} ms",
        f"{factory.queued} queued",
        open_orders(factory),
    ]
    positions = factory.positions
    available, exposure = positions.reported_available, positions.reported_exposure
    if available is None or exposure is None:
        # Orders and fills from before this run or of another client count in the exchange's figures only.
        parts.append("exposure unknown")
    else:
        parts.append(f"available {format_money(available)} of {format_money(available + exposure)}")
        parts.append(f"exposure {format_money(exposure)}" + ("" if factory.current is not None else " (last known)"))
    for market_id in sorted(factory.subscriptions | set(positions.markets)):
        parts.append(market_prices(factory, market_id) + market_position(factory, market_id))
    return ", ".join(parts)


def open_orders(factory: SmarketsClientFactory) -> str:
    """'4 open orders (4 unknown), 2 orders pending': open, those the exchange accepted; pending, the rest.

    Of unknown fate: those the end of a session or a lost answer left so, and,
    while not logged in, the live ones too (``cancel_all_on_failure`` may have
    cancelled them).
    """
    accepted: list[Order] = []
    pending: list[Order] = []
    for order in factory.orders.open():
        (pending if order.order_id is None else accepted).append(order)
    line = counted(len(accepted), "open order") + _unknown(factory, accepted)
    return line + (f", {counted(len(pending), 'order')} pending" + _unknown(factory, pending)
                   if pending else "")


def _unknown(factory: SmarketsClientFactory, orders: list[Order]) -> str:
    unknown = sum(1 for order in orders if order.state is OrderState.UNKNOWN
                  or (factory.current is None and order.state is OrderState.LIVE))
    return f" ({unknown} unknown)" if unknown else ""


def market_position(factory: SmarketsClientFactory, market_id: int) -> str:
    """" (this run's position 1001 +£2.00 payoff 1003 -£1.00 payoff, worst loss £0.63)"; or ''.

    This client's net payoff per contract and worst loss in the market, from
    its own orders and fills: the account's may differ.
    """
    market = factory.positions.market(market_id)
    if market is None:
        return ""
    held = "; ".join(f"{contract_id} {format_position(position.net)}"
                    for contract_id, position in sorted(market.contracts.items()) if position.net)
    worst = f"worst loss {format_money(factory.positions.worst_loss(market_id))}"
    return f" (this run's position {held}, {worst})" if held else f" (this run's {worst})"


def market_prices(factory: SmarketsClientFactory, market_id: int, stale_too: bool = False) -> str:
    """'market 100 [1001 30.33% (3.3) / 33.33% (3.0); 1002 - / 36.33% (2.75)]': best bid / best offer.

    A stale book's prices are shown only with ``stale_too`` (and said to be stale).
    """
    book = factory.books.get(market_id)
    if book is None:
        return f"market {market_id} [no prices yet]"
    if book.stale and not stale_too:
        return f"market {market_id} [prices stale]"
    contracts = "; ".join(
        f"{contract_id} {_level(contract.best_bid)} / {_level(contract.best_offer)}"
        for contract_id, contract in sorted(book.contracts.items())
    )
    return f"market {market_id} [{contracts}]" + (" (stale)" if book.stale else "")


def _level(level: Level | None) -> str:
    return "-" if level is None else format_price(level.price)


class StatusService(Service):
    """Logs `status_line` every ``interval`` seconds while running."""

    log = Logger()

    def __init__(self, factory: SmarketsClientFactory, interval: float = DEFAULT_STATUS_INTERVAL) -> None:
        self.factory = factory
        self.interval = interval
        #: The last ping's round trip in seconds; None before the first or after one went unanswered.
        self.rtt: float | None = None
        self._loop = LoopingCall(self.report)
        self._loop.clock = factory.clock

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop.running:
            self._loop.stop()

    def report(self) -> None:
        """Log the status line, and ping for the next one's round trip.

        An error is logged here: raised into the LoopingCall, it would stop
        every later line and surface only as an unhandled Deferred.
        """
        try:
            line = status_line(self.factory, self.rtt)
        except Exception:
            self.log.failure("the status line failed")
        else:
            self.log.info("{status}", status=line)
        if self.factory.current is None:
            self.rtt = None
            return
        self.factory.ping(timeout=self.interval).addCallbacks(self._answered, self._unanswered)

    def _answered(self, rtt: float) -> None:
        self.rtt = rtt

    def _unanswered(self, failure: Failure) -> None:
        self.rtt = None
