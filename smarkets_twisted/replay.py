"""Replaying a journal through the client stack, to reproduce a bug or a strategy.

The recorded inbound payloads go, at their recorded times, into a real
`SmarketsClientProtocol` of a fresh factory (session, handlers, books,
orders, the strategy's hooks): a connection is made at each ``connected``
line and lost at each ``disconnected`` line.  Each ``opened`` line after the
first is a restarted process: the replay drops its client there and builds
a fresh one (factory, strategy), which starts a new session as the
restarted process did.  What the replayed client sends goes nowhere.

The replayed client must do what the recorded one did at each login
(resume its session or start a new one) and take each login response:
where it cannot, the replay stops with a `ReplayError` rather than go on
with a client that ignores what it is fed.  Time is a `task.Clock` moved to each entry's time (as
fast as it can), or the reactor itself (`realtime`), so that the client's
timers fire as they did.

Answers match requests by the seq of the ``order_create`` or by a client
reference, so each request the replayed client sends takes the seq the
recording gave the same kind of request: with ``reissue`` (no strategy) the
recorded requests are made again through the factory's API, at their
place in the recording; with a strategy, the strategy makes them, and a
deterministic strategy makes the same ones.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.internet.task import Clock, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from smarkets_twisted.errors import SmarketsError
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.framing import encode_frame
from smarkets_twisted.journal import IN, OUT, is_login, payload_of, read_journal, starts_session
from smarkets_twisted.payloads import Payload, handler_name
from smarkets_twisted.protocol import SmarketsClientProtocol
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.status import market_position, market_prices
from smarkets_twisted.tradelog import describe, order_name
from smarkets_twisted.wording import counted

#: How far ahead in its session's recorded requests a replayed request looks for its own kind.
_LOOKAHEAD = 64


class ReplayError(SmarketsError):
    """The replayed client cannot follow the recording; the message says where and why."""


def _is_request(name: str) -> bool:
    return name.startswith("seto.") and name != "seto.login"


def recorded_username(path: str) -> str | None:
    """The username of the journal's first login (not a secret: the password is redacted)."""
    for entry in read_journal(path):
        if is_login(entry):
            username = entry["message"].get("login", {}).get("username")
            return str(username) if username is not None else None
    return None


def _optional(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


#: Recorded request type → how to make it again through the factory.
_REISSUE: dict[str, Callable[[SmarketsClientFactory, Any], Deferred[Any] | None]] = {
    "seto.order_create": lambda f, m: f.order(
        m.market_id, m.contract_id, m.side, m.quantity, m.price, tif=m.tif, reference=_optional(m, "reference"),
        label=_optional(m, "label"), maq=_optional(m, "maq")),
    "seto.order_cancel": lambda f, m: f.cancel(m.order_id, reference=_optional(m, "reference")),
    "seto.order_cancel_all": lambda f, m: f.cancel_all(_optional(m, "market_id")),
    "seto.order_quantity_reduce": lambda f, m: f.reduce(m.order_id, m.new_quantity,
                                                        reference=_optional(m, "reference")),
    "seto.order_cancel_replace": lambda f, m: f.replace(m.orig_order_id, m.price, m.quantity,
                                                        reference=_optional(m, "reference"),
                                                        label=_optional(m, "label")),
    "seto.market_subscribe": lambda f, m: f.subscribe(m.market_id),
    "seto.market_unsubscribe": lambda f, m: f.unsubscribe(m.market_id),
    "seto.settings": lambda f, m: f.settings(m.cancel_all_on_failure),
}


class Replay:
    """Feeds one journal through clients that ``client`` builds (one a recorded run); see the module docstring.

    ``factory`` is the client of the run being replayed: the last one, once done.
    """

    log = Logger()

    def __init__(self, path: str, client: Callable[[], SmarketsClientFactory], reissue: bool = True) -> None:
        self.path = path
        self.reissue = reissue
        self._client = client
        #: Entries fed so far, and entries the recorder had to drop (the replay may differ there).
        self.entries = 0
        self.dropped = 0
        #: Requests the replayed client sent that the recording lacks.
        self.unmatched = 0
        #: Runs of the client replayed so far (a restarted process is a new run).
        self.runs = 1
        self._read_plan()
        self._session = -1
        #: Recorded seqs of this session's requests the replayed client has sent already, by itself.
        self._taken: set[int] = set()
        self._protocol: SmarketsClientProtocol | None = None
        self.factory = self._new_client()

    def _read_plan(self) -> None:
        """What the replay must know ahead of the entries, per session and per connection.

        Per session, the kind and seq of each request the recording sent, in
        order, and its first client reference: a replayed run's factory draws
        its references from its first session's, so that a strategy making
        the same requests in the same order tags them as they were (answers
        and account events name them).  Per connection, whether its login
        started a session (None: no login recorded).
        """
        self._plan: list[deque[tuple[str, int]]] = []
        self._references: list[int | None] = []
        self._logins: deque[bool | None] = deque()
        #: Whether the recorder marked each run's start (journals before it did not).
        self._runs_marked = False
        for entry in read_journal(self.path):
            event = entry.get("event")
            if event == "opened":
                self._runs_marked = True
            elif event == "connected":
                self._logins.append(None)
            elif is_login(entry):
                if self._logins and self._logins[-1] is None:
                    self._logins[-1] = starts_session(entry)
                if starts_session(entry):
                    self._plan.append(deque())
                    self._references.append(None)
            elif entry.get("dir") == OUT and self._plan and _is_request(entry["type"]):
                self._plan[-1].append((entry["type"], entry["seq"]))
                if self._references[-1] is None:
                    reference = entry["message"].get(entry["type"][len("seto."):], {}).get("reference")
                    self._references[-1] = None if reference is None else int(reference)

    def _new_client(self) -> SmarketsClientFactory:
        """The client of a new run, whose first session is the recording's next one."""
        factory = self._client()
        factory.protocol = _ReplayedProtocol
        reference = next((r for r in self._references[self._session + 1:] if r is not None), None)
        if reference is not None:
            factory.references_from(reference)
        return factory

    def align(self, payload: Payload) -> None:
        """Give the request the seq the recording gave the same kind of request."""
        name = handler_name(payload)
        recorded = self._plan[self._session] if 0 <= self._session < len(self._plan) else deque()
        for index, (kind, seq) in enumerate(recorded):
            if index >= _LOOKAHEAD:
                break
            if kind == name:
                del recorded[index]
                if self.reissue:
                    self._taken.add(seq)
                self.factory.state.next_outgoing_seq = seq
                return
        self.unmatched += 1
        self.log.warn("the replayed client sent {name}, which the recording lacks here: replies may not match",
                      name=name)

    def feed(self, entry: dict[str, Any]) -> None:
        """Play one journal entry (its time has come); raise `ReplayError` where the client cannot follow it."""
        self.entries += 1
        event = entry.get("event")
        if event == "opened":
            if self.entries > 1:
                self._restart(entry)
        elif event == "connected":
            self._connect(entry)
        elif event == "disconnected":
            self._disconnect(entry.get("reason", "recorded disconnection"))
        elif event == "dropped":
            self.dropped += entry["count"]
            self.log.warn("the recorder dropped {count} entries here: the replay may differ from now on",
                          count=entry["count"])
        elif event == "truncated":
            self.log.warn("{file} ends with a line cut short: the replay lacks that entry", file=entry["file"])
        elif entry.get("dir") == IN and "message" in entry:
            if self._protocol is None:
                self._connect(entry, recorded=False)
            assert self._protocol is not None
            expected = self.factory.state.next_incoming_seq
            if entry["type"] == "eto.login_response" and entry["seq"] < expected:
                raise ReplayError(f"at {entry['time']}: the replayed client would ignore the recorded login"
                                  f" response (seq {entry['seq']}, below its {expected}): the replay cannot follow")
            self._protocol.dataReceived(encode_frame(payload_of(entry).SerializeToString()))
        elif entry.get("dir") == OUT and "message" in entry:
            if starts_session(entry):
                self._session += 1
                self._taken.clear()
            elif entry["seq"] in self._taken:
                # Sent already: a request the factory makes by itself (a subscription or
                # setting renewed on a new session), which the recording has too.
                self._taken.discard(entry["seq"])
            elif self.reissue and entry["type"] in _REISSUE:
                message = getattr(payload_of(entry), entry["type"][len("seto."):])
                made = _REISSUE[entry["type"]](self.factory, message)
                if made is not None:
                    made.addErrback(lambda failure: None)  # the recording's answers settle them, or not

    def _restart(self, entry: dict[str, Any]) -> None:
        """The recorded process ended (it may have been killed) and a new one began: so do ours."""
        self._disconnect("the recorded process ended")
        self.factory.stop()
        self.runs += 1
        self.factory = self._new_client()
        self.log.info("replaying run {run} of the client, from {time}", run=self.runs, time=entry["time"])

    def _connect(self, entry: dict[str, Any], recorded: bool = True) -> None:
        """A connection, whose login must do what the recorded one did: resume the session or start one."""
        starts = self._logins.popleft() if recorded and self._logins else None
        holds = self.factory.state.session_id is not None
        if starts is False and not holds:
            raise ReplayError(f"at {entry['time']}: the recording resumes a session the replayed client does not"
                              " hold: the replay cannot follow")
        if starts and holds:
            if self._runs_marked:
                raise ReplayError(f"at {entry['time']}: the recording starts a new session where the replayed"
                                  " client still holds one: the replay cannot follow")
            # The live client never does that within a run: the journal (older than
            # the marks at each run's start) was written on by a restarted process.
            self.log.warn("a new session with no end to the last one: replayed as a restart of the client")
            self._restart(entry)
        if self._protocol is not None:
            self._disconnect("a new connection was recorded")
        protocol = self.factory.buildProtocol(None)
        assert isinstance(protocol, _ReplayedProtocol)
        protocol.replay = self
        self._protocol = protocol
        protocol.makeConnection(_Nowhere())  # type: ignore[no-untyped-call]

    def _disconnect(self, reason: str) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.connectionLost(Failure(ConnectionLost(reason)))

    def run(self, clock: Clock) -> None:
        """Replay every entry as fast as it can, moving ``clock`` (the factory's) to each entry's time."""
        for delay, entry in self._paced(clock):
            if delay > 0:
                clock.advance(delay)
            self.feed(entry)

    @inlineCallbacks
    def run_realtime(self, reactor: IReactorTime) -> Any:
        """Replay every entry at its recorded pace on ``reactor`` (the factory's clock)."""
        for delay, entry in self._paced(reactor):
            if delay > 0:
                yield deferLater(reactor, delay)
            self.feed(entry)

    def _paced(self, clock: IReactorTime) -> Iterator[tuple[float, dict[str, Any]]]:
        """Each entry, with how long until its time: as far from the start as it was from the first."""
        start = clock.seconds()
        first = None
        for entry in read_journal(self.path):
            first = entry["time"] if first is None else first
            yield (entry["time"] - first) - (clock.seconds() - start), entry


_ADDRESS = IPv4Address("TCP", "127.0.0.1", 0)


@implementer(ITransport)
class _Nowhere:
    """Where the replayed client writes: nowhere (the recording has the exchange's side)."""

    disconnecting = False

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Any) -> None:
        pass

    def loseConnection(self) -> None:
        self.disconnecting = True

    abortConnection = loseConnection

    def getPeer(self) -> IPv4Address:
        return _ADDRESS

    def getHost(self) -> IPv4Address:
        return _ADDRESS


class _ReplayedProtocol(SmarketsClientProtocol):
    """Sends each request at the seq the recording gave it."""

    replay: Replay

    def send_payload(self, payload: Payload) -> int:
        self.replay.align(payload)
        return super().send_payload(payload)


def replay_factory(path: str, clock: IReactorTime) -> SmarketsClientFactory:
    """A client factory as the recording's: its username, on ``clock``."""
    username = recorded_username(path) or "replay"
    return SmarketsClientFactory(ClientSettings(username=username, password="<not needed to replay>"), clock)


def report(replay: Replay) -> list[str]:
    """What the replay ended with: the books, positions and orders."""
    factory = replay.factory
    lines = [
        f"replayed {counted(replay.entries, 'journal entry', 'journal entries')}"
        + (f" of {replay.runs} runs of the client (the last one's state below)" if replay.runs > 1 else "")
        + (f"; the recorder had dropped {counted(replay.dropped, 'entry', 'entries')}" if replay.dropped else "")
        + (f"; {counted(replay.unmatched, 'request')} the recording lacks" if replay.unmatched else "")
    ]
    lines.extend(market_prices(factory, market_id, stale_too=True) + market_position(factory, market_id)
                 for market_id in sorted(set(factory.books.markets) | set(factory.positions.markets)))
    states = Counter(order.state.value for order in factory.orders)
    by_state = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    lines.append(counted(sum(states.values()), "order") + (f": {by_state}" if by_state else ""))
    lines.extend(f"open: {order_name(order)} {describe(order)}" for order in factory.orders.open())
    return lines
