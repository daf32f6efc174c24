"""Costs that must stay linear: the per-item time at 10k and at 100k.

  - cancelling queued requests newest first (each cancellation finds its
    request among all those still queued);
  - looking up every payload of a full sent log, as a replay of the whole
    log does.

Prints the time per item at each size and their ratio: about 1 when the
cost is linear, about 10 when it is quadratic.

    python bench/linear_costs.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.defer import CancelledError  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from smarkets_twisted.payloads import application_message  # noqa: E402
from smarkets_twisted.requests import PendingRequests  # noqa: E402
from smarkets_twisted.session import SentLog  # noqa: E402

SIZES = (10_000, 100_000)


def cancel_newest_first(count: int) -> float:
    """Seconds to cancel ``count`` queued requests, newest first."""
    pending = PendingRequests(Clock())
    payload = application_message("order_cancel", order_id=1)
    requests = [pending.add(payload, None, None) for _ in range(count)]
    for request in requests:
        request.deferred.addErrback(lambda f: f.trap(CancelledError))
    start = time.perf_counter()
    for request in reversed(requests):
        request.deferred.cancel()
    elapsed = time.perf_counter() - start
    assert len(pending) == 0
    return elapsed


def look_up_sent_log(count: int) -> float:
    """Seconds to look up each of ``count`` payloads in a full sent log."""
    log = SentLog(count)
    for seq in range(1, count + 1):
        log.append(seq, b"payload")
    start = time.perf_counter()
    for seq in range(1, count + 1):
        log.get(seq)
    return time.perf_counter() - start


def main() -> None:
    for name, work in (("cancel queued requests", cancel_newest_first), ("sent-log lookup", look_up_sent_log)):
        per_item = [min(work(size) for _ in range(3)) / size for size in SIZES]
        sizes = ", ".join(f"{size // 1000}k: {cost * 1e6:.2f} us" for size, cost in zip(SIZES, per_item, strict=True))
        print(f"{name:>24}: per item {sizes}; 100k/10k = {per_item[1] / per_item[0]:.2f} (1 = linear)")


if __name__ == "__main__":
    main()
