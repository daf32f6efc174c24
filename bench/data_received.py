"""How near the inbound path comes to protobuf parsing alone.

The ceiling is ``seto.Payload.FromString`` on payloads already split.  Every
other figure is that ceiling's time divided by the path's time on the same
payloads in the same run (1.00 would cost nothing over parsing; higher is
better), with the stream fed in 64 KiB and in 1400-byte chunks:

  - Deframer + FromString (goal: 0.75);
  - anchors written here, for comparison: a plain offset-walking deframer +
    FromString; the reference client's way of framing (decode a header,
    slice the frame off, keep the rest) + FromString; Twisted's
    Int32StringReceiver + FromString, on the same payloads with 4-byte
    headers; FromString + a minimal dispatch with no checks at all, and the
    same with the required-field check parse_payload makes; and the floor
    of any sound path, written inline: the Deframer, FromString, that check,
    the body's presence, the seq and one handler, nothing else;
  - the checks alone: FromString + IsInitialized, and parse_payload;
  - SmarketsClientProtocol.dataReceived on a logged-in client: deframe,
    parse, check, seqs, dispatch to one handler (goal: 0.30, aim 0.45);
    and the same with the trading layer's books (the market subscribed, so
    that each contract_quotes is applied) and orders listening too.

The stream is what a busy market sends: 80% contract_quotes deltas, order
events (accepted, executed, cancelled), and a market_quotes snapshot now
and then.

    python bench/data_received.py [payload count]
"""

from __future__ import annotations

import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock  # noqa: E402
from twisted.protocols.basic import Int32StringReceiver  # noqa: E402

from smarkets_twisted.framing import Deframer, encode_frame  # noqa: E402
from smarkets_twisted.handlers import HandlerRegistry  # noqa: E402
from smarkets_twisted.payloads import SETO_FIELDS, Payload, application_message, handler_name, parse_payload  # noqa: E402
from smarkets_twisted.proto import seto_pb2  # noqa: E402
from tests.scripted import logged_in  # noqa: E402

CHUNK_SIZES = (65536, 1400)
RUNS = 7
FromString = Payload.FromString


def market_stream(count: int) -> list[Payload]:
    """contract_quotes deltas, order events and now and then a market_quotes snapshot."""
    payloads = []
    for i in range(count):
        if i % 50 == 0:
            payload = application_message("market_quotes", market_id=100)
            for contract in range(10):
                quotes = payload.market_quotes.contract_quotes.add(market_id=100, contract_id=1000 + contract)
                for level in range(3):
                    quotes.bids.add(price=2500 - level, quantity=10000 * (level + 1))
                    quotes.offers.add(price=2510 + level, quantity=20000 * (level + 1))
        elif i % 5 == 1:
            event = (i // 5) % 3
            order = dict(order_id=10_000 + i, account_sequence_64=i, market_id=100, contract_id=1001)
            if event == 0:
                payload = application_message("order_accepted", seq=i, price=2500, quantity=10000, **order)
            elif event == 1:
                payload = application_message(
                    "order_executed", price=2500, quantity=10000, side=seto_pb2.SIDE_BUY,
                    total_executed_quantity=10000, executed_avg_price=2500, available_quantity=0, **order,
                )
            else:
                payload = application_message("order_cancelled", reason=seto_pb2.ORDER_CANCELLED_MEMBER_REQUESTED,
                                              **order)
        else:
            payload = application_message("contract_quotes", contract_id=1001, market_id=100)
            quotes = payload.contract_quotes
            for level in range(3):
                quotes.bids.add(price=2500 - level, quantity=10000 * (i % 7 + level))
                quotes.offers.add(price=2510 + level, quantity=10000 * (i % 5 + level))
        payloads.append(payload)
    return payloads


# Anchors: other ways to frame the same stream, written here to measure against.


class PlainDeframer:
    """One buffer walked from an offset: a ULEB128 loop and a slice per frame."""

    def __init__(self) -> None:
        self.rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self.rest + data
        frames = []
        pos, end = 0, len(buffer)
        while pos < end:
            length = shift = 0
            header_end = pos
            while header_end < end:
                byte = buffer[header_end]
                header_end += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            else:
                break
            body_end = header_end + length
            frame_end = max(body_end, pos + 4)
            if frame_end > end:
                break
            frames.append(buffer[header_end:body_end])
            pos = frame_end
        self.rest = buffer[pos:]
        return frames


class IncompleteHeader(Exception):
    pass


def reference_uleb128(data: bytes) -> tuple[int, int]:
    """(value, header size) of the ULEB128 at the start of ``data``."""
    value = shift = 0
    for size, byte in enumerate(data, start=1):
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, size
        shift += 7
    raise IncompleteHeader()


def reference_decode_all(data: bytes) -> tuple[list[bytes], bytes]:
    """The reference client's way: decode a header, slice off the frame, keep the rest."""
    payloads = []
    while len(data) >= 4:
        try:
            length, header_size = reference_uleb128(data)
        except IncompleteHeader:
            break
        frame_size = max(length + header_size, 4)
        if len(data) < frame_size:
            break
        frame, data = data[:frame_size], data[frame_size:]
        payloads.append(frame[header_size : header_size + length])
    return payloads, data


class ParsingInt32Receiver(Int32StringReceiver):
    MAX_LENGTH = 4 * 1024 * 1024

    def stringReceived(self, string: bytes) -> None:
        FromString(string)


def best_times(measures: dict[str, Callable[[], None]], runs: int) -> dict[str, float]:
    """The best of ``runs`` times of each, taken in turn so that noise hits all alike."""
    best = dict.fromkeys(measures, float("inf"))
    for _ in range(runs):
        for name, work in measures.items():
            start = time.perf_counter()
            work()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(count: int) -> None:
    exchange, factory, protocol = logged_in(Clock())
    received = [0]

    def delivered(message: object) -> None:
        received[0] += 1

    payloads = market_stream(count)
    # The path measured dispatches each payload to one handler.  The trading
    # layer's attachments (factory.books, factory.orders) are measured apart:
    # what they do with each payload is theirs, not the protocol's.
    attached = factory.handlers
    bare = HandlerRegistry()
    for name in {handler_name(p) for p in payloads}:
        attached.add_handler(name, delivered)
        bare.add_handler(name, delivered)
    factory.handlers = bare
    factory.subscriptions.add(100)  # the books keep the market the stream quotes

    first_seq = exchange.state.next_outgoing_seq
    bodies = exchange.numbered(payloads)
    stream = b"".join(encode_frame(b) for b in bodies)
    int32_stream = b"".join(struct.pack(">I", len(b)) + b for b in bodies)

    def ceiling() -> None:
        for body in bodies:
            FromString(body)

    def checked() -> None:
        for body in bodies:
            FromString(body).IsInitialized()

    def parse() -> None:
        for body in bodies:
            parse_payload(body)

    table = {number: (field, delivered) for number, field in SETO_FIELDS.items()}

    def minimal_dispatch() -> None:
        for body in bodies:
            payload = FromString(body)
            field, handler = table[payload.type]
            handler(getattr(payload, field))

    def checked_dispatch() -> None:
        for body in bodies:
            payload = FromString(body)
            payload.SerializeToString()  # the required-field check parse_payload makes
            field, handler = table[payload.type]
            handler(getattr(payload, field))

    print(f"{count} payloads, {len(stream)} bytes; ceiling, FromString on split payloads:", end=" ")
    base = best_times({"ceiling": ceiling}, RUNS)["ceiling"]
    print(f"{count / base / 1e6:.2f}M payloads/s ({base * 1e6 / count:.2f} us each)")
    best = best_times({"ceiling": ceiling, "FromString + IsInitialized": checked, "parse_payload": parse}, RUNS)
    for name in ("FromString + IsInitialized", "parse_payload"):
        print(f"  {name:<48} {best['ceiling'] / best[name]:.2f}")

    def chunked(size: int) -> dict[str, Callable[[], None]]:
        """The paths that take the stream in ``size``-byte chunks."""
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        int32_chunks = [int32_stream[i : i + size] for i in range(0, len(int32_stream), size)]

        def deframer() -> None:
            deframer = Deframer()
            for chunk in chunks:
                for frame in deframer.feed(chunk):
                    FromString(frame)

        def plain() -> None:
            deframer = PlainDeframer()
            for chunk in chunks:
                for frame in deframer.feed(chunk):
                    FromString(frame)

        def reference() -> None:
            rest = b""
            for chunk in chunks:
                frames, rest = reference_decode_all(rest + chunk)
                for frame in frames:
                    FromString(frame)

        def int32() -> None:
            receiver = ParsingInt32Receiver()
            for chunk in int32_chunks:
                receiver.dataReceived(chunk)

        def floor() -> None:
            deframer = Deframer()
            expected = first_seq
            for chunk in chunks:
                for frame in deframer.feed(chunk):
                    payload = FromString(frame)
                    payload.SerializeToString()  # the required-field check
                    field, handler = table[payload.type]
                    if not payload.HasField(field) or payload.eto_payload.seq != expected:
                        raise AssertionError(frame)
                    expected += 1
                    handler(getattr(payload, field))

        def data_received() -> None:
            factory.state.next_incoming_seq = first_seq
            for chunk in chunks:
                protocol.dataReceived(chunk)

        def with_trading() -> None:
            factory.handlers = attached
            data_received()
            factory.handlers = bare

        for run in (data_received, with_trading):
            received[0] = 0
            run()
            assert received[0] == count and protocol.is_connected, (received[0], count)
        return {
            "ceiling": ceiling,
            "Deframer + FromString (goal 0.75)": deframer,
            "anchor: plain offset-walking deframer + FromString": plain,
            "anchor: reference client's framing + FromString": reference,
            "anchor: Int32StringReceiver + FromString": int32,
            "anchor: FromString + minimal dispatch, no checks": minimal_dispatch,
            "anchor: the same + the required-field check": checked_dispatch,
            "anchor: floor of a sound path, inline": floor,
            "dataReceived, logged in (goal 0.30, aim 0.45)": data_received,
            "dataReceived, with factory.books and .orders": with_trading,
        }

    for size in CHUNK_SIZES:
        best = best_times(chunked(size), RUNS)
        print(f"{size}-byte chunks, as a fraction of the ceiling:")
        for name, seconds in best.items():
            if name != "ceiling":
                print(f"  {name:<52} {best['ceiling'] / seconds:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
