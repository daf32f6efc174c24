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
as fast as the baseline; each book's best of three runs, taken in turns), and
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


def best_ratio(orders: list[Order]) -> tuple[float, float]:
    """The engine's orders per second and its ratio to the baseline, the best of `REPEATS` runs of each.

    The runs alternate, so that a neighbour busy on the shared cores for a
    while slows both rather than one; the best run is the one least disturbed.
    """
    baseline = engine = 0.0
    for _ in range(REPEATS):
        baseline = max(baseline, timed(baseline_runner, orders))
        engine = max(engine, timed(engine_runner, orders))
    return engine, engine / baseline


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
            engine, ratio = best_ratio(scenario(size))
            figures.append(f"{size // 1000}k: {engine / 1000:.1f}k/s ({ratio:.3f})")
        print(f"{name:>15}: engine orders/s (engine/baseline) {'; '.join(figures)}")
    print(
        f"memory per resting order (engine, 10k resting): {memory_per_resting_order(10_000):.0f} B;"
        f" with the default history: {memory_per_resting_order(10_000, DEFAULT_HISTORY_LIMIT):.0f} B"
    )


if __name__ == "__main__":
    main()
