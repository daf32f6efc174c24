"""How much dataReceived costs over protobuf parsing alone.

Baseline: ``seto.Payload.FromString`` on each payload, already split.
Measured, in the same run on the same payloads:
  - Deframer.feed over the whole stream in 64 KiB chunks;
  - FromString plus IsInitialized (the required-field check proto2 needs);
  - parse_payload (FromString plus the required-field and type checks);
  - SmarketsClientProtocol.dataReceived (deframe, parse, seq accounting,
    dispatch to one handler) on a logged-in client.
Prints each as a ratio to the baseline (timings here are noisy; ratios less so).

    python bench/data_received.py [payload count]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock  # noqa: E402

from smarkets_twisted.framing import Deframer, encode_frame  # noqa: E402
from smarkets_twisted.payloads import Payload, application_message, parse_payload  # noqa: E402
from smarkets_twisted.proto import seto_pb2  # noqa: E402
from smarkets_twisted.session import Role, Session, SessionState  # noqa: E402
from tests.scripted import ScriptedExchange, make_factory  # noqa: E402

CHUNK = 65536


def quote_payloads(count: int) -> list[Payload]:
    """contract_quotes deltas and order_executed messages, as a busy market sends."""
    payloads = []
    for i in range(count):
        if i % 4 == 3:
            payload = application_message(
                "order_executed", price=2500 + i % 50, quantity=10000, order_id=i, side=seto_pb2.SIDE_BUY,
                market_id=100, contract_id=1001, account_sequence_64=i, total_executed_quantity=10000,
                executed_avg_price=2500, available_quantity=0,
            )
        else:
            payload = application_message("contract_quotes", contract_id=1001, market_id=100)
            for level in range(3):
                quote = payload.contract_quotes.bids.add()
                quote.price, quote.quantity = 2500 - level, 10000 * (i % 7 + level)
        payloads.append(payload)
    return payloads


def best_of(runs: int, work: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main(count: int) -> None:
    clock = Clock()
    exchange = ScriptedExchange(clock)
    factory = make_factory(clock)
    protocol = exchange.connect(factory)
    exchange.accept_login()
    received = [0]

    def delivered(message: object) -> None:
        received[0] += 1

    factory.add_handler("seto.contract_quotes", delivered)
    factory.add_handler("seto.order_executed", delivered)

    # Number the payloads as the exchange would, then keep the bytes.
    sender = Session(SessionState(), Role.EXCHANGE, now=0.0)
    sender.state.next_outgoing_seq = exchange.state.next_outgoing_seq
    bodies = []
    for payload in quote_payloads(count):
        sender.send(payload, 0.0)
        bodies.append(sender.state.sent.get(payload.eto_payload.seq))
    stream = b"".join(encode_frame(b) for b in bodies)
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]

    def baseline() -> None:
        for body in bodies:
            Payload.FromString(body)

    def checked() -> None:
        for body in bodies:
            Payload.FromString(body).IsInitialized()

    def deframe() -> None:
        deframer = Deframer()
        for chunk in chunks:
            deframer.feed(chunk)

    def parse() -> None:
        for body in bodies:
            parse_payload(body)

    first_seq = exchange.state.next_outgoing_seq

    def data_received() -> None:
        factory.state.next_incoming_seq = first_seq
        for chunk in chunks:
            protocol.dataReceived(chunk)

    data_received()
    assert received[0] == count, (received[0], count)
    runs = 5
    base = best_of(runs, baseline)
    print(f"{count} payloads, {len(stream)} bytes; baseline FromString: {base * 1e6 / count:.2f} us/payload")
    measured = (
        ("Deframer.feed", deframe),
        ("+IsInitialized", checked),
        ("parse_payload", parse),
        ("dataReceived", data_received),
    )
    for name, work in measured:
        print(f"{name:>15}: {best_of(runs, work) / base:.2f} x baseline")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
