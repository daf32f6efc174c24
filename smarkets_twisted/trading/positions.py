"""Positions and exposure: what an account holds in a market and can lose there.

One implementation, used by the simulated exchange to reserve money and by
the client to follow its own positions, so that both compute the same
figures from the same fills and open orders.

Units follow PROTOCOL.md section 7: prices are percent odds in basis points
(1..9999, 10000 being certainty) and quantities are payoffs in 1/10000 of the
currency; money is in that same unit.  Everything here is plain integer
arithmetic, with no I/O and no clock.

The model
---------
A buy of quantity ``q`` at price ``p`` pays ``q * p / 10000`` (its stake) and
receives ``q`` if its contract wins; a sell is the other side of that trade.
For each possible winning contract, a `MarketPosition` knows the account's
profit, counting matched trades and, for each open order, whichever of
"filled" or "not filled" is worse in that outcome (so a buy and a sell that
hedge each other reserve less than their two liabilities).  The market's
worst-case loss is the most it could lose over every choice of winner; sums
are exact and the loss is rounded up to a whole unit once per market, so that
an exchange reserving it never under-reserves.  An account's exposure is the
sum of its markets' worst-case losses, and its available balance is its
balance less that exposure.

Stakes are given exactly as `~decimal.Decimal` pounds (currency units),
like `smarkets_twisted.trading.prices.stake`, since a stake need not be a
whole 1/10000; average prices exactly, as `~decimal.Decimal` wire prices.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from smarkets_twisted.trading.prices import BUY, PRICE_SCALE


class ContractPosition:
    """What one account has traded in one contract.

    :ivar bought: payoff bought (quantity), in 1/10000 of the currency.
    :ivar sold: payoff sold.
    """

    __slots__ = ("_bought_value", "_sold_value", "bought", "sold")

    def __init__(self) -> None:
        self.bought = 0
        self.sold = 0
        self._bought_value = 0
        self._sold_value = 0

    def __repr__(self) -> str:
        return f"<ContractPosition bought={self.bought} sold={self.sold}>"

    @property
    def net(self) -> int:
        """Payoff bought less payoff sold: what the account receives, net, if the contract wins."""
        return self.bought - self.sold

    @property
    def bought_stake(self) -> Decimal:
        """What the buys paid, in pounds: sum of quantity x price, exactly."""
        return Decimal(self._bought_value).scaleb(-8)

    @property
    def sold_stake(self) -> Decimal:
        """The buyers' stake of the sells, in pounds: what they win if the contract loses."""
        return Decimal(self._sold_value).scaleb(-8)

    @property
    def bought_avg_price(self) -> Decimal | None:
        """The quantity-weighted average price of the buys, exactly (None before any)."""
        return Decimal(self._bought_value) / self.bought if self.bought else None

    @property
    def sold_avg_price(self) -> Decimal | None:
        """The quantity-weighted average price of the sells, exactly (None before any)."""
        return Decimal(self._sold_value) / self.sold if self.sold else None

    def add(self, side: int, price: int, quantity: int) -> None:
        """Count a fill (a negative quantity takes one back)."""
        if side == BUY:
            self.bought += quantity
            self._bought_value += quantity * price
        else:
            self.sold += quantity
            self._sold_value += quantity * price


class MarketPosition:
    """One account's stake in one market: its trades, its open orders' reserve, its worst case.

    Feed it the account's fills (`add_trade`) and the open quantity of its
    orders (`add_open`, negative to release: when an order is filled,
    reduced or cancelled); ask it `worst_loss` and, once the market is
    settled, `result`.
    """

    __slots__ = ("_base", "_wins", "contracts")

    def __init__(self) -> None:
        # Profit (x PRICE_SCALE) if contract c wins: _base + _wins.get(c, 0).
        self._base = 0
        self._wins: dict[int, int] = {}
        #: Contract id -> what was traded in it.
        self.contracts: dict[int, ContractPosition] = {}

    def __repr__(self) -> str:
        return f"<MarketPosition contracts={self.contracts!r}>"

    def add_open(self, side: int, contract_id: int, price: int, quantity: int) -> None:
        """Reserve ``quantity`` more open quantity of an order (release, if negative)."""
        if side == BUY:
            # Loses quantity*price unless its contract wins; then, unfilled is worst.
            self._base -= quantity * price
            self._win(contract_id, quantity * price)
        else:
            # Loses quantity*(1-price) if its contract wins; else unfilled is worst.
            self._win(contract_id, -quantity * (PRICE_SCALE - price))

    def add_trade(self, side: int, contract_id: int, price: int, quantity: int) -> None:
        """Count a fill of ``quantity`` at ``price``: the buyer is paid ``quantity`` if the contract wins.

        The filled quantity was open until now: release it with `add_open` too.
        """
        sign = 1 if side == BUY else -1
        self._base -= sign * quantity * price
        self._win(contract_id, sign * quantity * PRICE_SCALE)
        position = self.contracts.get(contract_id)
        if position is None:
            position = self.contracts[contract_id] = ContractPosition()
        position.add(side, price, quantity)

    def worst_loss(self, contract_ids: Iterable[int]) -> int:
        """The most this position can lose, rounded up, over every winner among ``contract_ids``.

        :param contract_ids: every contract of the market (a contract that is
            left out is assumed never to win).
        """
        wins = self._wins
        gains = [wins.get(contract_id, 0) for contract_id in contract_ids]
        worst = self._base + min(gains) if gains else 0
        return max(0, -(worst // PRICE_SCALE))

    def result(self, winner: int) -> int:
        """The net result if ``winner`` wins, rounded down; meaningful once no order is open."""
        return (self._base + self._wins.get(winner, 0)) // PRICE_SCALE

    def _win(self, contract_id: int, amount: int) -> None:
        self._wins[contract_id] = self._wins.get(contract_id, 0) + amount
