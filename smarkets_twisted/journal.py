"""The journal: every payload in both directions, one JSON line each.

A line is ``{"time", "dir": "in"|"out", "seq", "is_replay", "type",
"message"}`` where ``type`` is the handler name (``seto.order_accepted``) and
``message`` the whole payload as a dict (protobuf's JSON mapping, field names
as in the schema), with the password, cookie and session tokens redacted.
Connections are marked by ``{"time", "event": "connected"}`` and
``{"time", "event": "disconnected", "reason"}`` lines, and each process that
opens the journal (a restarted twistd appends to it) by an
``{"time", "event": "opened"}`` line: a replay starts a fresh client there.

Recording must never stall ``dataReceived``: the reactor thread only puts the
raw bytes and a time on a bounded queue; a writer thread parses, redacts,
renders and writes them, rotating the file by size.  When the queue is full
(the disk has been slower than the exchange for ``queue_size`` entries),
entries are dropped, never waited for, and counted: once there is room
again a ``{"event": "dropped", "count": N}`` line says how many entries the
journal lacks at that point (an entry is one payload received, what one
write sent (usually one payload), or a connection event).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time as wall_clock
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.logfile import LogFile

from smarkets_twisted.errors import SmarketsError
from smarkets_twisted.framing import Deframer
from smarkets_twisted.payloads import Payload, handler_name, without_secrets
from smarkets_twisted.trading.prices import format_money, money
from smarkets_twisted.wording import counted

#: Rotate the journal when it reaches this size, in bytes.
DEFAULT_ROTATE_BYTES = 64 * 1024 * 1024

#: Rotated files kept (PATH.1 the newest ... PATH.N the oldest).
DEFAULT_ROTATED_FILES = 10

#: Entries the reactor may queue ahead of the writer before it drops them.
DEFAULT_QUEUE_SIZE = 100_000

IN = "in"
OUT = "out"

_STOP = ("stop", 0.0, b"")


class JournalError(SmarketsError):
    """A journal cannot be opened or read; the message names the file."""


def payload_line(time: float, direction: str, payload: Payload) -> dict[str, Any]:
    """The journal entry of one payload, secrets redacted."""
    eto = payload.eto_payload
    try:
        name = handler_name(payload)
    except KeyError:
        name = "unknown"
    return {
        "time": time,
        "dir": direction,
        "seq": eto.seq,
        "is_replay": eto.is_replay,
        "type": name,
        "message": json_format.MessageToDict(without_secrets(payload), preserving_proto_field_name=True),
    }


def payload_of(entry: dict[str, Any]) -> Payload:
    """The payload a journal entry recorded (with its secrets still redacted)."""
    try:
        return json_format.ParseDict(entry["message"], Payload())
    except json_format.ParseError as e:
        reason = str(e).splitlines()[0]  # protobuf's goes on to list every field of Payload
        raise JournalError(f"a journal entry of {entry['type']} at {entry['time']} does not parse: {reason}") from None


class Journal:
    """Records payloads from the reactor thread; a writer thread writes them.

    `received` takes one inbound frame, `sent` the bytes of whole outbound
    frames (what one write carries), `event` a connection event.  `close`
    writes what is queued, flushes and closes the file.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        rotate_bytes: int = DEFAULT_ROTATE_BYTES,
        rotated_files: int = DEFAULT_ROTATED_FILES,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        directory, name = os.path.split(os.path.abspath(path))
        try:
            self._file = LogFile(name, directory, rotateLength=rotate_bytes, maxRotatedFiles=rotated_files)  # type: ignore[no-untyped-call]
        except OSError as e:
            raise JournalError(f"cannot open journal {path}: {e.strerror}") from None
        if _ends_cut(path):
            # A process killed mid-line: end that line, so that ours start on their own.
            self._file.write("\n")  # type: ignore[no-untyped-call]
        self.path = path
        self._chunk_size = min(rotate_bytes, 65536)
        self._queue: queue.Queue[tuple[str, float, bytes]] = queue.Queue(queue_size)
        #: Entries dropped because the queue was full and not yet reported in the file.
        self._dropped = 0
        #: Entries dropped in all, since the journal opened.
        self.dropped = 0
        # Started by `start`, not here: twistd forks after building its services.
        self._thread = threading.Thread(target=self._write_loop, name="smarkets-journal", daemon=True)
        self._closed = False

    def start(self, now: float | None = None) -> None:
        """Mark this process's start (at ``now``, the wall clock by default) and start the writer thread."""
        if self._thread.ident is None:
            self.event("opened", wall_clock.time() if now is None else now)
            self._thread.start()

    def _start_writer(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    # The reactor thread's side: never blocks.

    def received(self, frame: bytes, now: float) -> None:
        self._put((IN, now, frame))

    def sent(self, data: bytes, now: float) -> None:
        self._put((OUT, now, data))

    def event(self, name: str, now: float, reason: str = "") -> None:
        self._put((name, now, reason.encode()))

    def _put(self, entry: tuple[str, float, bytes]) -> None:
        if self._closed:
            return
        try:
            if self._dropped:
                self._queue.put_nowait(("dropped", entry[1], str(self._dropped).encode()))
                self._dropped = 0
            self._queue.put_nowait(entry)
        except queue.Full:
            if not self.dropped:
                self.log.warn("journal {path} cannot keep up: dropping entries (counted in the file)",
                              path=self.path)
            self._dropped += 1
            self.dropped += 1

    def close(self) -> None:
        """Write everything queued, then flush and close (blocks until done)."""
        if self._closed:
            return
        self._closed = True
        self._start_writer()
        if self._dropped:
            # The writer is draining; this line may wait for room, which is fine at close.
            self._queue.put(("dropped", 0.0, str(self._dropped).encode()))
        self._queue.put(_STOP)
        self._thread.join()

    # The writer thread's side.

    def _write_loop(self) -> None:
        while True:
            entries = [self._queue.get()]
            try:
                while len(entries) < 1000:
                    entries.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            chunk: list[str] = []
            size = 0
            stop = False
            try:
                for entry in entries:
                    if entry is _STOP:
                        stop = True
                        break
                    for line in _lines(entry):
                        text = json.dumps(line, separators=(",", ":")) + "\n"
                        chunk.append(text)
                        size += len(text)
                    if size >= self._chunk_size:
                        # Written in chunks, so that the file is rotated near its size.
                        self._file.write("".join(chunk))  # type: ignore[no-untyped-call]
                        chunk, size = [], 0
                if chunk:
                    self._file.write("".join(chunk))  # type: ignore[no-untyped-call]
                if stop:
                    self._file.close()  # type: ignore[no-untyped-call]
                    return
            except OSError as e:
                self.log.error("journal {path} write failed: {error}", path=self.path, error=e.strerror)


class JournalService(MultiService):
    """Closes the journal once every service inside it has stopped.

    The client services go inside, so that their last payloads (the logout)
    are in the journal before it is flushed and closed.
    """

    def __init__(self, journal: Journal) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.journal = journal

    def startService(self) -> None:
        self.journal.start()
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None]:
        stopped = maybeDeferred(super().stopService)
        stopped.addBoth(lambda _: deferToThread(self.journal.close))
        return stopped


def _lines(entry: tuple[str, float, bytes]) -> Iterator[dict[str, Any]]:
    kind, time, data = entry
    if kind == IN:
        frames = [data]
    elif kind == OUT:
        deframer = Deframer(len(data) + 1)
        frames = deframer.feed(data)
    elif kind == "dropped":
        yield {"time": time, "event": "dropped", "count": int(data)}
        return
    else:
        line: dict[str, Any] = {"time": time, "event": kind}
        if data:
            line["reason"] = data.decode()
        yield line
        return
    for frame in frames:
        try:
            payload = Payload.FromString(frame)
        except ProtobufDecodeError:
            yield {"time": time, "dir": kind, "error": f"undecodable payload of {len(frame)} bytes"}
            continue
        yield payload_line(time, kind, payload)


# Reading


def _ends_cut(path: str) -> bool:
    """Whether a file ends inside a line."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False


def journal_files(path: str) -> list[str]:
    """The files of a journal, oldest first: its rotated files, then PATH itself."""
    directory, name = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise JournalError(f"cannot read journal {path}: {e.strerror}") from None
    numbers = sorted((int(n[len(name) + 1 :]) for n in names
                      if n.startswith(name + ".") and n[len(name) + 1 :].isdigit()), reverse=True)
    files = [f"{path}.{n}" for n in numbers]
    if name in names:
        files.append(path)
    if not files:
        raise JournalError(f"no journal at {path}")
    return files


def read_journal(path: str) -> Iterator[dict[str, Any]]:
    """Every entry of a journal and its rotated files, oldest first.

    A line cut short (the process died while writing it: the file's last line,
    or the one before the next process's ``opened`` line) is reported as a
    ``{"event": "truncated"}`` entry instead of failing the whole read.
    """
    time = 0.0
    for file_name in journal_files(path):
        # A line that is not JSON, until what follows it tells whether it was cut short.
        cut: tuple[int, bool] | None = None
        with open(file_name, encoding="utf-8", errors="replace") as f:
            for number, text in enumerate(f, 1):
                if not text.strip():
                    continue
                try:
                    entry = json.loads(text)
                except ValueError:
                    entry = None
                if cut is not None and not (isinstance(entry, dict) and entry.get("event") == "opened"):
                    raise JournalError(f"{file_name} line {cut[0]} is not JSON")
                if cut is not None:
                    yield {"time": time, "event": "truncated", "file": file_name}
                    cut = None
                if entry is None:
                    cut = (number, text.endswith("\n"))
                    continue
                if not _is_entry(entry):
                    raise JournalError(f"{file_name} line {number} is not a journal entry")
                time = entry["time"]
                yield entry
        if cut is not None:
            if cut[1]:
                raise JournalError(f"{file_name} line {cut[0]} is not JSON")
            yield {"time": time, "event": "truncated", "file": file_name}


def is_login(entry: dict[str, Any]) -> bool:
    """Whether an entry is a login the client sent (one per connection)."""
    return entry.get("dir") == OUT and entry.get("type") == "seto.login"


def starts_session(entry: dict[str, Any]) -> bool:
    """Whether an entry is a login that starts a session: one that resumes a session names it (eto login)."""
    return is_login(entry) and "login" not in entry["message"].get("eto_payload", {})


#: What each event line carries besides its time.
_EVENT_FIELDS: dict[str, tuple[str, type]] = {"dropped": ("count", int), "truncated": ("file", str)}


def _is_entry(entry: Any) -> bool:
    """Whether a line has the fields its kind of entry has: summary and replay read them without looking."""
    if not isinstance(entry, dict) or not isinstance(entry.get("time"), (int, float)):
        return False
    event = entry.get("event")
    if event is not None:
        if not isinstance(event, str):
            return False
        field, kind = _EVENT_FIELDS.get(event, ("time", object))
        return isinstance(entry.get(field), kind)
    if entry.get("dir") not in (IN, OUT):
        return False
    return "error" in entry or (
        isinstance(entry.get("type"), str) and isinstance(entry.get("seq"), int)
        and isinstance(entry.get("is_replay"), bool) and isinstance(entry.get("message"), dict)
    )


# Summary


class _Seqs:
    """The seq range of one direction of one session, and the gaps in it."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.last = 0
        self.gaps = 0
        self.missing = 0

    def see(self, seq: int, is_replay: bool) -> None:
        if self.first is None:
            self.first = seq
        elif seq > self.last + 1 and not is_replay:
            self.gaps += 1
            self.missing += seq - self.last - 1
        self.last = max(self.last, seq)

    def __str__(self) -> str:
        return "none" if self.first is None else f"{self.first}-{self.last}"


def summarize(entries: Iterator[dict[str, Any]]) -> list[str]:
    """A few lines on a journal: sessions, seqs, gaps and replays, types, orders and fills."""
    count = 0
    first_time = last_time = None
    types: dict[str, dict[str, int]] = {IN: {}, OUT: {}}
    replayed = {IN: 0, OUT: 0}
    sessions: list[dict[str, _Seqs]] = []
    resumes = refused = connections = dropped = undecodable = truncated = runs = 0
    resuming = False  # a resume sent and not yet answered: a login response, or a logout refusing it
    fills: set[tuple[int, int]] = set()
    filled = 0
    for entry in entries:
        count += 1
        time = entry["time"]
        first_time = time if first_time is None else first_time
        last_time = time
        event = entry.get("event")
        if event == "connected":
            connections += 1
        elif event == "opened":
            runs += 1
        elif event == "dropped":
            dropped += entry["count"]
        elif event == "truncated":
            truncated += 1
        if event is not None:
            continue
        if "error" in entry:
            undecodable += 1
            continue
        direction, name = entry["dir"], entry["type"]
        types[direction][name] = types[direction].get(name, 0) + 1
        replayed[direction] += bool(entry["is_replay"])
        if is_login(entry):
            resuming = not starts_session(entry)
            if not resuming:
                sessions.append({IN: _Seqs(), OUT: _Seqs()})
        elif resuming and name in ("eto.login_response", "eto.logout"):
            resuming = False
            resumes += name == "eto.login_response"
            refused += name == "eto.logout"
        if not sessions:
            sessions.append({IN: _Seqs(), OUT: _Seqs()})
        sessions[-1][direction].see(entry["seq"], entry["is_replay"])
        fill = (len(sessions), entry["seq"])
        if name == "seto.order_executed" and direction == IN and fill not in fills:
            # Once each: a fill above a gap is recorded again when it is replayed.
            fills.add(fill)
            filled += int(entry["message"]["order_executed"].get("quantity", 0))
    if first_time is None or last_time is None:
        return ["empty journal"]
    received = types[IN]
    lines = [
        f"{counted(count, 'entry', 'entries')} over {last_time - first_time:.1f} s; "
        f"{counted(connections, 'connection')}, {counted(len(sessions), 'session')}, "
        f"{counted(resumes, 'resume')}"
        + (f" ({counted(refused, 'resume')} refused by the exchange)" if refused else "")
        + (f"; recorded by {runs} runs of the client" if runs > 1 else "")
        + (f"; {counted(dropped, 'entry', 'entries')} dropped by the recorder" if dropped else "")
        + (f"; {undecodable} undecodable" if undecodable else "")
        + (f"; {counted(truncated, 'line')} cut short" if truncated else ""),
    ]
    for number, seqs in enumerate(sessions, 1):
        lines.append(
            f"session {number}: in seqs {seqs[IN]} ({counted(seqs[IN].gaps, 'gap')}, {seqs[IN].missing} missing),"
            f" out seqs {seqs[OUT]}"
        )
    for direction in (IN, OUT):
        by_count = sorted(types[direction].items(), key=lambda t: (-t[1], t[0]))
        counts = ", ".join(f"{name} {n}" for name, n in by_count)
        total = sum(types[direction].values())
        lines.append(f"{direction}: {counted(total, 'payload')}, {replayed[direction]} replayed: {counts}")
    lines.append(
        f"orders: {types[OUT].get('seto.order_create', 0)} sent, {received.get('seto.order_accepted', 0)} accepted, "
        f"{received.get('seto.order_rejected', 0) + received.get('seto.order_invalid', 0)} refused, "
        f"{received.get('seto.order_cancelled', 0)} cancelled; "
        f"{counted(len(fills), 'fill')} for {format_money(money(filled))} in payoff"
    )
    return lines
