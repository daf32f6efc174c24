"""The strategy `twistd smarkets` runs when given none: watch markets, trade small.

It subscribes to the markets, logs the best prices as they move (when
verbose), and every ``interval`` seconds takes the best offer of one contract
with a small immediate-or-cancel buy (`smarkets_twisted.tradelog` says how
it went).  A strategy is any callable
that takes the factory, e.g. ``--strategy mypackage.mymodule:start``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from smarkets_twisted import errors
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.trading.books import MarketBook
from smarkets_twisted.trading.prices import format_money, money

#: The payoff of each demo order: £2.00, in 1/10000 of the currency.
DEMO_QUANTITY = 20000


class DemoStrategy:
    """Subscribe, log prices, and take the best offer now and then."""

    log = Logger()

    def __init__(
        self, factory: SmarketsClientFactory, market_ids: list[int], interval: float = 5.0, verbose: bool = False
    ) -> None:
        self.factory = factory
        #: Log every change of the best prices (else the status line shows them).
        self.verbose = verbose
        self.books = {market_id: MarketBook(market_id) for market_id in market_ids}
        self.interval = interval
        self.orders = 0
        self._turn = 0
        self._best: dict[int, tuple[tuple[int, int] | None, tuple[int, int] | None]] = {}
        self._trader = LoopingCall(self.trade)
        self._trader.clock = factory.clock
        factory.add_handler("seto.contract_quotes", self._quotes)
        factory.add_handler("seto.market_quotes", self._snapshot)
        factory.add_handler("seto.balance_changed", self._balance)

    def start(self) -> None:
        self.factory.whenLoggedIn().addCallback(self._logged_in)

    def stop(self) -> None:
        if self._trader.running:
            self._trader.stop()

    def _logged_in(self, protocol: Any) -> None:
        for market_id in self.books:
            self.factory.subscribe(market_id).addErrback(self._failed, f"subscribe {market_id}")
        if not self._trader.running:
            self._trader.start(self.interval, now=False).addErrback(self._failed, "trading loop")

    def _snapshot(self, quotes: Any) -> None:
        book = self.books.get(quotes.market_id)
        if book is not None:
            book.snapshot(quotes)
            self.log.info("market {market}: snapshot of {count} contracts", market=quotes.market_id,
                          count=len(book.contracts))

    def _quotes(self, quotes: Any) -> None:
        book = self.books.get(quotes.market_id)
        if book is None:
            return
        contract = book.update(quotes)
        if not self.verbose:
            return
        best = (contract.best_bid, contract.best_offer)
        if self._best.get(quotes.contract_id) == best:
            return
        self._best[quotes.contract_id] = best
        self.log.info(
            "market {market} contract {contract}: best bid {bid}, best offer {offer}",
            market=quotes.market_id,
            contract=quotes.contract_id,
            bid=_level(contract.best_bid),
            offer=_level(contract.best_offer),
        )

    def _balance(self, balance: Any) -> None:
        self.log.info("available balance {available}, exposure {exposure}",
                      available=format_money(money(balance.available_balance)),
                      exposure=format_money(money(balance.exposure)))

    def trade(self) -> None:
        """Take the best offer of the next contract that has one."""
        candidates = [
            (market_id, contract_id, book.best_offer)
            for market_id, market in sorted(self.books.items())
            for contract_id, book in sorted(market.contracts.items())
            if book.best_offer is not None
        ]
        if not candidates or self.factory.current is None:
            return
        market_id, contract_id, offer = candidates[self._turn % len(candidates)]
        self._turn += 1
        assert offer is not None
        price = offer[0]
        self.orders += 1
        placed = self.factory.order(market_id, contract_id, seto_pb2.SIDE_BUY, DEMO_QUANTITY, price,
                                    tif=seto_pb2.IMMEDIATE_OR_CANCEL, timeout=30)
        placed.addErrback(self._failed, "order")

    def _failed(self, failure: Failure, what: str) -> None:
        if failure.check(errors.RequestRejected, errors.RequestTimeout, errors.SessionLost, errors.NotLoggedIn):
            self.log.warn("{what}: {error}", what=what, error=failure.getErrorMessage())
        else:
            self.log.failure("{what} failed", failure, what=what)


def _level(level: tuple[int, int] | None) -> str:
    if level is None:
        return "none"
    price, quantity = level
    return f"{price / 100:.2f}% x {quantity / 10000:.2f}"
