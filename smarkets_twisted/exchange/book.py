"""The resting orders of one contract, by price then arrival, with market data.

Each price level keeps a running total of its available quantity, so that
the visible book costs one step per level shown, however many orders rest at
a price.  A level is a queue: orders join at the back and are matched from
the front; an order leaving from the middle (cancelled) is only marked, and
skipped, and the queue is compacted once marked orders outnumber the others,
so that every operation is amortised constant time.

Market data deltas are kept as the book changes: the first change to a
shown price since the last `BookSide.changes` remembers that price's total
before it, and `BookSide.changes` reports only those prices.  Changes below
the visible depth are not even noted, since they cannot change what is
shown; only a level appearing or vanishing within the visible depth can push
another level in or out of view, and then (once per call) the visible levels
are noted too, to compare with what is shown afterwards.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator

from smarkets_twisted.exchange.accounts import Account
from smarkets_twisted.exchange.events import Level
from smarkets_twisted.exchange.orders import Order
from smarkets_twisted.proto import seto_pb2


class _Level:
    """The orders resting at one price, oldest first, and their total."""

    __slots__ = ("dead", "orders", "total")

    def __init__(self) -> None:
        self.orders: deque[Order] = deque()
        self.total = 0
        #: Orders in the queue that have left the book.
        self.dead = 0

    def front(self) -> Order | None:
        orders = self.orders
        while orders and not orders[0].resting:
            orders.popleft()
            self.dead -= 1
        return orders[0] if orders else None

    def compact(self) -> None:
        if self.dead * 2 > len(self.orders):
            self.orders = deque(order for order in self.orders if order.resting)
            self.dead = 0


class BookSide:
    """One side (bids or offers) of one contract.

    :param best_is_highest: True for bids, False for offers.
    :param depth: levels shown in market data (None: all).
    """

    def __init__(self, best_is_highest: bool, depth: int | None) -> None:
        self.best_is_highest = best_is_highest
        self.depth = depth
        self._levels: dict[int, _Level] = {}
        self._prices: list[int] = []
        # Since the last changes(): the total before the first change, per
        # shown price; and, once a shown level appeared or vanished (with a
        # bounded depth), the visible levels before that.
        self._before: dict[int, int] = {}
        self._visible_before: dict[int, int] | None = None

    def add(self, order: Order) -> None:
        """Rest an order at the back of its price's queue."""
        level = self._levels.get(order.price)
        self._touch(order.price, structural=level is None)
        if level is None:
            level = self._levels[order.price] = _Level()
            insort(self._prices, order.price)
        level.orders.append(order)
        level.total += order.available
        order.resting = True

    def remove(self, order: Order) -> None:
        """Take a resting order off the book, with whatever it has available."""
        level = self._levels[order.price]
        self._touch(order.price, structural=len(level.orders) - level.dead == 1)
        level.total -= order.available
        order.resting = False
        if level.orders[0] is order:
            level.orders.popleft()
        else:
            level.dead += 1
        if level.front() is None:
            del self._levels[order.price]
            del self._prices[bisect_left(self._prices, order.price)]
        else:
            level.compact()

    def take(self, order: Order, quantity: int) -> None:
        """Lower a resting order's available quantity by ``quantity`` (filled or reduced)."""
        self._touch(order.price)
        self._levels[order.price].total -= quantity
        order.available -= quantity

    def best(self) -> Order:
        """The order first in line: best price, earliest arrival (the side must not be empty)."""
        price = self._prices[-1] if self.best_is_highest else self._prices[0]
        front = self._levels[price].front()
        assert front is not None, "a level is deleted with its last order"
        return front

    def reaches(self, limit: int) -> bool:
        """Whether an incoming order at ``limit`` trades with the best order on this side."""
        prices = self._prices
        if not prices:
            return False
        return prices[-1] >= limit if self.best_is_highest else prices[0] <= limit

    def prices(self) -> Iterator[int]:
        """Prices best first."""
        return reversed(self._prices) if self.best_is_highest else iter(self._prices)

    def would_meet(self, account: Account, limit: int, quantity: int) -> bool:
        """Whether an incoming order for ``quantity`` at ``limit`` would trade with one of ``account``'s orders."""
        for price in self.prices():
            if not self.crosses(price, limit):
                return False
            for order in self._levels[price].orders:
                if order.resting:
                    if order.account is account:
                        return True
                    quantity -= order.available
                    if quantity <= 0:
                        return False
        return False

    def visible(self, depth: int | None) -> dict[int, int]:
        """Total available quantity per price, best first, for the best ``depth`` prices."""
        result: dict[int, int] = {}
        for price in self.prices():
            if depth is not None and len(result) >= depth:
                break
            result[price] = self._levels[price].total
        return result

    def total(self, price: int) -> int:
        """The available quantity at ``price`` (0 when nothing rests there)."""
        level = self._levels.get(price)
        return level.total if level is not None else 0

    def crosses(self, price: int, limit: int) -> bool:
        """Whether a resting order at ``price`` matches an incoming order at ``limit``."""
        return price >= limit if self.best_is_highest else price <= limit

    def changes(self) -> tuple[Level, ...]:
        """The visible levels changed since the last call, best first (quantity 0: gone).

        A level that left the visible depth is reported with quantity 0, one
        that entered it with its total, so that applying the deltas to the
        snapshot keeps an exact copy of the visible book.
        """
        before = self._before
        if not before:
            return ()
        self._before = {}
        if self._visible_before is None:
            # The same levels are shown as before: only the touched ones can differ.
            levels = self._levels
            changed = []
            for price in sorted(before, reverse=self.best_is_highest) if len(before) > 1 else before:
                level = levels.get(price)
                total = level.total if level is not None else 0
                if total != before[price]:
                    changed.append(Level(price, total))
            return tuple(changed)
        before = self._visible_before
        self._visible_before = None
        shown = self.visible(self.depth)
        prices = sorted(before.keys() | shown.keys(), reverse=self.best_is_highest)
        return tuple(
            Level(price, shown.get(price, 0)) for price in prices if before.get(price, 0) != shown.get(price, 0)
        )

    def _touch(self, price: int, structural: bool = False) -> None:
        """Note what is shown before the level at ``price`` changes.

        :param structural: the level appears or vanishes.
        """
        depth = self.depth
        if depth is not None and not self._within_depth(price):
            return
        before = self._before
        if price not in before:
            before[price] = self.total(price)
        if structural and depth is not None and self._visible_before is None:
            shown = self.visible(depth)
            for shown_price in shown:
                # Changes so far kept the same levels shown, with these totals before them.
                shown[shown_price] = before.get(shown_price, shown[shown_price])
            self._visible_before = shown

    def _within_depth(self, price: int) -> bool:
        """Whether ``price`` is, or as a new level would be, among the levels shown."""
        prices = self._prices
        depth = self.depth
        if depth is None or len(prices) < depth:
            return True
        return price >= prices[-depth] if self.best_is_highest else price <= prices[depth - 1]


class Book:
    """Bids and offers of one contract."""

    def __init__(self, depth: int | None) -> None:
        self.bids = BookSide(best_is_highest=True, depth=depth)
        self.offers = BookSide(best_is_highest=False, depth=depth)

    def side(self, side: seto_pb2.Side) -> BookSide:
        return self.bids if side == seto_pb2.SIDE_BUY else self.offers

    def opposite(self, side: seto_pb2.Side) -> BookSide:
        return self.offers if side == seto_pb2.SIDE_BUY else self.bids
