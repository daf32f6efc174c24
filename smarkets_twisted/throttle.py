"""The exchange's token bucket, mirrored so that requests go out in time.

After ``throttle_limits_changed {average_rate_ps, burst_size, tick_ms}`` the
exchange refills ``average_rate_ps * tick_ms / 1000`` tokens every tick, up to
``burst_size``; each payload a client sends costs one (session payloads too:
heartbeats, pongs, replay requests, what a replay resends).  Sans-io: time is
passed in.
"""

from __future__ import annotations

import math

#: The shortest wait `TokenBucket.delay` gives when no token is there.
_MIN_DELAY = 1e-6

#: A whole token, give or take the rounding of adding fractional refills.
_ONE = 1.0 - 1e-9

#: A tick is credited this fraction of a tick early, so that the instant
#: `delay` names counts whatever the rounding of epoch-sized times.
_TICK_SLACK = 1e-4


class TokenBucket:
    """A tick-refilled token bucket; unlimited until limits are set."""

    def __init__(self) -> None:
        self.limited = False
        self.burst_size = 0
        self.tick = 0.0
        self.per_tick = 0.0
        self.tokens = 0.0
        #: Ticks are counted from here, not accumulated, so that two buckets set
        #: at the same instant (client and exchange) refill at the same instants.
        self._origin = 0.0
        self._ticks_credited = 0

    def set_limits(
        self, average_rate_ps: int, burst_size: int, tick_ms: int, now: float, headroom_ticks: int = 0
    ) -> None:
        """Apply new limits; the bucket starts full, as the exchange's does.

        ``headroom_ticks`` lowers the cap by that many ticks' refill: a client
        that sends right at the cap, with its payloads delivered late, would
        otherwise find the exchange's bucket clipped at the cap meanwhile.
        What goes out within that many ticks (at most the cap and their
        refills) then reaches the exchange within its burst, however late.
        A burst too small for that headroom keeps a cap of one token and
        refills more slowly instead, so that it still holds.
        """
        self.limited = True
        self.tick = max(tick_ms, 1) / 1000.0
        self.per_tick = average_rate_ps * self.tick
        self.burst_size = max(1, math.floor(burst_size - headroom_ticks * self.per_tick))
        if self.burst_size + headroom_ticks * self.per_tick >= burst_size + 1:
            self.per_tick = burst_size / (headroom_ticks + 1)
        self.tokens = float(self.burst_size)
        self._origin = now
        self._ticks_credited = 0

    def _refill(self, now: float) -> None:
        ticks = math.floor((now - self._origin) / self.tick + _TICK_SLACK)
        if ticks > self._ticks_credited:
            new = ticks - self._ticks_credited
            self.tokens = min(float(self.burst_size), self.tokens + new * self.per_tick)
            self._ticks_credited = ticks

    def take(self, now: float) -> bool:
        """Spend a token if one is available now."""
        if not self.limited:
            return True
        self._refill(now)
        if self.tokens >= _ONE:
            self.tokens -= 1.0
            return True
        return False

    def spend(self, count: int, now: float) -> None:
        """Count payloads sent, even into debt: a heartbeat or a resend goes out whatever the tokens."""
        if self.limited:
            self._refill(now)
            self.tokens -= count

    def delay(self, now: float) -> float:
        """Seconds until the next token arrives (0 when one is there)."""
        if not self.limited or self.tokens >= _ONE:
            return 0.0
        self._refill(now)
        if self.tokens >= _ONE:
            return 0.0
        if self.per_tick <= 0:
            return self.tick
        ticks_needed = max(1, math.ceil((_ONE - self.tokens) / self.per_tick))
        while self.tokens + ticks_needed * self.per_tick < _ONE:  # float rounding of the division
            ticks_needed += 1
        # Never 0 without a token: a timer trusting it would spin at one instant.
        return max(_MIN_DELAY, self._origin + (self._ticks_credited + ticks_needed) * self.tick - now)
