"""A strategy for the process-restart test: prints each fill (and, once, places an order) on stdout."""

from __future__ import annotations

import os
from typing import Any

from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.proto import seto_pb2

MARKET = 100
HOME = 1001


def start(factory: SmarketsClientFactory) -> None:
    def report(fill: Any) -> None:
        # Said on the next turn of the reactor, once the fill is processed and its
        # sequence saved: a process killed between the two gets it again (at least once).
        line = f"FILL {fill.order_id} {fill.total_executed_quantity}"
        factory.clock.callLater(0, print, line, flush=True)

    factory.add_handler("seto.order_executed", report)
    if os.environ.get("FILL_REPORTER_PLACE"):
        factory.whenLoggedIn().addCallback(lambda _: _place(factory))


def _place(factory: SmarketsClientFactory) -> None:
    def placed(accepted: Any) -> None:
        print(f"PLACED {accepted.order_id}", flush=True)

    factory.order(MARKET, HOME, seto_pb2.SIDE_SELL, 100000, 2500).addCallback(placed)
