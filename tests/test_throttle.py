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

    def test_headroom_lowers_the_cap(self) -> None:
        bucket = TokenBucket()
        bucket.set_limits(500, 1000, 200, now=0.0, headroom_ticks=2)
        self.assertEqual(bucket.burst_size, 800)
        bucket.set_limits(10, 1, 100, now=0.0, headroom_ticks=2)
        self.assertEqual(bucket.burst_size, 1)

    def test_what_goes_out_within_the_headroom_fits_the_exchanges_burst(self) -> None:
        """Payloads sent within two ticks may reach the exchange together, its bucket clipped at the burst meanwhile.

        A burst smaller than the headroom (1 or 2 tokens at one a tick) let one out every tick: three
        within two ticks, arriving together, were two beyond the exchange's burst.
        """
        for rate, burst, tick_ms in [(10, 1, 100), (10, 2, 100), (20, 3, 100), (10, 5, 100), (500, 1000, 200)]:
            bucket = TokenBucket()
            bucket.set_limits(rate, burst, tick_ms, now=0.0, headroom_ticks=2)
            tick = tick_ms / 1000
            sent = []
            for k in range(100):
                while bucket.take(k * tick):
                    sent.append(k)
            self.assertGreater(len(sent), 100 * rate * tick / 4, (rate, burst))  # slower, not stopped
            for first in range(100):
                together = sum(1 for k in sent if first <= k <= first + 2)
                self.assertLessEqual(together, burst, (rate, burst, tick_ms, first))

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
    )
    def test_a_timer_set_by_delay_finds_a_token(
        self, origin: float, elapsed: float, rate: int, burst: int, tick_ms: int
    ) -> None:
        bucket = TokenBucket()
        bucket.set_limits(rate, burst, tick_ms, now=origin)
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
