"""Each change of the best prices, for ``twistd smarkets --verbose``.

The status line shows the best bid and offer every few seconds; with
``--verbose`` every change of them is logged too, from ``factory.books``,
whatever the strategy (the demo, a recorder, one of the user's).
"""

from __future__ import annotations

from twisted.logger import Logger

from smarkets_twisted.trading.books import BookListener, Level, MarketBook
from smarkets_twisted.trading.prices import format_money, format_price, money


class PriceLog(BookListener):
    """Logs a contract's best bid and offer each time either moves."""

    log = Logger()

    def __init__(self) -> None:
        #: (market, contract) -> the best bid and offer prices last logged.
        self._logged: dict[tuple[int, int], tuple[int | None, int | None]] = {}

    def book_changed(self, book: MarketBook, contract_id: int | None) -> None:
        contracts = book.contracts.values() if contract_id is None else [book.contracts[contract_id]]
        for contract in contracts:
            bid, offer = contract.best_bid, contract.best_offer
            best = (bid.price if bid else None, offer.price if offer else None)
            key = (book.market_id, contract.contract_id)
            if self._logged.get(key) == best:
                continue
            self._logged[key] = best
            self.log.info("market {market} contract {contract}: best bid {bid}, best offer {offer}",
                          market=book.market_id, contract=contract.contract_id, bid=_level(bid), offer=_level(offer))

    def book_stale(self, book: MarketBook) -> None:
        self.log.info("market {market}: prices stale until the next snapshot", market=book.market_id)
        for key in [key for key in self._logged if key[0] == book.market_id]:
            del self._logged[key]


def _level(level: Level | None) -> str:
    if level is None:
        return "none"
    return f"{format_price(level.price)} x {format_money(money(level.quantity))}"
