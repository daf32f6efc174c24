"""What ``--journal`` costs the reactor thread, and how fast its writer keeps up.

Figures, on a busy market's stream (bench/data_received.py's), each a ratio
to ``dataReceived`` without a journal measured in the same run (1.00 costs
nothing more; higher is slower):

  - with a journal whose writer is not running: the reactor thread's own
    share, a put on a bounded queue per payload;
  - with the writer thread running meanwhile: that share plus what the
    writer takes from the reactor thread through the GIL while it parses,
    redacts and renders JSON;

then the writer's rate (payloads written per second, to a temporary file)
against the rate ``dataReceived`` alone takes them in: above 1.00 it keeps
up with a client reading as fast as it can; below, the queue absorbs the
difference up to its size, then entries are dropped and counted.

    python bench/journal.py [payload count]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock  # noqa: E402

from bench.data_received import market_stream  # noqa: E402
from smarkets_twisted.framing import encode_frame  # noqa: E402
from smarkets_twisted.journal import Journal  # noqa: E402
from tests.scripted import logged_in  # noqa: E402

RUNS = 5
CHUNK = 65536


def main(count: int) -> None:
    exchange, factory, protocol = logged_in(Clock())
    first_seq = exchange.state.next_outgoing_seq
    stream = b"".join(encode_frame(body) for body in exchange.numbered(market_stream(count)))
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    directory = tempfile.mkdtemp()

    def feed() -> float:
        factory.state.next_incoming_seq = first_seq
        start = time.perf_counter()
        for chunk in chunks:
            protocol.dataReceived(chunk)
        return time.perf_counter() - start

    def with_journal(started: bool) -> tuple[float, float]:
        """Reactor time for the stream, and the time until the writer has written it all."""
        journal = Journal(f"{directory}/journal.jsonl", queue_size=count + 10)
        factory.journal = journal
        if started:
            journal.start()
        start = time.perf_counter()
        reactor_side = feed()
        journal.close()  # starts the writer if it was not, and waits for it
        factory.journal = None
        assert journal.dropped == 0
        return reactor_side, time.perf_counter() - start

    # Taken in turn, the best of RUNS each, so that noise from other processes hits all alike.
    bare = queued = concurrent = written = float("inf")
    for _ in range(RUNS):
        bare = min(bare, feed())
        queued = min(queued, with_journal(False)[0])
        reactor_side, until_written = with_journal(True)
        concurrent, written = min(concurrent, reactor_side), min(written, until_written)
    print(f"{count} payloads; dataReceived alone takes {count / bare / 1e3:.0f}k payloads/s")
    print(f"  dataReceived with a journal, writer idle (queue only)   {queued / bare:.2f}")
    print(f"  dataReceived with a journal, writer running meanwhile   {concurrent / bare:.2f}")
    print(f"  writer's rate / dataReceived's rate                     {bare / written:.2f}"
          f" ({count / written / 1e3:.0f}k payloads/s written)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
