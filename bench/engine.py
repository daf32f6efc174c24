"""The simulated exchange's matching engine against a plain price-time book.

The baseline, written here, is what a first implementation would be: one
dict of price levels per side (a deque of [order id, quantity] each), a
sorted list of prices kept with bisect, and a matching loop; no accounts,
no money, no events, no market data.  The engine does all of that too, so
it cannot match the baseline; the goal is at least 0.1 of its speed
everywhere, and a cost per order that does not grow with the orders at one
price.  Scenarios, at 1k / 10k / 100k orders:

  - resting: buys and sells on ticks either side of 50%, none crossing;
  - crossing: half rest, then as many orders each fill one of them;
  - one deep level: every order rests at one price.

Figures: orders per second of each, the ratio engine/baseline (1.0 would be
as fast as the baseline; each book's best of three runs, taken in turns);
in brackets, as an anchor, the ratio of `InlineFloor`, the least an engine
must do per order written in one method (money, events, market data, and
no structure); and
the engine's memory per resting order (tracemalloc, after resting 10k orders;
the accounts' event history, bounded on its own, is kept short so as not to
count; and again with the default history, which keeps every event of those
10k orders, so that what each event costs shows too).

    python bench/engine.py [largest order count]
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smarkets_twisted.exchange.accounts import DEFAULT_HISTORY_LIMIT, Account, Accounts  # noqa: E402
from smarkets_twisted.exchange.catalogue import Catalogue, Contract, Market  # noqa: E402
from smarkets_twisted.exchange.engine import MatchingEngine  # noqa: E402
from smarkets_twisted.proto import seto_pb2  # noqa: E402
from smarkets_twisted.trading.prices import TICKS  # noqa: E402

BUY, SELL = seto_pb2.SIDE_BUY, seto_pb2.SIDE_SELL
QUANTITY = 10_000
MARKET, CONTRACT = 1, 11
BIDS = [price for price in TICKS if price < 5000][-40:]
OFFERS = [price for price in TICKS if price > 5000][:40]
_TICKS = frozenset(TICKS)
#: Runs of each book per figure, the best of which counts.
REPEATS = 3

#: One order: (account index, side, price, quantity).
Order = tuple[int, int, int, int]


class BaselineBook:
    """A price-time book for one contract: dicts of deques, bisect-sorted prices."""

    def __init__(self) -> None:
        self.levels: dict[int, dict[int, deque[list[int]]]] = {BUY: {}, SELL: {}}
        self.prices: dict[int, list[int]] = {BUY: [], SELL: []}
        self.next_id = 1

    def order(self, side: int, price: int, quantity: int) -> int:
        order_id = self.next_id
        self.next_id += 1
        other = SELL if side == BUY else BUY
        prices, levels = self.prices[other], self.levels[other]
        while quantity and prices:
            best = prices[0] if other == SELL else prices[-1]
            if (best > price) if side == BUY else (best < price):
                break
            queue = levels[best]
            resting = queue[0]
            traded = min(quantity, resting[1])
            quantity -= traded
            resting[1] -= traded
            if not resting[1]:
                queue.popleft()
                if not queue:
                    del levels[best]
                    del prices[bisect_left(prices, best)]
        if quantity:
            level = self.levels[side].get(price)
            if level is None:
                level = self.levels[side][price] = deque()
                insort(self.prices[side], price)
            level.append([order_id, quantity])
        return order_id


class InlineFloor:
    """The least an engine must do per order, written in one method: the floor of any sound engine.

    Not a second engine: one contract, two accounts, no labels, time in
    force, cancels, self-cross check or depth limit.  Each order is checked
    (price on a tick, quantity), reserves its worst-case loss (the account's
    profit if either contract wins, as `smarkets_twisted.trading.positions`
    computes it) and is refused beyond the balance; each order and each fill
    makes an account event (a tuple with the account's sequence and money,
    kept in a bounded history for replay), both parties' exposure follows
    every fill, the call ends with a delta of the prices it touched and a
    balance event when the account's money moved.  What the engine does
    beyond this is structure: one module per concern, events with names.
    """

    def __init__(self) -> None:
        self.accounts = [_FloorAccount(), _FloorAccount()]
        self.levels: dict[int, dict[int, _FloorLevel]] = {BUY: {}, SELL: {}}
        self.prices: dict[int, list[int]] = {BUY: [], SELL: []}
        self.open: dict[int, _FloorOrder] = {}
        self.next_id = 1

    def order(self, who: int, side: int, price: int, quantity: int) -> list[tuple[int, int]]:
        if price not in _TICKS or quantity <= 0:
            raise ValueError("invalid order")
        account = self.accounts[who]
        money_before = account.exposure
        order = _FloorOrder(self.next_id, account, side, price, quantity)
        self.next_id += 1
        account.reserve(side, price, quantity)
        if account.exposure > account.balance:
            account.reserve(side, price, -quantity)
            raise ValueError("insufficient funds")
        account.event((1, order.id, price, quantity))
        other = SELL if side == BUY else BUY
        prices, levels = self.prices[other], self.levels[other]
        # Price -> its side's levels and its total before this order.
        touched: dict[int, tuple[dict[int, _FloorLevel], int]] = {}
        while order.available and prices:
            best = prices[0] if other == SELL else prices[-1]
            if (best > price) if side == BUY else (best < price):
                break
            level = levels[best]
            resting = level.orders[0]
            traded = min(order.available, resting.available)
            if best not in touched:
                touched[best] = (levels, level.total)
            level.total -= traded
            for party in (order, resting):
                party.available -= traded
                party.executed += traded
                party.account.fill(party.side, party.price, best, traded)
                party.account.event((2, party.id, best, traded, party.executed, party.available))
            if not resting.available:
                level.orders.popleft()
                del self.open[resting.id]
                if not level.orders:
                    del levels[best]
                    del prices[bisect_left(prices, best)]
        if order.available:
            level = self.levels[side].get(price)
            if level is None:
                level = self.levels[side][price] = _FloorLevel()
                insort(self.prices[side], price)
            if price not in touched:
                touched[price] = (self.levels[side], level.total)
            level.orders.append(order)
            level.total += order.available
            self.open[order.id] = order
        if account.exposure != money_before:
            account.event((9, account.balance, account.exposure))
        delta = []
        for touched_price, (side_levels, before) in touched.items():
            after = side_levels[touched_price].total if touched_price in side_levels else 0
            if after != before:
                delta.append((touched_price, after))
        return delta


class _FloorAccount:
    __slots__ = ("balance", "base", "exposure", "history", "sequence", "wins")

    def __init__(self) -> None:
        self.balance = 10**15
        self.exposure = self.base = self.sequence = 0
        self.wins = {CONTRACT: 0, CONTRACT + 1: 0}
        self.history: deque[tuple[int, ...]] = deque(maxlen=100)

    def reserve(self, side: int, price: int, quantity: int) -> None:
        """Reserve open quantity (release, if negative) on the contract; exposure follows."""
        if side == BUY:
            self.base -= quantity * price
            self.wins[CONTRACT] += quantity * price
        else:
            self.wins[CONTRACT] -= quantity * (10_000 - price)
        self.exposure = max(0, -((self.base + min(self.wins.values())) // 10_000))

    def fill(self, side: int, limit: int, price: int, quantity: int) -> None:
        """Count a fill at ``price`` of open quantity reserved at ``limit``; exposure follows."""
        if side == BUY:
            self.base -= quantity * (price - limit)
            self.wins[CONTRACT] += quantity * (10_000 - limit)
        else:
            self.base += quantity * price
            self.wins[CONTRACT] -= quantity * limit
        self.exposure = max(0, -((self.base + min(self.wins.values())) // 10_000))

    def event(self, fields: tuple[int, ...]) -> None:
        self.sequence += 1
        self.history.append((self.sequence, self.balance - self.exposure, self.exposure, *fields))


class _FloorOrder:
    __slots__ = ("account", "available", "executed", "id", "price", "side")

    def __init__(self, order_id: int, account: _FloorAccount, side: int, price: int, quantity: int) -> None:
        self.id, self.account, self.side, self.price = order_id, account, side, price
        self.available, self.executed = quantity, 0


class _FloorLevel:
    __slots__ = ("orders", "total")

    def __init__(self) -> None:
        self.orders: deque[_FloorOrder] = deque()
        self.total = 0


def engine_runner(history_limit: int = 100) -> Callable[[list[Order]], None]:
    # A short account history by default: the figures are the book's, not the replay log's (bounded apart).
    accounts = [
        Account(name, "pw", number, "", 10**15, history_limit) for number, name in enumerate(("a", "b"), start=1)
    ]
    market = Market(MARKET, "M", (Contract(CONTRACT, "Yes"), Contract(CONTRACT + 1, "No")), seto_pb2.MARKET_STATE_OPEN)
    engine = MatchingEngine(Accounts(accounts), Catalogue([market]))
    create = engine.create_order

    def run(orders: list[Order]) -> None:
        for who, side, price, quantity in orders:
            create(accounts[who], MARKET, CONTRACT, side, quantity, price)  # type: ignore[arg-type]

    return run


def floor_runner() -> Callable[[list[Order]], None]:
    floor = InlineFloor()

    def run(orders: list[Order]) -> None:
        for who, side, price, quantity in orders:
            floor.order(who, side, price, quantity)

    return run


def baseline_runner() -> Callable[[list[Order]], None]:
    book = BaselineBook()

    def run(orders: list[Order]) -> None:
        for _, side, price, quantity in orders:
            book.order(side, price, quantity)

    return run


def resting(count: int) -> list[Order]:
    return [
        (0, BUY, BIDS[n % len(BIDS)], QUANTITY) if n % 2 else (1, SELL, OFFERS[n % len(OFFERS)], QUANTITY)
        for n in range(count)
    ]


def crossing(count: int) -> list[Order]:
    half = count // 2
    rest = [(1, SELL, OFFERS[n % len(OFFERS)], QUANTITY) for n in range(half)]
    take = [(0, BUY, OFFERS[-1], QUANTITY) for _ in range(count - half)]
    return rest + take


def deep_level(count: int) -> list[Order]:
    return [(1, SELL, OFFERS[0], QUANTITY)] * count


def timed(make: Callable[[], Callable[[list[Order]], None]], orders: list[Order]) -> float:
    """Orders per second of one fresh book on ``orders``."""
    run = make()
    gc.collect()
    start = time.perf_counter()
    run(orders)
    return len(orders) / (time.perf_counter() - start)


def best_ratios(orders: list[Order]) -> tuple[float, float, float]:
    """The engine's orders per second, its ratio to the baseline and the floor's, the best of `REPEATS` runs of each.

    The runs alternate, so that a neighbour busy on the shared cores for a
    while slows all three rather than one; the best run is the one least disturbed.
    """
    baseline = engine = floor = 0.0
    for _ in range(REPEATS):
        baseline = max(baseline, timed(baseline_runner, orders))
        engine = max(engine, timed(engine_runner, orders))
        floor = max(floor, timed(floor_runner, orders))
    return engine, engine / baseline, floor / baseline


def memory_per_resting_order(count: int, history_limit: int = 100) -> float:
    run = engine_runner(history_limit)
    orders = resting(count)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    run(orders)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


def main() -> None:
    largest = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    sizes = [size for size in (1_000, 10_000, 100_000) if size <= largest]
    for name, scenario in (("resting", resting), ("crossing", crossing), ("one deep level", deep_level)):
        figures = []
        for size in sizes:
            engine, ratio, floor = best_ratios(scenario(size))
            figures.append(f"{size // 1000}k: {engine / 1000:.1f}k/s ({ratio:.3f}) [{floor:.3f}]")
        print(f"{name:>15}: engine orders/s (engine/baseline) [inline floor/baseline] {'; '.join(figures)}")
    print(
        f"memory per resting order (engine, 10k resting): {memory_per_resting_order(10_000):.0f} B;"
        f" with the default history: {memory_per_resting_order(10_000, DEFAULT_HISTORY_LIMIT):.0f} B"
    )


if __name__ == "__main__":
    main()
