"""The simulated exchange under floods, over loopback TCP, while an honest session pings.

Starts ``twistd -n smarkets-exchange`` on a free loopback port (no liquidity
bot), logs in an honest session (its own account) that pings every 20 ms in
a separate process, and runs, one after the other:

  - sessions: 600 new sessions on one account, each connection then dropped
    (what a client that starts a new session at every reconnect leaves
    behind), then 500 orders on that account;
  - account replays: an account with 10k events (5k orders, at the
    throttle's pace), then 100 new sessions that log in with
    ``account_sequence_64 = 0`` and drop;
  - pings: one session writes 200k pings as fast as it can.

For each: the exchange's RSS growth (VmRSS before and after) and the
honest session's ping round trip (median, p99, max) while it ran.  Goals
(issue 9): RSS growth under 20 MiB and ping p99 under 50 ms.

    python bench/exchange_flood.py [scale]   (scale 1.0 = the counts above)

Loopback only, bounded loops; the exchange process is stopped at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smarkets_twisted.framing import Deframer  # noqa: E402
from smarkets_twisted.payloads import Payload, application_message, handler_name, session_message  # noqa: E402
from smarkets_twisted.proto import eto_pb2, seto_pb2  # noqa: E402
from smarkets_twisted.session import Role, Session, SessionState  # noqa: E402

MARKET, CONTRACT = 200, 2001
PING_EVERY = 0.02


class Client:
    """One blocking loopback connection with a client Session."""

    def __init__(self, port: int, username: str, account_sequence: int | None = None) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.session = Session(SessionState(), Role.CLIENT, now=time.monotonic())
        self.deframer = Deframer(1 << 30)
        self.session.start_login(time.monotonic(), username=username, password="pw", account_sequence=account_sequence)
        self.flush()
        self.wait_for("eto.login_response")

    def flush(self) -> None:
        data = self.session.data_to_send()
        if data:
            self.socket.sendall(data)

    def read(self) -> list[Payload]:
        data = self.socket.recv(1 << 16)
        if not data:
            raise EOFError("the exchange closed the connection")
        now = time.monotonic()
        payloads = [p for frame in self.deframer.feed(data) for p in self.session.receive(frame, now)]
        self.flush()
        return payloads

    def wait_for(self, name: str) -> Payload:
        while True:
            for payload in self.read():
                if handler_name(payload) == name:
                    return payload

    def send(self, payload: Payload) -> None:
        self.session.send(payload, time.monotonic())
        self.flush()

    def close(self) -> None:
        self.socket.close()


def order(price: int = 2000) -> Payload:
    return application_message(
        "order_create", market_id=MARKET, contract_id=CONTRACT, side=seto_pb2.SIDE_BUY, quantity=1000, price=price
    )


def pinger(port: int, stop: Connection, results: Connection) -> None:
    """The honest session: ping every PING_EVERY s, record (when, round trip) until told to stop."""
    client = Client(port, "honest")
    samples = []
    while not stop.poll():
        start = time.monotonic()
        client.send(ping())
        client.wait_for("eto.pong")
        samples.append((start, time.monotonic() - start))
        time.sleep(max(0.0, PING_EVERY - (time.monotonic() - start)))
    results.send(samples)


def ping() -> Payload:
    return session_message(eto_pb2.PAYLOAD_PING)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def place_orders(port: int, username: str, count: int) -> None:
    """``count`` orders from one new session, each answered before the next, within the throttle (500/s)."""
    client = Client(port, username)
    for _ in range(count):
        client.send(order())
        client.wait_for("seto.order_accepted")
        time.sleep(1 / 450)
    client.close()


def sessions_flood(port: int, scale: float) -> None:
    for _ in range(int(600 * scale)):
        Client(port, "flood").close()
    place_orders(port, "flood", int(500 * scale))


def replay_flood(port: int, scale: float) -> None:
    place_orders(port, "history", int(5000 * scale))
    for _ in range(int(100 * scale)):
        Client(port, "history", account_sequence=0).close()


def ping_stream(count: int) -> bytes:
    """``count`` pings numbered from 2, as a freshly logged-in client sends them (made before the flood starts)."""
    state = SessionState()
    state.next_outgoing_seq = 2
    session = Session(state, Role.CLIENT, now=0.0)
    for _ in range(count):
        session.send(ping(), 0.0)
    return session.data_to_send()


def ping_flood(port: int, stream: bytes) -> None:
    client = Client(port, "pings")
    client.socket.sendall(stream)
    client.close()


def main() -> int:
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    with tempfile.TemporaryDirectory() as directory:
        accounts = Path(directory, "accounts.json")
        names = ("honest", "flood", "history", "pings")
        accounts.write_text(
            json.dumps({"accounts": [{"username": n, "password": "pw", "balance": "100000.00"} for n in names]})
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        twistd = str(Path(sys.executable).with_name("twistd"))
        command = [twistd, "-n", "--pidfile=", "-l", os.devnull, "smarkets-exchange", "--no-liquidity",
                   "--accounts", str(accounts), "--endpoint", f"tcp:{port}:interface=127.0.0.1"]
        # This tree's code, not an installed copy.
        environment = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        exchange = subprocess.Popen(command, cwd=directory, env=environment)
        try:
            return run(exchange, port, scale)
        finally:
            exchange.terminate()
            exchange.wait(10)


def run(exchange: subprocess.Popen[bytes], port: int, scale: float) -> int:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        print("the exchange did not start listening")
        return 1
    stop_parent, stop_child = multiprocessing.Pipe()
    results_parent, results_child = multiprocessing.Pipe()
    honest = multiprocessing.Process(target=pinger, args=(port, stop_child, results_child))
    honest.start()
    time.sleep(0.5)
    windows = []
    pings = ping_stream(int(200_000 * scale))
    floods: tuple[tuple[str, Callable[[], None]], ...] = (
        ("sessions", lambda: sessions_flood(port, scale)),
        ("account replays", lambda: replay_flood(port, scale)),
        ("pings", lambda: ping_flood(port, pings)),
    )
    for name, flood in floods:
        before = rss(exchange.pid)
        start = time.monotonic()
        try:
            flood()
        except (OSError, EOFError) as error:
            print(f"{name}: the flood's connection failed: {error}")
        time.sleep(2.0)  # what the exchange still had to process counts too
        windows.append((name, start, time.monotonic(), before, rss(exchange.pid)))
    stop_parent.send(True)
    samples = results_parent.recv()
    honest.join(10)
    for name, start, end, before, after in windows:
        rtts = sorted(rtt for when, rtt in samples if start <= when < end)
        if not rtts:
            print(f"{name:>16}: no pings answered")
            continue
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
        print(f"{name:>16}: RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB (+{(after - before) / 2**20:.1f});"
              f" honest ping median {statistics.median(rtts) * 1e3:.1f} ms,"
              f" p99 {p99 * 1e3:.1f} ms, max {rtts[-1] * 1e3:.1f} ms ({len(rtts)} pings, {end - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
