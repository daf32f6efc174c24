"""The exchange's token bucket, mirrored so that requests go out in time.

After ``throttle_limits_changed {average_rate_ps, burst_size, tick_ms}`` the
exchange refills ``average_rate_ps * tick_ms / 1000`` tokens every tick, up to
``burst_size``; each payload a client sends costs one (session payloads too:
heartbeats, pongs, replay requests, what a replay resends).  Sans-io: time is
passed in.
"""

from __future__ import annotations

import math
from collections import deque

#: The shortest wait `TokenBucket.delay` gives when no token is there.
_MIN_DELAY = 1e-6

#: A whole token, give or take the rounding of adding fractional refills.
_ONE = 1.0 - 1e-9

#: A tick is credited this fraction of a tick early, so that the instant
#: `delay` names counts whatever the rounding of epoch-sized times.
_TICK_SLACK = 1e-4


class TokenBucket:
    """A tick-refilled token bucket; unlimited until limits are set.

    With ``headroom_ticks``, the client's mirror: what it sent may still be
    on the way for that many ticks, while the exchange's bucket, holding the
    tokens those payloads will spend, is clipped at the burst.  So a tick's
    refill is credited only up to the burst less what was sent in the ticks
    before it: however late its payloads arrive, and however many together,
    the exchange has a token for each.
    """

    def __init__(self) -> None:
        self.limited = False
        self.burst_size = 0
        self.tick = 0.0
        self.per_tick = 0.0
        self.tokens = 0.0
        self.headroom_ticks = 0
        #: Ticks are counted from here, not accumulated, so that two buckets set
        #: at the same instant (client and exchange) refill at the same instants.
        self._origin = 0.0
        self._ticks_credited = 0
        #: (tick, payloads sent in it) for the ticks whose payloads may be on the way.
        self._recent: deque[list[int]] = deque()

    def set_limits(
        self, average_rate_ps: int, burst_size: int, tick_ms: int, now: float, headroom_ticks: int = 0
    ) -> None:
        """Apply new limits; the bucket starts full, as the exchange's does."""
        self.limited = True
        self.tick = max(tick_ms, 1) / 1000.0
        self.per_tick = average_rate_ps * self.tick
        self.burst_size = burst_size
        self.tokens = float(burst_size)
        self.headroom_ticks = headroom_ticks
        self._origin = now
        self._ticks_credited = 0
        self._recent.clear()

    def _in_flight(self, tick: int) -> int:
        """Payloads that may still be on the way at ``tick``: those sent in the ticks before it."""
        return sum(count for sent_at, count in self._recent if sent_at >= tick - self.headroom_ticks)

    def _tokens_at(self, ticks: int) -> float:
        """The tokens once every tick up to ``ticks`` is credited, nothing more sent."""
        tokens, tick = self.tokens, self._ticks_credited
        while tick < ticks:
            in_flight = self._in_flight(tick + 1)
            if not in_flight:  # from here on, plain refills up to the burst
                return min(float(self.burst_size), tokens + (ticks - tick) * self.per_tick)
            tick += 1
            tokens = min(float(self.burst_size - in_flight), tokens + self.per_tick)
        return tokens

    def _refill(self, now: float) -> None:
        ticks = math.floor((now - self._origin) / self.tick + _TICK_SLACK)
        if ticks > self._ticks_credited:
            self.tokens = self._tokens_at(ticks)
            self._ticks_credited = ticks
            while self._recent and self._recent[0][0] < ticks + 1 - self.headroom_ticks:
                self._recent.popleft()

    def _sent(self, count: int) -> None:
        self.tokens -= count
        if self.headroom_ticks:
            if self._recent and self._recent[-1][0] == self._ticks_credited:
                self._recent[-1][1] += count
            else:
                self._recent.append([self._ticks_credited, count])

    def take(self, now: float) -> bool:
        """Spend a token if one is available now."""
        if not self.limited:
            return True
        self._refill(now)
        if self.tokens >= _ONE:
            self._sent(1)
            return True
        return False

    def spend(self, count: int, now: float) -> None:
        """Count payloads sent, even into debt: a heartbeat or a resend goes out whatever the tokens."""
        if self.limited:
            self._refill(now)
            self._sent(count)

    def delay(self, now: float) -> float:
        """Seconds until the next token arrives (0 when one is there)."""
        if not self.limited or self.tokens >= _ONE:
            return 0.0
        self._refill(now)
        if self.tokens >= _ONE:
            return 0.0
        if self.per_tick <= 0:
            return self.tick
        # Tick by tick while payloads may be on the way (a few ticks), then at the plain rate.
        tick = self._ticks_credited
        while True:
            tick += 1
            if self._tokens_at(tick) >= _ONE:
                break
            if not self._in_flight(tick + 1):
                tokens = self._tokens_at(tick)
                after = max(1, math.ceil((_ONE - tokens) / self.per_tick))
                while tokens + after * self.per_tick < _ONE:  # float rounding of the division
                    after += 1
                tick += after
                break
        # Never 0 without a token: a timer trusting it would spin at one instant.
        return max(_MIN_DELAY, self._origin + tick * self.tick - now)
