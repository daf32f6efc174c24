"""Prices, odds and money: what a wire price and quantity mean to a trader.

A wire price is percent x 100 (2500 = 25.00% = decimal odds 4.0); a wire
quantity is a payoff in 1/10 000 of the currency (400000 = £40.00).  The
exchange trades on 284 ticks, the decimal-odds ladder of the reference
client (smk-python-sdk 9.4, ``smarkets.odds``), shipped here as
``odds-decimal-ticks.tsv``; its fractional table is ``odds-fractional.tsv``.
The simulated exchange validates prices with this module too, so the project
has one ladder.

Every conversion gives the reference client's answer for every price
1..9999: its arithmetic is Python's default decimal context (28 digits,
half-even), so this module computes in that context explicitly, whatever
context the caller has set.

Money is exact and in one unit throughout: ``Decimal`` currency units
(pounds), never binary floats.  Inputs are wire values (``int`` price and
quantity); ``money`` turns the wire's 1/10 000 into pounds.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from importlib.resources import files

from smarkets_twisted.errors import InvalidPrice, InvalidQuantity, InvalidSide
from smarkets_twisted.proto import seto_pb2

BUY = seto_pb2.SIDE_BUY
SELL = seto_pb2.SIDE_SELL

#: Each side as a log line names it.
SIDE_NAMES: dict[int, str] = {BUY: "buy", SELL: "sell"}

#: A price of 100%: wire prices and quantities are both in 1/10 000.
PRICE_SCALE = 10000

#: The reference client's arithmetic: the default decimal context.
_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN)
_HUNDRED = Decimal(100)
_PENNY = Decimal("0.01")
_TRAILING_ZEROS = re.compile(r"(\.[0-9])0+$")

Exact = Decimal | int | str | float


def _rows(name: str) -> list[list[str]]:
    text = files(__package__).joinpath(name).read_text(encoding="ascii")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return rows[1:]  # the first row names the columns


def _wire(percent: str) -> int:
    """'25.00' -> 2500."""
    return int(Decimal(percent).scaleb(2))


_DECIMAL_BY_PRICE = {_wire(percent): Decimal(odds) for odds, percent in _rows("odds-decimal-ticks.tsv")}
_PRICE_BY_DECIMAL = {odds: price for price, odds in _DECIMAL_BY_PRICE.items()}

#: The valid wire prices, ascending.
TICKS: tuple[int, ...] = tuple(sorted(_DECIMAL_BY_PRICE))
MIN_PRICE, MAX_PRICE = TICKS[0], TICKS[-1]


def _fractional_ladder() -> tuple[list[int], list[tuple[int, int]]]:
    """Each table row covers two prices: num/den at its high percent, den/num at its low."""
    entries = []
    for numerator, denominator, high, low in _rows("odds-fractional.tsv"):
        num, den = int(numerator), int(denominator)
        entries.append((_wire(high), (num, den)))
        entries.append((_wire(low), (den, num)))
    entries.sort(key=lambda entry: entry[0])
    return [price for price, _ in entries], [fraction for _, fraction in entries]


_FRACTION_PRICES, _FRACTIONS = _fractional_ladder()


def _check_price(price: int) -> int:
    if isinstance(price, bool) or not isinstance(price, int) or not MIN_PRICE <= price <= MAX_PRICE:
        raise InvalidPrice(f"price {price!r} is not a wire price in {MIN_PRICE}..{MAX_PRICE}")
    return price


def _check_whole(price: int) -> int:
    """A price to place on the ladder: any whole number (past either end is allowed)."""
    if isinstance(price, bool) or not isinstance(price, int):
        raise InvalidPrice(f"price {price!r} is not a whole number")
    return price


def _check_side(side: int) -> int:
    if side not in (BUY, SELL):
        raise InvalidSide(f"side {side!r} is neither SIDE_BUY ({BUY}) nor SIDE_SELL ({SELL})")
    return side


def _check_quantity(quantity: int) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise InvalidQuantity(f"quantity {quantity!r} is not a whole number of 1/10000 units, 0 or more")
    return quantity


def _exact(value: Exact, what: str, error: type[ValueError]) -> Decimal:
    """A finite Decimal; a float is read as the digits it prints as (4.1 -> Decimal('4.1'))."""
    try:
        number = Decimal(repr(value) if isinstance(value, float) else value)
    except (InvalidOperation, TypeError, ValueError):
        raise error(f"{what} {value!r} is not a number") from None
    if not number.is_finite():
        raise error(f"{what} {value!r} is not a finite number")
    return number


def is_tick(price: int) -> bool:
    """Whether the exchange accepts this wire price."""
    return price in _DECIMAL_BY_PRICE


def ticks_above(price: int) -> tuple[int, ...]:
    """The ticks strictly above ``price``, nearest first."""
    return TICKS[bisect_right(TICKS, _check_whole(price)):]


def ticks_below(price: int) -> tuple[int, ...]:
    """The ticks strictly below ``price``, nearest first."""
    return TICKS[: bisect_left(TICKS, _check_whole(price))][::-1]


def snap(price: int, side: int) -> int | None:
    """The nearest tick equal to ``price`` or worse for ``side``; None past the end.

    Worse is higher for a buy (it pays more) and lower for a sell.
    """
    _check_whole(price)
    if _check_side(side) == BUY:
        index = bisect_left(TICKS, price)
        return TICKS[index] if index < len(TICKS) else None
    index = bisect_right(TICKS, price)
    return TICKS[index - 1] if index else None


def percent(price: int) -> Decimal:
    """2500 -> Decimal('25.00')."""
    return Decimal(_check_price(price)).scaleb(-2)


def decimal_odds(price: int) -> Decimal:
    """The decimal odds: the ladder's own figure on a tick, else 100 / percent."""
    odds = _DECIMAL_BY_PRICE.get(_check_price(price))
    return odds if odds is not None else _CONTEXT.divide(_HUNDRED, percent(price))


def fractional_odds(price: int) -> tuple[int, int]:
    """(numerator, denominator) of the first table entry at or above the price."""
    index = bisect_left(_FRACTION_PRICES, _check_price(price))
    return _FRACTIONS[min(index, len(_FRACTIONS) - 1)]


def american_odds(price: int) -> int:
    """Moneyline odds: +300 for 25.00%, -300 for 75.00%, -100 at evens."""
    pct = percent(price)
    if price < PRICE_SCALE // 2:
        odds = _CONTEXT.subtract(_CONTEXT.divide(Decimal(10000), pct), _HUNDRED)
    else:
        odds = _CONTEXT.divide(Decimal(-100), _CONTEXT.subtract(_CONTEXT.divide(_HUNDRED, pct), Decimal(1)))
    return int(odds.quantize(Decimal(1), context=_CONTEXT))


def price_from_decimal(odds: Exact) -> int:
    """The wire price of decimal odds: the ladder's on a tick, else 100 / odds to 0.01%.

    The answer need not be a tick: ``snap`` it to trade.
    """
    number = _exact(odds, "decimal odds", InvalidPrice)
    price = _PRICE_BY_DECIMAL.get(number)
    if price is not None:
        return price
    if number <= 1:
        raise InvalidPrice(f"decimal odds {odds!r} are not above 1")
    price = int(_CONTEXT.divide(_HUNDRED, number).quantize(_PENNY, context=_CONTEXT).scaleb(2))
    if not MIN_PRICE <= price <= MAX_PRICE:
        raise InvalidPrice(f"decimal odds {odds!r} are outside the exchange's prices")
    return price


def money(units: int) -> Decimal:
    """Wire 1/10 000 of the currency -> exact currency units: 100000 -> Decimal('10.0000') (a net may be negative)."""
    if isinstance(units, bool) or not isinstance(units, int):
        raise InvalidQuantity(f"quantity {units!r} is not a whole number of 1/10000 units")
    return Decimal(units).scaleb(-4)


def money_from_double(amount: float) -> Decimal:
    """A balance or exposure as the wire sends it (a double, in pounds) to the exact 1/10 000 it stands for."""
    return Decimal(repr(amount)).quantize(Decimal("0.0001"), context=_CONTEXT)


def stake(quantity: int, price: int, side: int) -> Decimal:
    """The buyer's stake, quantity x price, for either side.

    What a buy pays, and what a sell wins if the contract loses.  A buy of
    400000 (£40.00 payoff) at 2500 (25.00%) stakes Decimal('10.00').
    """
    _check_side(side)
    return Decimal(_check_quantity(quantity) * _check_price(price)).scaleb(-8)


def liability(quantity: int, price: int, side: int) -> Decimal:
    """What ``side`` can lose: the stake for a buy, quantity x (1 - price) for a sell."""
    if _check_side(side) == BUY:
        return stake(quantity, price, side)
    return Decimal(_check_quantity(quantity) * (PRICE_SCALE - _check_price(price))).scaleb(-8)


def quantity_for_stake(amount: Exact, price: int, side: int) -> int:
    """The largest quantity whose ``stake`` at ``price`` is at most ``amount`` pounds."""
    _check_side(side)
    pounds = _exact(amount, "stake", InvalidQuantity)
    if pounds < 0:
        raise InvalidQuantity(f"stake {amount!r} is negative")
    numerator, denominator = pounds.as_integer_ratio()
    return numerator * 10**8 // (denominator * _check_price(price))


def format_price(price: int) -> str:
    """What a person reads: '25.00% (4.0)'.

    Decimal odds as the reference client prints them (``decimal_str``), and
    off the ladder to two places rather than 28 digits.
    """
    odds = decimal_odds(price)
    shown = odds if is_tick(price) else odds.quantize(_PENNY, context=_CONTEXT)
    text = _TRAILING_ZEROS.sub(r"\1", str(shown))
    return f"{percent(price)}% ({text})"


def format_money(amount: Exact) -> str:
    """Pounds to the penny, as a person reads them: Decimal('2') (or 2, '2', 2.0) -> '£2.00'."""
    rounded = _exact(amount, "amount", InvalidQuantity).quantize(_PENNY, context=_CONTEXT)
    return f"-£{-rounded}" if rounded < 0 else f"£{rounded}"


def format_position(net: int) -> str:
    """A net position, signed, as a payoff in pounds: 20000 -> '+£2.00 payoff', -10000 -> '-£1.00 payoff'."""
    text = format_money(money(net))
    return f"{'+' if net > 0 and text != '£0.00' else ''}{text} payoff"
