"""A liquidity simulator, so that a demo of the exchange shows a live market.

A bot account keeps a few resting orders on both sides of every contract of
the markets that are open or in play, around a fair price that takes a small
random step on every tick.  It trades through the exchange's Python API, so
its orders match, fill and show in market data like anyone's.
"""

from __future__ import annotations

import random
import secrets

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from smarkets_twisted.exchange import engine
from smarkets_twisted.exchange.accounts import Account, Accounts, parse_amount
from smarkets_twisted.exchange.events import OrderAccepted
from smarkets_twisted.exchange.service import Exchange
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.trading.prices import PRICE_SCALE, snap

#: The bot's username; nobody can log in as it (its password is random).
BOT_USERNAME = "liquidity"

_TRADING_STATES = frozenset({seto_pb2.MARKET_STATE_OPEN, seto_pb2.MARKET_STATE_LIVE})


def with_liquidity_account(accounts: Accounts, balance: str = "1000000.00") -> Accounts:
    """The accounts plus the bot's, unless one of that name is there already."""
    if accounts.get(BOT_USERNAME) is not None:
        return accounts
    bot_id = max((account.account_id for account in accounts), default=0) + 1
    bot = Account(BOT_USERNAME, secrets.token_urlsafe(32), bot_id, "liquidity@example.invalid", parse_amount(balance))
    return Accounts([*accounts, bot])


class LiquiditySimulator(Service):
    """Every ``interval`` seconds, moves each contract's fair price and requotes around it.

    :param levels: resting orders per side of each contract.
    :param spread: distance between the best bid and the best offer (basis points).
    :param step: distance between two of the bot's levels on one side.
    :param quantity: payoff of each resting order (1/10000 currency units).
    :param seed: makes the random walk repeatable.
    """

    log = Logger()

    def __init__(
        self,
        exchange: Exchange,
        clock: IReactorTime,
        *,
        interval: float = 1.0,
        levels: int = 3,
        spread: int = 200,
        step: int = 100,
        quantity: int = 500_000,
        seed: int | None = None,
    ) -> None:
        self.exchange = exchange
        self.clock = clock
        self.interval = interval
        self.levels = levels
        self.spread = spread
        self.step = step
        self.quantity = quantity
        self.random = random.Random(seed)
        #: Contract id → the fair price the bot quotes around.
        self.fair: dict[int, int] = {}
        self._loop = LoopingCall(self.requote)
        self._loop.clock = clock

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.exchange.account(BOT_USERNAME)  # fail at start-up, not on the first tick
        self._loop.start(self.interval, now=True)

    def stopService(self) -> None:
        if self._loop.running:
            self._loop.stop()
        super().stopService()  # type: ignore[no-untyped-call]

    def requote(self) -> None:
        """Cancel the bot's orders, move every fair price, and place fresh ones."""
        for order in self.exchange.open_orders(BOT_USERNAME):
            self.exchange.cancel_order(BOT_USERNAME, order.order_id)
        for market in self.exchange.catalogue:
            if market.state not in _TRADING_STATES:
                continue
            for contract in market.contracts:
                fair = self._move(contract.id, len(market.contracts))
                for level in range(self.levels):
                    offset = self.spread // 2 + level * self.step
                    self._quote(market.id, contract.id, seto_pb2.SIDE_BUY, fair - offset)
                    self._quote(market.id, contract.id, seto_pb2.SIDE_SELL, fair + offset)

    def _move(self, contract_id: int, contracts: int) -> int:
        fair = self.fair.get(contract_id, PRICE_SCALE // max(contracts, 1))
        fair += self.random.choice((-self.step, 0, self.step))
        low = self.spread // 2 + (self.levels - 1) * self.step + engine.MIN_PRICE
        fair = min(max(fair, low), engine.MAX_PRICE + 1 - low)
        self.fair[contract_id] = fair
        return fair

    def _quote(self, market_id: int, contract_id: int, side: seto_pb2.Side, price: int) -> None:
        # On the tick ladder, never nearer the other side than asked: a bid
        # rounds down to a tick, an offer up.
        tick = snap(price, seto_pb2.SIDE_SELL if side == seto_pb2.SIDE_BUY else seto_pb2.SIDE_BUY)
        if tick is None:
            return
        events = self.exchange.place_order(BOT_USERNAME, market_id, contract_id, side, self.quantity, tick)
        if not any(isinstance(event, OrderAccepted) for event in events):
            self.log.debug("liquidity order at {price} on contract {contract_id} not accepted",
                           price=price, contract_id=contract_id)
