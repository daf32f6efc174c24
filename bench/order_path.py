"""What factory.order() costs over building and sending the payload by hand.

The baseline, written here: build the same order_create payload with
protobuf's constructors, serialize it and frame it.  Measured against it in
the same run: ``factory.order()`` on a logged-in client, through to the bytes
written on its transport (numbering, the sent log, the pending request and
its Deferred, the throttle, factory.orders' tracking).  Between runs, and
not timed, the exchange rejects the orders.  Printed as the
baseline's time over the path's (goal: 0.5; 1.00 would cost nothing more).
Two anchors show what the layers cost: the same work written inline (build,
number, serialize, log, frame, write, a Deferred and a request keyed as its
answer finds it), and that with the order tracked as factory.orders does.

    python bench/order_path.py [order count]
"""

from __future__ import annotations

import gc
import itertools
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from smarkets_twisted.errors import OrderRejected  # noqa: E402
from smarkets_twisted.framing import encode_frame  # noqa: E402
from smarkets_twisted.handlers import HandlerRegistry  # noqa: E402
from smarkets_twisted.payloads import application_message  # noqa: E402
from smarkets_twisted.proto import eto_pb2, seto_pb2  # noqa: E402
from smarkets_twisted.requests import Request  # noqa: E402
from smarkets_twisted.trading.orders import Order, Orders  # noqa: E402
from tests.scripted import logged_in  # noqa: E402

RUNS = 7


def main(count: int) -> None:
    clock = Clock()
    # Limits no run of the bench reaches: every order goes out at once.
    exchange, factory, protocol = logged_in(clock, throttle=(10**9, 10**9, 200))
    transport = exchange.transport
    assert transport is not None and factory.current is protocol
    transport.clear()
    seq = [0]

    def bare() -> None:
        out = []
        for i in range(count):
            seq[0] += 1
            payload = seto_pb2.Payload(
                type=seto_pb2.PAYLOAD_ORDER_CREATE,
                eto_payload=eto_pb2.Payload(seq=seq[0]),
                order_create=seto_pb2.OrderCreate(
                    market_id=100, contract_id=1001, side=seto_pb2.SIDE_BUY, quantity=10000, price=2500 + i % 50,
                    tif=seto_pb2.GOOD_TIL_CANCELLED, reference=i,
                ),
            )
            out.append(encode_frame(payload.SerializeToString()))

    references = itertools.count(1)

    placed: list[Deferred[Any]] = []

    def order() -> None:
        for i in range(count):
            placed.append(factory.order(100, 1001, seto_pb2.SIDE_BUY, 10000, 2500 + i % 50,
                                        reference=next(references)))

    def inline(tracked: bool) -> None:
        transport = StringTransport()
        sent: dict[int, bytes] = {}
        pending: dict[Deferred[Any], Request] = {}
        awaiting: dict[Any, Request] = {}
        orders = Orders(HandlerRegistry())
        for i in range(count):
            reference = next(references)
            payload = application_message("order_create", market_id=100, contract_id=1001, side=seto_pb2.SIDE_BUY,
                                          quantity=10000, price=2500 + i % 50, maq=None,
                                          tif=seto_pb2.GOOD_TIL_CANCELLED, reference=reference, label=None)
            request = Request(payload, None)
            deferred: Deferred[Any] = Deferred()
            request.deferred = deferred
            pending[deferred] = request
            seq[0] += 1
            payload.eto_payload.seq = request.seq = seq[0]
            data = sent[seq[0]] = payload.SerializeToString()
            transport.write(encode_frame(data))
            request.payload = None
            request.keys = ((reference, "order", seq[0]), ("order", seq[0]))
            for key in request.keys:
                awaiting[key] = request
            if tracked:
                orders.placed(Order(100, 1001, seto_pb2.SIDE_BUY, 2500 + i % 50, 10000, reference), deferred)

    def answer(first_seq: int) -> None:
        """Not timed: the exchange rejects the run's orders, so that what is
        pending stays what a live client holds, not a heap growing run by run."""
        assert len(transport.value()) > count * 20
        transport.clear()
        assert exchange.session is not None
        for deferred in placed:
            deferred.addErrback(lambda failure: failure.trap(OrderRejected))
        placed.clear()
        for seq in range(first_seq, factory.state.next_outgoing_seq):
            reject = application_message("order_rejected", seq=seq, reason=seto_pb2.ORDER_REJECTED_INSUFFICIENT_FUNDS)
            exchange.session.send(reject, clock.seconds())
        exchange.flush()
        assert not factory.requests

    measures = {"bare": bare, "inline": lambda: inline(False), "inline, tracked": lambda: inline(True), "order": order}
    best = dict.fromkeys(measures, float("inf"))
    for _ in range(RUNS):
        for name, work in measures.items():
            first_seq = factory.state.next_outgoing_seq
            gc.collect()  # each run starts from the same collector state: its cost lands where it is due
            start = time.perf_counter()
            work()
            best[name] = min(best[name], time.perf_counter() - start)
            if work is order:
                answer(first_seq)
    print(f"{count} orders; bare build + serialize + frame: {best['bare'] * 1e6 / count:.2f} us each")
    print(f"  factory.order() to the transport, as a fraction of bare (goal 0.5): {best['bare'] / best['order']:.2f}")
    print(f"  anchor: the same work inline, no layers:                           {best['bare'] / best['inline']:.2f}")
    print(f"  anchor: the same, the order tracked as factory.orders does:        "
          f"{best['bare'] / best['inline, tracked']:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
