"""A client-side view of a market's order book, kept from quotes.

``market_quotes`` is the snapshot; each ``contract_quotes`` names price levels
and their new total quantity, 0 meaning the level is gone.
"""

from __future__ import annotations

from typing import Any


class ContractBook:
    """Bid and offer levels of one contract: price → total quantity."""

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.offers: dict[int, int] = {}

    def apply(self, quotes: Any) -> None:
        """Apply one ContractQuotes (a snapshot entry or a delta)."""
        for side, levels in ((self.bids, quotes.bids), (self.offers, quotes.offers)):
            for quote in levels:
                if quote.quantity:
                    side[quote.price] = quote.quantity
                else:
                    side.pop(quote.price, None)

    @property
    def best_bid(self) -> tuple[int, int] | None:
        """(price, quantity) of the highest bid, if any."""
        if not self.bids:
            return None
        price = max(self.bids)
        return price, self.bids[price]

    @property
    def best_offer(self) -> tuple[int, int] | None:
        """(price, quantity) of the lowest offer, if any."""
        if not self.offers:
            return None
        price = min(self.offers)
        return price, self.offers[price]


class MarketBook:
    """Every contract's book in one market."""

    def __init__(self, market_id: int) -> None:
        self.market_id = market_id
        self.contracts: dict[int, ContractBook] = {}

    def snapshot(self, market_quotes: Any) -> None:
        """Replace everything with a MarketQuotes snapshot."""
        self.contracts = {}
        for quotes in market_quotes.contract_quotes:
            self.update(quotes)

    def update(self, contract_quotes: Any) -> ContractBook:
        """Apply a ContractQuotes delta; return the contract's book."""
        book = self.contracts.setdefault(contract_quotes.contract_id, ContractBook())
        book.apply(contract_quotes)
        return book
