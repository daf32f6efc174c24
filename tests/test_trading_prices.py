"""trading.prices: the tick ladder, odds conversions and money.

The reference client itself (smk-python-sdk 9.4.4, a test dependency) is the
oracle for every wire price 1..9999.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st
from smarkets.odds import Odds, is_a_tick, ticks_gt, ticks_lt  # the reference client
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.errors import InvalidPrice, InvalidQuantity, InvalidSide, SmarketsError
from smarkets_twisted.trading import prices
from smarkets_twisted.trading.prices import BUY, SELL, TICKS

EVERY_PRICE = range(1, 10000)
wire_prices = st.integers(min_value=1, max_value=9999)
quantities = st.integers(min_value=0, max_value=10**12)
sides = st.sampled_from([BUY, SELL])


def reference(price: int) -> Odds:
    return Odds(Decimal(price) / 100)


def wire(percent: Decimal) -> int:
    return int(percent * 100)


class ReferenceAnswersTests(SynchronousTestCase):
    """The same answers as ``smarkets.odds`` for every price."""

    def test_ladder(self) -> None:
        self.assertEqual(len(TICKS), 284)
        self.assertEqual([price for price in EVERY_PRICE if prices.is_tick(price)], list(TICKS))
        self.assertEqual(
            [price for price in EVERY_PRICE if is_a_tick(Decimal(price) / 100)], list(TICKS))

    def test_decimal_odds(self) -> None:
        for price in EVERY_PRICE:
            self.assertEqual(prices.decimal_odds(price), reference(price).decimal, price)

    def test_fractional_odds(self) -> None:
        for price in EVERY_PRICE:
            self.assertEqual(prices.fractional_odds(price), reference(price).fractional, price)

    def test_american_odds(self) -> None:
        for price in EVERY_PRICE:
            self.assertEqual(prices.american_odds(price), reference(price).american, price)

    def test_snap(self) -> None:
        for price in EVERY_PRICE:
            for side, name in ((BUY, "buy"), (SELL, "sell")):
                snapped = Odds.snap_to_decimal(name, Decimal(price) / 100)
                self.assertEqual(prices.snap(price, side), wire(snapped.percent), (price, name))

    def test_ticks_above_and_below(self) -> None:
        for price in (1, 2, 33, 34, 2499, 2500, 2501, 9750, 9998, 9999):
            self.assertEqual(prices.ticks_above(price), tuple(map(wire, ticks_gt(Decimal(price) / 100))))
            self.assertEqual(prices.ticks_below(price), tuple(map(wire, ticks_lt(Decimal(price) / 100))))

    def test_price_from_decimal(self) -> None:
        odds = [Decimal(text) for text in ("1.5", "2.01", "3.33", "4.05", "7.77", "999", "1.015")]
        odds += [prices.decimal_odds(price) for price in EVERY_PRICE]
        for value in odds:
            self.assertEqual(prices.price_from_decimal(value), wire(Odds.from_decimal(None, value).percent), value)

    def test_the_callers_decimal_context_does_not_matter(self) -> None:
        expected = reference(3).decimal
        with localcontext() as context:
            context.prec = 6
            self.assertEqual(prices.decimal_odds(3), expected)
            self.assertEqual(prices.american_odds(9998), -499900)


class WorkedExampleTests(SynchronousTestCase):
    def test_the_quickstart_order(self) -> None:
        """A buy of 400000 at 2500: 4.0 decimal, £10.00 stake for a £40.00 payoff."""
        self.assertEqual(prices.percent(2500), Decimal("25.00"))
        self.assertEqual(prices.decimal_odds(2500), Decimal("4.0"))
        self.assertEqual(prices.fractional_odds(2500), (3, 1))
        self.assertEqual(prices.american_odds(2500), 300)
        self.assertEqual(prices.stake(400000, 2500, BUY), Decimal("10.00"))
        self.assertEqual(prices.liability(400000, 2500, BUY), Decimal("10.00"))
        self.assertEqual(prices.money(400000), Decimal("40.00"))
        # The seller of that order wins the £10.00 stake or pays out £30.00.
        self.assertEqual(prices.stake(400000, 2500, SELL), Decimal("10.00"))
        self.assertEqual(prices.liability(400000, 2500, SELL), Decimal("30.00"))
        self.assertEqual(prices.quantity_for_stake(Decimal("10.00"), 2500, BUY), 400000)

    def test_the_reference_docstrings(self) -> None:
        self.assertEqual(prices.snap(30, BUY), 33)
        self.assertEqual(prices.snap(30, SELL), 20)
        self.assertEqual(prices.ticks_above(9750), (9804, 9901, 9999))
        self.assertEqual(prices.ticks_below(35), (34, 33, 20, 10, 1))
        self.assertEqual(prices.ticks_below(1), ())
        self.assertFalse(prices.is_tick(32))

    def test_off_the_ladder(self) -> None:
        self.assertEqual(prices.decimal_odds(512), Decimal("19.53125"))
        self.assertEqual(prices.american_odds(5000), -100)
        self.assertEqual(prices.american_odds(7500), -300)
        self.assertEqual(prices.price_from_decimal("4.1"), 2439)
        self.assertEqual(prices.price_from_decimal(4.1), 2439)
        self.assertEqual(prices.price_from_decimal(3), 3333)

    def test_snap_past_the_ends(self) -> None:
        self.assertIsNone(prices.snap(10000, BUY))
        self.assertIsNone(prices.snap(0, SELL))
        self.assertEqual(prices.snap(0, BUY), 1)
        self.assertEqual(prices.snap(10000, SELL), 9999)

    def test_a_price_that_is_not_a_whole_number_is_refused_by_the_ladder_walkers(self) -> None:
        """Past the ends is fine (a computed price may be), but 2.5 snapped silently to 10 and 'x' was a TypeError."""
        for bad in [2.5, 2500.0, "2500", None, True]:
            for walk, args in [(prices.snap, (bad, BUY)), (prices.ticks_above, (bad,)), (prices.ticks_below, (bad,))]:
                error = self.assertRaises(InvalidPrice, walk, *args)
                self.assertIn(repr(bad), str(error))

    def test_what_a_person_reads(self) -> None:
        self.assertEqual(prices.format_price(2500), "25.00% (4.0)")
        self.assertEqual(prices.format_price(2439), "24.39% (4.1)")
        self.assertEqual(prices.format_price(1), "0.01% (10000)")
        self.assertEqual(prices.format_price(9999), "99.99% (1.0001)")
        self.assertEqual(prices.format_price(512), "5.12% (19.53)")
        self.assertEqual(prices.format_money(prices.money(20000)), "£2.00")
        self.assertEqual(prices.format_money(Decimal("-0.125")), "-£0.12")


class BadInputTests(SynchronousTestCase):
    def test_prices_off_the_wire_range(self) -> None:
        for price in (0, 10000, -5, True, 25.0, "2500"):
            with self.assertRaises(InvalidPrice) as raised:
                prices.decimal_odds(price)  # type: ignore[arg-type]
            self.assertIn(repr(price), str(raised.exception))
            self.assertIsInstance(raised.exception, SmarketsError)

    def test_decimal_odds_that_name_no_price(self) -> None:
        for odds in ("1", "0.5", "-3", "abc", "NaN", "Infinity", "1.00001", "1e30", None):
            self.assertRaises(InvalidPrice, prices.price_from_decimal, odds)

    def test_sides_and_quantities(self) -> None:
        self.assertRaises(InvalidSide, prices.snap, 2500, 0)
        self.assertRaises(InvalidSide, prices.stake, 1, 2500, 3)
        self.assertRaises(InvalidQuantity, prices.stake, -1, 2500, BUY)
        self.assertRaises(InvalidQuantity, prices.liability, 1.5, 2500, SELL)
        self.assertRaises(InvalidQuantity, prices.quantity_for_stake, "-1", 2500, BUY)
        self.assertRaises(InvalidQuantity, prices.quantity_for_stake, "ten", 2500, BUY)

    def test_money_takes_whole_units_and_format_money_any_exact_amount(self) -> None:
        """Typed errors, not decimal.InvalidOperation or AttributeError; a negative net is a quantity too."""
        for units in ("x", "5", 2.5, None, True):
            self.assertRaises(InvalidQuantity, prices.money, units)
        self.assertEqual(prices.money(-20_000), Decimal("-2.0000"))
        self.assertEqual([prices.format_money(a) for a in (2, "2.5", 1.005, Decimal("-0.5"))],
                         ["£2.00", "£2.50", "£1.00", "-£0.50"])
        for amount in ("x", None, "NaN"):
            self.assertRaises(InvalidQuantity, prices.format_money, amount)


class PropertyTests(SynchronousTestCase):
    def test_odds_are_monotonic(self) -> None:
        decimals = [prices.decimal_odds(price) for price in EVERY_PRICE]
        self.assertTrue(all(a > b for a, b in pairwise(decimals)))
        americans = [prices.american_odds(price) for price in EVERY_PRICE]
        self.assertTrue(all(a >= b for a, b in pairwise(americans)))
        fractions = [Decimal(num) / den for num, den in map(prices.fractional_odds, EVERY_PRICE)]
        self.assertTrue(all(a >= b for a, b in pairwise(fractions)))

    @given(wire_prices)
    def test_decimal_round_trip(self, price: int) -> None:
        self.assertEqual(prices.price_from_decimal(prices.decimal_odds(price)), price)

    @given(st.integers(min_value=-100, max_value=10100), sides)
    def test_snap_goes_to_the_nearest_tick_no_better(self, price: int, side: int) -> None:
        snapped = prices.snap(price, side)
        if snapped is None:
            self.assertTrue(price > TICKS[-1] if side == BUY else price < TICKS[0])
            return
        self.assertTrue(prices.is_tick(snapped))
        if side == BUY:
            self.assertGreaterEqual(snapped, price)
            self.assertFalse(any(price <= tick < snapped for tick in TICKS))
        else:
            self.assertLessEqual(snapped, price)
            self.assertFalse(any(snapped < tick <= price for tick in TICKS))

    @given(st.integers(min_value=-100, max_value=10100))
    def test_ticks_above_and_below_partition_the_ladder(self, price: int) -> None:
        above, below = prices.ticks_above(price), prices.ticks_below(price)
        self.assertEqual(list(reversed(below)) + ([price] if prices.is_tick(price) else []) + list(above),
                         list(TICKS))
        self.assertTrue(all(tick > price for tick in above) and all(tick < price for tick in below))
        self.assertEqual(list(above), sorted(above))
        self.assertEqual(list(below), sorted(below, reverse=True))

    @given(quantities, wire_prices)
    def test_the_two_sides_share_the_payoff(self, quantity: int, price: int) -> None:
        self.assertEqual(prices.stake(quantity, price, BUY), prices.stake(quantity, price, SELL))
        self.assertEqual(prices.stake(quantity, price, BUY) + prices.liability(quantity, price, SELL),
                         prices.money(quantity))

    @given(st.decimals(min_value=0, max_value=10**9, places=4), wire_prices, sides)
    def test_quantity_for_stake_is_the_most_that_fits(self, amount: Decimal, price: int, side: int) -> None:
        quantity = prices.quantity_for_stake(amount, price, side)
        self.assertLessEqual(prices.stake(quantity, price, side), amount)
        self.assertGreater(prices.stake(quantity + 1, price, side), amount)
