"""TokenBucket: the client's mirror of the exchange's throttle."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.throttle import TokenBucket


class TokenBucketTests(SynchronousTestCase):
    def test_unlimited_until_limits_are_set(self) -> None:
        bucket = TokenBucket()
        self.assertTrue(all(bucket.take(0.0) for _ in range(10_000)))
        self.assertEqual(bucket.delay(0.0), 0.0)

    def test_refills_per_tick_up_to_the_burst(self) -> None:
        bucket = TokenBucket()
        bucket.set_limits(10, 5, 100, now=0.0)
        self.assertEqual(sum(bucket.take(0.0) for _ in range(10)), 5)
        self.assertAlmostEqual(bucket.delay(0.05), 0.05)
        self.assertEqual(sum(bucket.take(0.1) for _ in range(10)), 1)
        self.assertEqual(sum(bucket.take(10.0) for _ in range(10)), 5)

    def test_headroom_credits_no_refill_the_exchange_may_lose(self) -> None:
        """Until what was sent has had time to arrive, the exchange's bucket may be full, a refill lost."""
        bucket = TokenBucket()
        bucket.set_limits(10, 5, 100, now=0.0, headroom_ticks=2)
        self.assertEqual(sum(bucket.take(0.0) for _ in range(10)), 5)
        self.assertFalse(bucket.take(0.1))
        self.assertFalse(bucket.take(0.2))
        self.assertAlmostEqual(bucket.delay(0.2), 0.1)
        self.assertTrue(bucket.take(0.3))
        self.assertTrue(bucket.take(0.4))  # one a tick again: the five are surely there
        self.assertEqual(sum(bucket.take(10.0) for _ in range(10)), 5)

    @given(
        rate=st.integers(min_value=1, max_value=50),
        burst=st.integers(min_value=1, max_value=6),
        tick_ms=st.sampled_from([100, 200]),
        steps=st.lists(st.tuples(st.floats(0, 1.5), st.floats(0, 1.99)), max_size=60),
    )
    def test_payloads_delivered_late_and_together_find_the_exchanges_tokens(
        self, rate: int, burst: int, tick_ms: int, steps: list[tuple[float, float]]
    ) -> None:
        """Delivered in order, each within two ticks of being sent, however bunched: never beyond the
        exchange's bucket.  (A cap of two ticks' refill below the burst, at least 1, let a burst of 1
        or 2 send one a tick, and fractional refills clipped at the exchange drift it below the client.)"""
        client, exchange = TokenBucket(), TokenBucket()
        client.set_limits(rate, burst, tick_ms, now=0.0, headroom_ticks=2)
        exchange.set_limits(rate, burst, tick_ms, now=0.0)
        tick = tick_ms / 1000
        now, arrivals = 0.0, [0.0]
        for gap, late in steps:
            now += gap * tick
            while client.take(now):
                arrivals.append(max(arrivals[-1], now + late * tick))
        for arrival in arrivals[1:]:
            self.assertTrue(exchange.take(arrival), (arrival, arrivals))

    def test_spending_goes_into_debt(self) -> None:
        bucket = TokenBucket()
        bucket.set_limits(10, 2, 100, now=0.0)
        bucket.spend(4, 0.0)
        self.assertFalse(bucket.take(0.1))
        self.assertFalse(bucket.take(0.2))
        self.assertTrue(bucket.take(0.3))

    @given(
        origin=st.floats(min_value=0, max_value=2e9, allow_nan=False),
        elapsed=st.floats(min_value=0, max_value=1e3, allow_nan=False),
        rate=st.integers(min_value=1, max_value=1000),
        burst=st.integers(min_value=1, max_value=2000),
        tick_ms=st.integers(min_value=1, max_value=1000),
        headroom=st.sampled_from([0, 2]),
    )
    def test_a_timer_set_by_delay_finds_a_token(
        self, origin: float, elapsed: float, rate: int, burst: int, tick_ms: int, headroom: int
    ) -> None:
        bucket = TokenBucket()
        bucket.set_limits(rate, burst, tick_ms, now=origin, headroom_ticks=headroom)
        now = origin + elapsed
        while bucket.take(now):
            pass
        # A timer following `delay` never spins at one instant and finds a token
        # at once, or (epoch-sized times near a tick boundary) one firing later.
        for _ in range(2):
            delay = bucket.delay(now)
            self.assertGreater(delay, 0.0)
            now += delay
            if bucket.take(now):
                break
        else:
            self.fail(f"no token after two timer firings at {now}")

    def test_two_buckets_set_at_one_instant_agree(self) -> None:
        client, exchange = TokenBucket(), TokenBucket()
        for bucket in (client, exchange):
            bucket.set_limits(10, 5, 200, now=4.3499999999999925)
        times = [4.3499999999999925 + step * 0.05 for step in range(200)]
        for at in times:
            self.assertEqual(client.take(at), exchange.take(at + 1e-12 if at == times[0] else at))
