"""Pings awaiting their pong, for the whole session.

A pong names no ping.  But the exchange answers each ping once, in the order
of their seqs, and the session delivers the exchange's payloads once, in seq
order, whatever path they took (live, resent on resume, replayed to fill a
gap).  So the n-th pong of a session answers its n-th ping, across any
number of reconnects, and a ping cancelled or timed out after it went out
keeps its place, so that its pong is not taken for the next one's.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime


class _Ping:
    """A ping awaiting its pong; ``deferred`` is None once nobody waits for it."""

    __slots__ = ("deferred", "sent_at")

    def __init__(self) -> None:
        self.sent_at = 0.0
        self.deferred: Deferred[float] | None = None


class Pings:
    """Pings in the order they were asked for; each goes out when the throttle allows, each pong settles the oldest.

    A ping waits for a throttle token like a request: one the exchange
    refused would get no pong, and every later pong would be taken for the
    ping before it.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._unsent: deque[_Ping] = deque()
        self._waiting: deque[_Ping] = deque()

    def to_send(self) -> bool:
        """Whether a ping waits to go out.

        One nobody waits for any more (cancelled, timed out) is dropped
        instead: never sent, it gets no pong, so it has no place to keep,
        and sending it would only spend a token.
        """
        unsent = self._unsent
        while unsent and unsent[0].deferred is None:
            unsent.popleft()
        return bool(unsent)

    def asked(self) -> Deferred[float]:
        """A ping is wanted: its Deferred fires with the round trip in seconds, from when it goes out to its pong."""
        ping = _Ping()
        ping.deferred = Deferred(lambda d: setattr(ping, "deferred", None))
        self._unsent.append(ping)
        return ping.deferred

    def went_out(self) -> None:
        """The oldest ping `to_send` goes out now (cancelled later, it keeps its place: its pong will come)."""
        ping = self._unsent.popleft()
        ping.sent_at = self.clock.seconds()
        self._waiting.append(ping)

    def answered(self) -> None:
        """A pong arrived: it answers the oldest ping."""
        if not self._waiting:
            return
        ping = self._waiting.popleft()
        if ping.deferred is not None:
            deferred, ping.deferred = ping.deferred, None
            deferred.callback(self.clock.seconds() - ping.sent_at)

    def fail(self, error: Exception) -> None:
        """The session ended: no pong can come for any ping of it."""
        waiting = [*self._waiting, *self._unsent]
        self._waiting, self._unsent = deque(), deque()
        for ping in waiting:
            if ping.deferred is not None:
                deferred, ping.deferred = ping.deferred, None
                deferred.errback(error)
