"""The accounts' money in each market: what each holds there, and what is reserved for it.

The matching engine tells the ledger what happens to orders (open quantity
reserved or released, fills) and the ledger keeps, per market and account,
a `~smarkets_twisted.trading.positions.MarketPosition` (the one
implementation of positions, shared with the client) and the exposure
reserved for it, with `Account.exposure` the sum over markets.  At
settlement it pays each account its result; when a market is voided it says
what each account had traded there, per contract and side, since it keeps
no trade one by one.

Every change to an account's money first calls ``notes.touch_account``, so
that the engine can report at the end of its call what changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from smarkets_twisted.exchange.accounts import Account
from smarkets_twisted.exchange.catalogue import Catalogue, Market
from smarkets_twisted.exchange.orders import Order
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.trading.positions import MarketPosition


class AccountNotes(Protocol):
    """Where the ledger notes an account before changing its money."""

    def touch_account(self, account: Account) -> None:
        """Called before ``account``'s balance or exposure changes."""


@dataclass(frozen=True)
class Traded:
    """What one account traded on one side of one contract of a voided market.

    :ivar last_order: the latest of its orders that traded there.
    :ivar avg_price: the quantity-weighted average price, rounded half up.
    """

    last_order: Order
    quantity: int
    avg_price: int


class _Stake:
    """One account's position in one market, and the exposure last reserved for it."""

    __slots__ = ("account", "contract_ids", "exposure", "position")

    def __init__(self, account: Account, contract_ids: tuple[int, ...]) -> None:
        self.account = account
        #: Every contract of the market: the possible winners.
        self.contract_ids = contract_ids
        self.position = MarketPosition()
        self.exposure = 0

    def add_open(self, order: Order, quantity: int) -> None:
        self.position.add_open(order.side, order.contract_id, order.price, quantity)


class _Kept:
    """A running total of what one account traded on one side of one contract."""

    __slots__ = ("last_order", "quantity", "value")

    def __init__(self, order: Order) -> None:
        self.last_order = order
        self.quantity = 0
        self.value = 0  # sum of quantity x price


class Ledger:
    """Positions and reserved exposure for every account in every market of the catalogue."""

    def __init__(self, catalogue: Catalogue) -> None:
        self._stakes: dict[int, dict[str, _Stake]] = {market.id: {} for market in catalogue}
        self._contract_ids = {market.id: tuple(contract.id for contract in market.contracts) for market in catalogue}
        #: Market id -> (username, contract id, side) -> what was traded, in the order first traded.
        self._traded: dict[int, dict[tuple[str, int, int], _Kept]] = {market.id: {} for market in catalogue}

    def reserve(self, notes: AccountNotes, market: Market, order: Order, replacing: Order | None) -> bool:
        """Reserve a new order's quantity (releasing what ``replacing`` has open).

        :return: False, with nothing changed, when the account cannot afford it.
        """
        stake = self._stake(market, order.account)
        stake.add_open(order, order.quantity)
        if replacing is not None:
            stake.add_open(replacing, -replacing.available)
        self._refresh(notes, stake)
        if order.account.exposure <= order.account.balance:
            return True
        stake.add_open(order, -order.quantity)
        if replacing is not None:
            stake.add_open(replacing, replacing.available)
        self._refresh(notes, stake)
        return False

    def release(self, notes: AccountNotes, market: Market, order: Order, quantity: int) -> None:
        """Release ``quantity`` of an order's open quantity (reduced or cancelled)."""
        stake = self._stake(market, order.account)
        stake.add_open(order, -quantity)
        self._refresh(notes, stake)

    def trade(
        self, notes: AccountNotes, market: Market, incoming: Order, resting: Order, price: int, quantity: int
    ) -> None:
        """Count a fill of ``quantity`` at ``price`` between two orders, no longer open for it."""
        for order in (incoming, resting):
            stake = self._stake(market, order.account)
            stake.add_open(order, -quantity)
            stake.position.add_trade(order.side, order.contract_id, price, quantity)
            self._refresh(notes, stake)
        traded = self._traded[market.id]
        for order in (incoming, resting) if incoming.side == seto_pb2.SIDE_BUY else (resting, incoming):
            key = (order.account.username, order.contract_id, order.side)
            kept = traded.get(key)
            if kept is None:
                kept = traded[key] = _Kept(order)
            kept.last_order = order
            kept.quantity += quantity
            kept.value += quantity * price

    def close(self, notes: AccountNotes, market: Market, winner: int | None) -> list[Traded]:
        """Settle (with a winner) or void (without) a market whose orders are all cancelled.

        Settling pays each account its result, rounded down; both release
        what was reserved.  Forgets the market's positions.

        :return: for a void, what was traded, first traded first.
        """
        for stake in self._stakes[market.id].values():
            notes.touch_account(stake.account)
            if winner is not None:
                stake.account.balance += stake.position.result(winner)
            stake.account.exposure -= stake.exposure
        voided = [
            Traded(kept.last_order, kept.quantity, (2 * kept.value + kept.quantity) // (2 * kept.quantity))
            for kept in self._traded[market.id].values()
            if winner is None
        ]
        self._stakes[market.id].clear()
        self._traded[market.id].clear()
        return voided

    def _stake(self, market: Market, account: Account) -> _Stake:
        stakes = self._stakes[market.id]
        stake = stakes.get(account.username)
        if stake is None:
            stake = stakes[account.username] = _Stake(account, self._contract_ids[market.id])
        return stake

    def _refresh(self, notes: AccountNotes, stake: _Stake) -> None:
        """Reserve the position's worst-case loss in place of what was reserved for it."""
        notes.touch_account(stake.account)
        exposure = stake.position.worst_loss(stake.contract_ids)
        stake.account.exposure += exposure - stake.exposure
        stake.exposure = exposure
