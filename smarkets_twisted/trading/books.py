"""Order books of the subscribed markets, kept from quotes, and whether to trust them.

``market_quotes`` is a market's snapshot; each ``contract_quotes`` names
price levels and their new total quantity, 0 meaning the level is gone, and
carries the executions since the last one (PROTOCOL.md section 7).

A book is *stale* from the moment its data can no longer be trusted (the
connection dropped, the session ended) until the next snapshot, which the
exchange sends on every resume and to every renewed subscription.  Listeners
hear of every change and of each stale/live transition, so that a strategy
can pull its quotes from a market it no longer sees.

A gap in the exchange's seqs makes every book stale too, until the replay
fills it.  The replay delivers what was missed in order, so a book goes on
taking it, quietly, and is live again when the gap closes: nothing was lost.
Unless the replay gapfilled a seq instead: the exchange gapfills heartbeats,
but also whatever it no longer holds, and the client cannot tell which, so a
gapfill leaves no book whole.  A book whole again only through a snapshot
later in the replay (as a resume sends) is live at the close; the others ask
for a new snapshot (the exchange answers every subscribe with one) and are
live when it comes.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from typing import Any, NamedTuple

from smarkets_twisted.handlers import ClientListener, HandlerRegistry, notify
from smarkets_twisted.proto import seto_pb2


class Level(NamedTuple):
    price: int
    quantity: int


class Execution(NamedTuple):
    """A trade seen in the market: ``liquidity`` is the side that took it."""

    price: int
    quantity: int
    liquidity: int
    microseconds: int


class ContractBook:
    """Bid and offer levels of one contract, with what traded."""

    def __init__(self, contract_id: int) -> None:
        self.contract_id = contract_id
        self.bids: dict[int, int] = {}
        self.offers: dict[int, int] = {}
        self.last_execution: Execution | None = None
        #: Quantity traded since the book was first seen.
        self.traded_volume = 0
        self.high_price: int | None = None
        self.low_price: int | None = None

    def __repr__(self) -> str:
        return f"<ContractBook {self.contract_id} bid={self.best_bid} offer={self.best_offer}>"

    def apply(self, quotes: Any) -> int:
        """Apply one ContractQuotes (a snapshot entry or a delta); return the quantity it traded."""
        # Repeated fields are sliced, not iterated: protobuf's containers iterate
        # index by index through the sequence protocol (ending on an IndexError),
        # where a slice makes the whole list in one call, in half the time.
        for side, levels in ((self.bids, quotes.bids[:]), (self.offers, quotes.offers[:])):
            for quote in levels:
                # Each field read costs a protobuf lookup: quantity once, not twice.
                quantity = quote.quantity
                if quantity:
                    side[quote.price] = quantity
                else:
                    side.pop(quote.price, None)
        traded = 0
        for execution in quotes.executions[:]:
            traded += execution.quantity
        self.traded_volume += traded
        if quotes.HasField("last_execution"):
            last = quotes.last_execution
            self.last_execution = Execution(last.price, last.quantity, last.liquidity, last.microseconds)
        if quotes.HasField("high_price"):
            self.high_price = quotes.high_price
        if quotes.HasField("low_price"):
            self.low_price = quotes.low_price
        return traded

    @property
    def best_bid(self) -> Level | None:
        """The highest bid, if any."""
        return Level(price := max(self.bids), self.bids[price]) if self.bids else None

    @property
    def best_offer(self) -> Level | None:
        """The lowest offer, if any."""
        return Level(price := min(self.offers), self.offers[price]) if self.offers else None

    def depth(self, side: int, levels: int | None = None) -> list[Level]:
        """The levels a taker on the other side meets, best first: bids for SIDE_BUY, offers for SIDE_SELL."""
        book = self.bids if side == seto_pb2.SIDE_BUY else self.offers
        prices = sorted(book, reverse=side == seto_pb2.SIDE_BUY)[:levels]
        return [Level(price, book[price]) for price in prices]

    @property
    def mid(self) -> int | None:
        """The wire price halfway between the best bid and offer, rounded down; None unless both exist."""
        bid, offer = self.best_bid, self.best_offer
        if bid is None or offer is None:
            return None
        return (bid.price + offer.price) // 2


class MarketBook:
    """Every contract's book in one market."""

    def __init__(self, market_id: int) -> None:
        self.market_id = market_id
        self.contracts: dict[int, ContractBook] = {}
        #: The market's traded volume: the last snapshot's, plus executions since.
        self.executed_volume = 0
        #: True until the first snapshot, and whenever the data cannot be trusted.
        self.stale = True

    def __repr__(self) -> str:
        return f"<MarketBook {self.market_id} {'stale' if self.stale else 'live'} {len(self.contracts)} contracts>"

    def snapshot(self, market_quotes: Any) -> None:
        """Replace everything with a MarketQuotes snapshot; the book is live."""
        previous, self.contracts = self.contracts, {}
        for quotes in market_quotes.contract_quotes[:]:  # sliced: see `ContractBook.apply`
            contract = self.contracts[quotes.contract_id] = ContractBook(quotes.contract_id)
            old = previous.get(quotes.contract_id)
            if old is not None:
                contract.traded_volume, contract.last_execution = old.traded_volume, old.last_execution
            contract.apply(quotes)
        self.executed_volume = market_quotes.executed_volume
        self.stale = False

    def update(self, contract_quotes: Any) -> ContractBook:
        """Apply a ContractQuotes delta; return the contract's book."""
        contract = self.contracts.get(contract_quotes.contract_id)
        if contract is None:
            contract = self.contracts[contract_quotes.contract_id] = ContractBook(contract_quotes.contract_id)
        self.executed_volume += contract.apply(contract_quotes)
        return contract


class BookListener:
    """Hooks for book events; override the ones you need."""

    def book_changed(self, book: MarketBook, contract_id: int | None) -> None:
        """A contract's book moved (``contract_id``), or a whole snapshot arrived (None)."""

    def book_stale(self, book: MarketBook) -> None:
        """The book can no longer be trusted, until its next snapshot."""

    def book_live(self, book: MarketBook) -> None:
        """A snapshot made a stale book live again (``book_changed`` follows)."""


class Books(ClientListener):
    """The books of the subscribed markets, by market id: ``factory.books``.

    ``subscriptions`` is the client's own set of subscribed markets: a
    snapshot for a market no longer in it (one already on its way when the
    market was unsubscribed) makes no book, which no delta would ever move.
    ``resubscribe`` asks for new snapshots of markets.
    """

    def __init__(
        self, handlers: HandlerRegistry, subscriptions: Container[int],
        resubscribe: Callable[[Iterable[int]], object],
    ) -> None:
        self._subscriptions = subscriptions
        self._resubscribe = resubscribe
        self.markets: dict[int, MarketBook] = {}
        self._listeners: list[BookListener] = []
        #: While a gap is open: the markets whose books are whole, having taken
        #: every payload since the gap opened, or since a snapshot, and no gapfill.
        self._whole: set[int] | None = None
        handlers.add_handler("seto.market_quotes", self._snapshot)
        handlers.add_handler("seto.contract_quotes", self._quotes)
        handlers.add_listener(self)

    def __getitem__(self, market_id: int) -> MarketBook:
        return self.markets[market_id]

    def __contains__(self, market_id: object) -> bool:
        return market_id in self.markets

    def get(self, market_id: int) -> MarketBook | None:
        return self.markets.get(market_id)

    def add_listener(self, listener: BookListener) -> None:
        self._listeners.append(listener)

    def del_listener(self, listener: BookListener) -> None:
        self._listeners.remove(listener)

    def forget(self, market_id: int) -> None:
        """Drop a market's book (it was unsubscribed)."""
        book = self.markets.pop(market_id, None)
        if self._whole is not None:
            self._whole.discard(market_id)
        if book is not None and not book.stale:
            book.stale = True
            self._tell("book_stale", book)

    def _snapshot(self, quotes: Any) -> None:
        if quotes.market_id not in self._subscriptions:
            return
        book = self.markets.get(quotes.market_id)
        if book is None:
            book = self.markets[quotes.market_id] = MarketBook(quotes.market_id)
        was_stale = book.stale
        book.snapshot(quotes)
        if self._whole is not None:
            # Whole from here on, but live only once the gap closes.
            book.stale = True
            self._whole.add(book.market_id)
            return
        if was_stale:
            self._tell("book_live", book)
        self._tell("book_changed", book, None)

    def _quotes(self, quotes: Any) -> None:
        book = self.markets.get(quotes.market_id)
        if book is None:
            return
        if book.stale:
            # Deltas without their snapshot (or after the data went stale) cannot be
            # placed; in a replay, a whole book takes them, and tells at the close.
            if self._whole is not None and book.market_id in self._whole:
                book.update(quotes)
            return
        book.update(quotes)
        self._tell("book_changed", book, quotes.contract_id)

    def _all_stale(self) -> None:
        for book in self.markets.values():
            if not book.stale:
                book.stale = True
                self._tell("book_stale", book)

    def connection_lost(self, reason: Exception) -> None:
        self._whole = None
        self._all_stale()

    def session_ended(self, reason: Exception) -> None:
        self._whole = None
        self._all_stale()

    def gap_opened(self) -> None:
        self._whole = {market_id for market_id, book in self.markets.items() if not book.stale}
        self._all_stale()

    def gapfilled(self) -> None:
        if self._whole is not None:
            self._whole.clear()

    def gap_closed(self) -> None:
        whole, self._whole = self._whole or set(), None
        for market_id in sorted(whole):
            book = self.markets[market_id]
            book.stale = False
            self._tell("book_live", book)
            self._tell("book_changed", book, None)
        lost = [market_id for market_id in self.markets if market_id not in whole]
        if lost:
            self._resubscribe(lost)

    def _tell(self, hook: str, *args: object) -> None:
        if self._listeners:  # most books have none: each quote would pay for an empty round
            notify(self._listeners, hook, *args)
