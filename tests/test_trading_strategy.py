"""trading.strategy hooks, the demo market maker, and --strategy with a class."""

from __future__ import annotations

import random
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import errors, tap
from smarkets_twisted.exchange.accounts import Account, Accounts, default_accounts, parse_amount
from smarkets_twisted.exchange.liquidity import LiquiditySimulator, with_liquidity_account
from smarkets_twisted.exchange.service import ExchangeSettings
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.payloads import Payload, handler_name, session_message
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.status import status_line
from smarkets_twisted.strategies import StrategyService
from smarkets_twisted.testing import InMemoryExchange
from smarkets_twisted.tradelog import TradeLog
from smarkets_twisted.trading import prices
from smarkets_twisted.trading.books import Level, MarketBook
from smarkets_twisted.trading.demo import LABEL, POSITION_LIMIT, MarketMaker
from smarkets_twisted.trading.orders import Order, OrderState
from smarkets_twisted.trading.strategy import Strategy
from tests.exchange_helpers import HOME, MARKET
from tests.trading_helpers import ExchangeOutput, TradingTestCase

BUY = seto_pb2.SIDE_BUY
SELL = seto_pb2.SIDE_SELL


class Recording(Strategy):
    """Every hook, as it is called."""

    def __init__(self, factory: SmarketsClientFactory) -> None:
        super().__init__(factory)
        self.calls: list[tuple[object, ...]] = []

    def logged_in(self, resumed: bool) -> None:
        self.calls.append(("logged_in", resumed))

    def logged_out(self, reason: Exception) -> None:
        self.calls.append(("logged_out",))

    def connection_lost(self, reason: Exception) -> None:
        self.calls.append(("connection_lost",))

    def book_changed(self, book: MarketBook, contract_id: int | None) -> None:
        self.calls.append(("book_changed", book.market_id, contract_id))

    def book_stale(self, book: MarketBook) -> None:
        self.calls.append(("book_stale", book.market_id))

    def order_changed(self, order: Order) -> None:
        self.calls.append(("order_changed", order.state))

    def fill(self, order: Order, price: int, quantity: int) -> None:
        self.calls.append(("fill", price, quantity))

    def balance_changed(self, available_balance: Decimal, exposure: Decimal) -> None:
        self.calls.append(("balance_changed", available_balance, exposure))


class StrategyHookTests(TradingTestCase):
    def test_every_hook(self) -> None:
        strategy = Recording(self.alice)
        strategy.start()
        self.assertEqual(strategy.calls, [("logged_in", False)])
        self.settle(self.alice.subscribe(MARKET))
        self.settle(self.alice.order(MARKET, HOME, BUY, 400_000, 2500))
        self.settle(self.bob.order(MARKET, HOME, SELL, 100_000, 2500))
        self.alice_connection.drop()
        self.market.connect(self.alice)
        self.market.flush()
        self.settle(self.alice.logout())
        strategy.stop()
        self.settle(self.bob.order(MARKET, HOME, SELL, 100_000, 2500))
        calls = strategy.calls
        self.assertEqual(calls[1], ("book_changed", MARKET, None))
        self.assertIn(("order_changed", OrderState.LIVE), calls)
        self.assertIn(("balance_changed", Decimal("990.00"), Decimal("10.00")), calls)
        self.assertIn(("fill", 2500, 100_000), calls)
        self.assertEqual(calls.index(("fill", 2500, 100_000)) + 1,
                         calls.index(("order_changed", OrderState.LIVE), calls.index(("fill", 2500, 100_000))))
        after_drop = calls[calls.index(("book_stale", MARKET)):]
        self.assertEqual(after_drop[:3], [("book_stale", MARKET), ("connection_lost",), ("logged_in", True)])
        self.assertIn(("logged_out",), after_drop)
        self.assertEqual(calls.count(("fill", 2500, 100_000)), 1)  # none after stop

    def test_connection_lost_follows_logged_out_when_the_session_ends(self) -> None:
        """As Strategy.connection_lost says: only a close without logged_out before it is resumed."""
        strategy = Recording(self.alice)
        strategy.start()
        self.alice_connection.drop()
        self.assertEqual(strategy.calls[-1], ("connection_lost",))
        self.market.connect(self.alice)
        self.market.flush()
        self.assertEqual(strategy.calls[-1], ("logged_in", True))
        self.settle(self.alice.logout())
        self.assertEqual(strategy.calls[-2:], [("logged_out",), ("connection_lost",)])

    def test_market_state_changed_tells_a_halt_and_the_market_going_live_again(self) -> None:
        states: list[tuple[int, int]] = []

        class Watching(Strategy):
            def market_state_changed(self, market_id: int, state: int) -> None:
                states.append((market_id, state))

        strategy = Watching(self.alice)
        strategy.start()
        self.settle(self.alice.subscribe(MARKET))
        self.exchange.halt(MARKET)
        self.market.flush()
        self.refused(self.alice.order(MARKET, HOME, BUY, 10_000, 2500), errors.OrderRejected)
        self.exchange.go_live(MARKET)
        self.market.flush()
        strategy.stop()
        self.exchange.halt(MARKET)
        self.market.flush()
        self.assertEqual(states, [(MARKET, seto_pb2.MARKET_STATE_HALTED), (MARKET, seto_pb2.MARKET_STATE_LIVE)])

    def test_a_hook_that_raises_is_logged_and_harms_nothing(self) -> None:
        class Broken(Strategy):
            def order_changed(self, order: Order) -> None:
                raise RuntimeError("strategy bug")

        Broken(self.alice).start()
        accepted = self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 2500))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.alice.orders.get(accepted.order_id).state, OrderState.LIVE)  # type: ignore[union-attr]

    def test_a_logged_in_hook_that_raises_at_start_is_logged_too(self) -> None:
        """start() calls logged_in itself when the client is logged in already: the same rule holds there."""
        class Broken(Recording):
            def logged_in(self, resumed: bool) -> None:
                raise RuntimeError("strategy bug")

        strategy = Broken(self.alice)
        strategy.start()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(strategy.running)
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 2500))
        self.assertIn(("order_changed", OrderState.LIVE), strategy.calls)


class MarketMakerTests(SynchronousTestCase):
    """The demo against the embedded exchange's liquidity bot (still unless a test moves it)."""

    def setUp(self) -> None:
        accounts = Accounts([*default_accounts(), Account("taker", "taker-pw", 2, None, parse_amount("1000.00"))])
        self.market = InMemoryExchange(accounts=with_liquidity_account(accounts))
        self.liquidity = LiquiditySimulator(self.market.exchange, self.market.clock, interval=3600, seed=7)
        self.liquidity.startService()
        self.addCleanup(self.liquidity.stopService)
        self.factory, self.connection = self.market.client()
        self.market.flush()
        self.maker = MarketMaker(self.factory, [100], interval=5, verbose=True)
        self.addCleanup(self.maker.stop)

    def demo_orders(self) -> dict[int, tuple[int, int, int]]:
        return {o.order_id: (o.contract_id, o.side, o.price) for o in self.market.exchange.open_orders("demo")}

    def assertOrdersAgree(self) -> None:
        ours = {o.order_id: (o.price, o.remaining_quantity) for o in self.factory.orders.open()}
        theirs = {o.order_id: (o.price, o.available_quantity) for o in self.market.exchange.open_orders("demo")}
        self.assertEqual(ours, theirs)

    def test_quotes_both_sides_around_the_mid_on_ticks(self) -> None:
        with capturedLogs() as events:
            self.maker.start()
            self.market.advance(12)
        book = self.factory.books[100]
        self.assertEqual(len(self.maker.quotes), 2 * len(book.contracts))
        ours = {(o.order_id, o.contract_id, o.side, o.price) for o in self.maker.quotes.values()}
        self.assertEqual(ours, {(order_id, *rest) for order_id, rest in self.demo_orders().items()})
        for contract_id, contract in book.contracts.items():
            bid, offer = self.maker.quotes[(contract_id, BUY)], self.maker.quotes[(contract_id, SELL)]
            self.assertTrue(prices.is_tick(bid.price) and prices.is_tick(offer.price))
            # One tick either side of the mid of the bot's best prices, and so the best prices now.
            bot = [o for o in self.market.exchange.open_orders("liquidity") if o.contract_id == contract_id]
            mid = (max(o.price for o in bot if o.side == BUY) + min(o.price for o in bot if o.side == SELL)) // 2
            self.assertEqual((bid.price, offer.price), (prices.ticks_below(mid)[0], prices.ticks_above(mid)[0]))
            self.assertEqual((contract.best_bid, contract.best_offer),
                             (Level(bid.price, 20_000), Level(offer.price, 20_000)))
            self.assertEqual(bid.label, LABEL)
        text = "\n".join(str(formatEvent(event)) for event in events)
        self.assertRegex(text, r"quoting: buy £2\.00 payoff of market 100 contract 100\d at \d+\.\d\d% \([\d.]+\)")
        self.assertOrdersAgree()

    def test_moves_its_quotes_when_the_market_moves(self) -> None:
        self.maker.start()
        self.market.advance(6)
        before = self.demo_orders()
        self.liquidity.requote()  # the bot's fair prices step
        self.liquidity.requote()
        self.market.advance(5)
        after = self.demo_orders()
        self.assertNotEqual(sorted(before.values()), sorted(after.values()))
        self.assertOrdersAgree()

    def test_pulls_its_quotes_when_the_book_goes_stale(self) -> None:
        self.maker.start()
        self.market.advance(6)
        self.settle_settings(cancel_all_on_failure=False)
        self.assertEqual(len(self.demo_orders()), 6)
        self.connection.drop()
        self.assertTrue(self.factory.books[100].stale)
        self.assertEqual(len(self.demo_orders()), 6)
        self.market.connect(self.factory)
        self.market.flush()  # the cancels queued while stale go out on resume
        self.assertEqual(self.demo_orders(), {})
        self.market.advance(5)
        self.assertEqual(len(self.demo_orders()), 6)
        self.assertOrdersAgree()

    def test_pulls_its_quotes_when_it_stops(self) -> None:
        self.maker.start()
        self.market.advance(6)
        self.assertEqual(len(self.demo_orders()), 6)
        stopped = self.maker.stop()
        self.assertNoResult(stopped)
        self.market.flush()
        self.assertEqual(self.demo_orders(), {})
        self.successResultOf(stopped)
        self.market.advance(10)
        self.assertEqual(self.demo_orders(), {})

    def test_a_stop_while_disconnected_cancels_each_order_once(self) -> None:
        self.maker.start()
        self.market.advance(6)
        self.settle_settings(cancel_all_on_failure=False)
        self.connection.drop()  # the books go stale: a cancel per quote waits for the next connection
        cancels: list[int] = []
        cancel = self.factory.cancel
        self.patch(self.factory, "cancel", lambda order_id, **kwargs: (cancels.append(order_id),
                                                                        cancel(order_id, **kwargs))[1])
        with capturedLogs() as events:
            stopped = self.maker.stop()
            self.market.connect(self.factory)
            self.market.flush()
        self.successResultOf(stopped)
        self.assertEqual(cancels, [])  # each already on its way
        self.assertEqual(self.demo_orders(), {})
        lines = [str(formatEvent(event)) for event in events if event.get("log_level") != LogLevel.debug]
        self.assertIn("stopping: every order of the market maker is closed", lines)
        self.assertFalse([line for line in lines if "refused" in line], lines)

    def test_a_stop_waits_for_the_answers_no_longer_than_its_timeout(self) -> None:
        self.maker.start()
        self.market.advance(6)
        self.connection.drop()  # the session is held: the cancels wait for a connection that does not come
        with capturedLogs() as events:
            stopped = self.maker.stop()
            self.market.clock.advance(self.maker.stop_timeout - 0.1)
            self.assertNoResult(stopped)
            self.market.clock.advance(0.1)
            self.successResultOf(stopped)
        lines = [str(formatEvent(event)) for event in events]
        self.assertIn("stopping: cancelling 6 orders before the logout", lines)
        self.assertRegex(lines[-1], r"^stopping: 6 orders still open \(\d+, .*\); they may rest on the exchange$")
        self.assertFalse(self.maker.running)

    def test_a_move_that_comes_too_late_is_said_in_words(self) -> None:
        """A replace racing a fill is routine for a maker: one line a trader reads, not an enum name."""
        self.maker.start()
        self.market.advance(6)
        bid = self.maker.quotes[(1001, BUY)]
        lower = prices.ticks_below(bid.price)[0]
        held = self.connection.pump
        with capturedLogs() as events:
            self.maker._quote(100, 1001, BUY, lower, POSITION_LIMIT)
            replace = held.clientIO.getOutBuffer()
            self.market.exchange.place_order("taker", 100, 1001, SELL, 20_000, bid.price)  # fills it first
            self.market.flush()
            held.serverIO.bufferReceived(replace)
            self.market.flush()
        lines = [str(formatEvent(event)) for event in events if event.get("log_level") != LogLevel.debug]
        self.assertIn(f"moving order {bid.order_id} at {prices.format_price(bid.price)} -> buy £2.00 payoff of market"
                      f" 100 contract 1001 at {prices.format_price(lower)}: refused (too late)", lines)
        self.assertFalse([line for line in lines if "ORDER_" in line])

    def test_a_quote_the_exchange_no_longer_has_is_forgotten_and_quoted_afresh(self) -> None:
        """Its cancellation never reached the client (another session's, a lost one): the move is
        refused as too late, the quote forgotten (closed as gone), and the side quoted anew."""
        self.maker.start()
        self.market.advance(6)
        bid = self.maker.quotes[(1001, BUY)]
        assert bid.order_id is not None

        def lose_the_cancellation(payload: Payload) -> list[Payload]:
            if handler_name(payload) != "seto.order_cancelled":
                return [payload]
            heartbeat = session_message(eto_pb2.PAYLOAD_HEARTBEAT)
            heartbeat.eto_payload.seq = payload.eto_payload.seq
            return [heartbeat]

        ExchangeOutput(self.connection, lose_the_cancellation)
        self.market.exchange.cancel_order("demo", bid.order_id)
        self.market.flush()
        self.assertIs(bid.state, OrderState.LIVE)  # as far as the client knows
        self.factory.orders.add_listener(TradeLog())
        with capturedLogs() as events:
            self.maker._quote(100, 1001, BUY, prices.ticks_below(bid.price)[0], POSITION_LIMIT)
            self.market.flush()
            self.assertEqual((bid.state, bid.remaining_quantity), (OrderState.GONE, 0))
            self.assertNotIn((1001, BUY), self.maker.quotes)
            self.market.advance(5)
        lines = [str(formatEvent(event)) for event in events if event.get("log_level") != LogLevel.debug]
        self.assertEqual(len([line for line in lines if "refused (too late)" in line]), 1, lines)
        self.assertTrue([line for line in lines if line.startswith(f"order {bid.order_id} (") and line.endswith(
            ") gone from the exchange (too late): how it ended is unknown here")], lines)
        fresh = self.maker.quotes[(1001, BUY)]
        self.assertIsNot(fresh, bid)
        self.assertIn(fresh.order_id, self.demo_orders())
        self.assertEqual(len(self.demo_orders()), 6)
        self.assertOrdersAgree()

    def test_a_bug_in_quoting_stops_it_and_pulls_the_quotes(self) -> None:
        self.maker.start()
        self.market.advance(6)
        self.assertEqual(len(self.demo_orders()), 6)

        def broken(contract: object) -> int:
            raise RuntimeError("quoting bug")

        self.maker._mid = broken  # type: ignore[method-assign]
        self.market.advance(5)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(self.maker.running)
        self.assertEqual(self.demo_orders(), {})

    def test_never_past_its_limit_nor_off_the_ladder_over_a_long_random_session(self) -> None:
        """The market moves, a taker hits the maker's quotes for random amounts, the connection drops."""
        rng = random.Random(3)
        maker = MarketMaker(self.factory, [100], interval=1, position_limit=50_000)
        maker.start()
        self.addCleanup(maker.stop)
        fills = most = 0
        for _ in range(300):
            step = rng.random()
            if step < 0.3:
                self.liquidity.requote()
            elif step < 0.8 and maker.quotes:
                quote = rng.choice(sorted(maker.quotes.values(), key=lambda order: order.order_id or 0))
                taker_side = SELL if quote.side == BUY else BUY
                quantity = rng.randint(1, max(1, quote.remaining_quantity))
                self.market.exchange.place_order("taker", 100, quote.contract_id, taker_side, quantity, quote.price,
                                                 tif=seto_pb2.IMMEDIATE_OR_CANCEL)
                fills += 1
            elif step < 0.82:
                self.connection.drop()
                self.connection = self.market.connect(self.factory)
            self.market.advance(rng.choice([0.5, 1, 2]))
            for contract_id in (1001, 1002, 1003):
                position = self.factory.positions.contract(100, contract_id)
                net = position.net if position is not None else 0
                self.assertLessEqual(abs(net), 50_000)
                most = max(most, abs(net))
                bid, offer = maker.quotes.get((contract_id, BUY)), maker.quotes.get((contract_id, SELL))
                self.assertLessEqual(net + (bid.remaining_quantity if bid else 0), 50_000)
                self.assertGreaterEqual(net - (offer.remaining_quantity if offer else 0), -50_000)
            self.assertTrue(all(prices.is_tick(o.price) for o in self.market.exchange.open_orders("demo")))
            self.assertEqual(self.factory.positions.exposure,
                             prices.money(self.market.exchange.account("demo").exposure))
        self.assertGreater(fills, 100)
        self.assertGreaterEqual(most, 40_000)  # the limit was reached for, and held

    def test_a_fill_is_said_then_what_it_leaves_the_maker_holding(self) -> None:
        self.factory.orders.add_listener(TradeLog())  # as twistd smarkets does, before the strategy starts
        self.maker.start()
        self.market.advance(6)
        bid = self.maker.quotes[(1001, BUY)]
        self.factory.order(200, 2001, BUY, 20_000, 1000)  # elsewhere in the account: not this market's exposure
        self.market.flush()
        with capturedLogs() as events:
            self.market.exchange.place_order("taker", 100, 1001, SELL, 20_000, bid.price)
            self.market.flush()
        lines = [str(formatEvent(event)) for event in events if event.get("log_level") != LogLevel.debug]
        filled = lines.index(f"order {bid.order_id} filled: £2.00 at an average {prices.format_price(bid.price)}")
        exposure = self.factory.positions.worst_loss(100)
        self.assertLess(exposure, self.factory.positions.exposure)
        self.assertEqual(lines[filled + 1], "market 100 contract 1001: this run's position +£2.00 payoff, worst loss"
                                            f" in the market {prices.format_money(exposure)}")

    def settle_settings(self, cancel_all_on_failure: bool) -> None:
        done = self.factory.settings(cancel_all_on_failure=cancel_all_on_failure)
        self.market.flush()
        self.successResultOf(done)

    def test_stops_buying_at_the_position_limit(self) -> None:
        maker = MarketMaker(self.factory, [100], interval=5, position_limit=20_000)
        maker.start()
        self.addCleanup(maker.stop)
        self.market.advance(6)
        bid = maker.quotes[(1001, BUY)]
        self.market.exchange.place_order("taker", 100, 1001, SELL, 20_000, bid.price)
        self.market.advance(5)
        position = self.factory.positions.contract(100, 1001)
        assert position is not None
        self.assertEqual(position.net, 20_000)
        self.assertNotIn((1001, BUY), maker.quotes)
        self.assertIn((1001, SELL), maker.quotes)
        self.assertEqual(self.factory.positions.exposure,
                         prices.money(self.market.exchange.account("demo").exposure))

    def test_a_full_fill_of_its_quote_keeps_it_within_the_limit(self) -> None:
        """With £3.00 of room, the second bid is for £1.00, not another £2.00."""
        maker = MarketMaker(self.factory, [100], interval=5, position_limit=30_000)
        maker.start()
        self.addCleanup(maker.stop)
        self.market.advance(6)
        for _ in range(3):
            bid = maker.quotes.get((1001, BUY))
            if bid is not None:
                self.market.exchange.place_order("taker", 100, 1001, SELL, bid.remaining_quantity, bid.price)
            self.market.advance(5)
            position = self.factory.positions.contract(100, 1001)
            assert position is not None
            bid = maker.quotes.get((1001, BUY))
            self.assertLessEqual(position.net + (bid.remaining_quantity if bid else 0), 30_000)
        self.assertEqual(position.net, 30_000)
        self.assertOrdersAgree()

    def test_a_quote_beyond_the_limit_is_pulled_then_sized_to_the_room(self) -> None:
        """The limit lowered under a partly filled bid: the bid is pulled (a smaller replace could
        still see the old one fill first), then quoted afresh for the room left."""
        self.maker.start()
        self.market.advance(6)
        bid = self.maker.quotes[(1001, BUY)]
        self.market.exchange.place_order("taker", 100, 1001, SELL, 10_000, bid.price)
        self.market.flush()
        self.maker.position_limit = 15_000
        self.market.advance(5)
        self.assertEqual(bid.state, OrderState.CANCELLED)
        self.market.advance(5)
        fresh = self.maker.quotes[(1001, BUY)]
        self.assertEqual(fresh.remaining_quantity, 5_000)
        self.maker.position_limit = 10_000
        self.market.advance(5)
        self.assertEqual(fresh.state, OrderState.CANCELLED)
        self.assertNotIn((1001, BUY), self.maker.quotes)
        self.assertIn((1001, SELL), self.maker.quotes)
        self.assertOrdersAgree()

    def test_one_request_in_flight_per_quote_and_none_behind_the_throttle(self) -> None:
        self.maker.start()
        self.market.advance(1)
        for _ in range(5):
            self.maker.requote()  # before any answer
        self.assertEqual(len(self.factory.orders), 6)
        self.market.flush()
        self.assertEqual(len(self.demo_orders()), 6)
        self.factory.bucket.set_limits(1, 1, 1000, self.market.clock.seconds())
        self.factory.bucket.spend(10, self.market.clock.seconds())
        self.factory.subscribe(200)  # waits for tokens
        self.market.exchange.cancel_order("demo", next(iter(self.demo_orders())))
        self.market.flush()
        self.maker.requote()  # a quote is missing, but the throttle holds a request back already
        self.assertEqual((self.factory.queued, len(self.factory.orders)), (1, 6))


class NeedsAMarket(Strategy):
    """Cannot be built from the factory alone."""

    def __init__(self, factory: SmarketsClientFactory, market_id: int) -> None:
        super().__init__(factory)


class StrategyOptionTests(SynchronousTestCase):
    def test_a_strategy_that_cannot_be_built_from_the_factory_is_a_usage_error(self) -> None:
        """Said in one line when the options are read, not as a traceback once twistd is running."""
        options = tap.Options()
        with self.assertRaises(usage.UsageError) as caught:
            options.parseOptions(["--strategy", "tests.test_trading_strategy:NeedsAMarket"])
        self.assertIn("NeedsAMarket", str(caught.exception))
        self.assertIn("market_id", str(caught.exception))

    def test_a_strategy_module_that_fails_as_it_is_imported_is_a_usage_error(self) -> None:
        """A syntax error or a top-level line that raises is said in one line, with where: not a traceback."""
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "t4_raises_at_import.py").write_text("import os\nraise RuntimeError('no market set')\n")
        (directory / "t4_bad_syntax.py").write_text("def broken(:\n")
        sys.path.insert(0, str(directory))
        self.addCleanup(sys.path.remove, str(directory))
        for spec, words in (("t4_raises_at_import:Name", "RuntimeError: no market set"),
                            ("t4_bad_syntax:Name", "SyntaxError: ")):
            with self.assertRaises(usage.UsageError) as caught:
                tap.Options().parseOptions(["--strategy", spec])
            message = str(caught.exception)
            self.assertTrue(message.startswith(f"cannot load --strategy {spec}: {words}"), message)
            self.assertIn(", line ", message)
            self.assertEqual(len(message.splitlines()), 1)

    def test_the_markets_given_are_subscribed_for_a_strategy_of_the_users(self) -> None:
        """--market was ignored with --strategy module:Name: the strategy saw no book of the markets named."""
        options = tap.Options()
        options.parseOptions(["--strategy", "tests.test_trading_strategy:Recording", "--market", "200"])
        build, name = tap._strategy(options)
        market = InMemoryExchange()
        factory, _ = market.client()
        service = StrategyService(factory, build, name)
        service.startService()
        market.flush()
        self.assertIsInstance(service.strategy, Recording)
        self.assertEqual((factory.subscriptions, sorted(factory.books.markets)), ({200}, [200]))
        self.assertIn(("book_changed", 200, None), service.strategy.calls)  # type: ignore[union-attr]

    def test_a_strategy_class_is_built_started_and_stopped(self) -> None:
        options = tap.Options()
        options.parseOptions(["--strategy", "tests.test_trading_strategy:Recording"])
        self.assertIs(options.strategy, Recording)
        market = InMemoryExchange()
        factory, _ = market.client()
        market.flush()
        service = StrategyService(factory, options.strategy, "--strategy tests.test_trading_strategy:Recording")
        service.startService()
        strategy = service.strategy
        assert isinstance(strategy, Recording)
        self.assertTrue(strategy.running)
        self.assertEqual(strategy.calls, [("logged_in", False)])
        service.stopService()
        self.assertFalse(strategy.running)


class StrategyStopTests(SynchronousTestCase):
    """twistd logs out once the strategy's stop is done: a stop that never finishes must not hold it forever."""

    def service(self, stop: Deferred[None]) -> tuple[StrategyService, InMemoryExchange]:
        class Stopping(Strategy):
            def stop(self) -> Deferred[None]:
                super().stop()
                return stop

        market = InMemoryExchange()
        factory, _ = market.client()
        service = StrategyService(factory, Stopping, "--strategy mystrat:Stopping")
        service.startService()
        return service, market

    def test_the_stop_is_waited_for(self) -> None:
        stop: Deferred[None] = Deferred()
        service, market = self.service(stop)
        stopped = service.stopService()
        assert stopped is not None
        market.advance(5)
        self.assertNoResult(stopped)
        stop.callback(None)
        self.assertIsNone(self.successResultOf(stopped))

    def test_a_stop_that_never_finishes_is_given_up_on_with_a_warning(self) -> None:
        stop: Deferred[None] = Deferred()
        service, market = self.service(stop)
        with capturedLogs() as events:
            stopped = service.stopService()
            assert stopped is not None
            market.advance(9.5)
            self.assertNoResult(stopped)
            market.advance(0.5)
        self.assertIsNone(self.successResultOf(stopped))
        self.assertIn("--strategy mystrat:Stopping did not finish stopping in 10.0 seconds; logging out all the same",
                      [str(formatEvent(event)) for event in events])


class ReadmeStrategyTests(SynchronousTestCase):
    def test_the_strategy_in_20_lines_runs(self) -> None:
        readme = (Path(__file__).resolve().parent.parent / "README.rst").read_text(encoding="utf-8")
        after = readme.split("--strategy mystrat:BackTheFavourite``")[1].split("::\n\n", 1)[1]
        lines = []
        for line in after.splitlines():
            if line and not line.startswith("    "):
                break
            lines.append(line)
        code = textwrap.dedent("\n".join(lines)).strip()
        self.assertLessEqual(len(code.splitlines()), 20)
        namespace: dict[str, object] = {}
        exec(compile(code, "README.rst", "exec"), namespace)  # noqa: S102
        market = InMemoryExchange(accounts=with_liquidity_account(default_accounts()))
        liquidity = LiquiditySimulator(market.exchange, market.clock, interval=3600, seed=7)
        liquidity.startService()
        self.addCleanup(liquidity.stopService)
        factory, _ = market.client()
        strategy = namespace["BackTheFavourite"](factory)  # type: ignore[operator]
        with capturedLogs() as events:
            strategy.start()
            market.advance(5)
        (order,) = list(factory.orders)
        best_offers: dict[int, int] = {}
        for bot in market.exchange.open_orders("liquidity", 100):
            if bot.side == SELL:
                best_offers[bot.contract_id] = min(bot.price, best_offers.get(bot.contract_id, 10_000))
        price, likeliest = max((price, contract_id) for contract_id, price in best_offers.items())
        self.assertEqual((order.state, order.contract_id, order.price), (OrderState.FILLED, likeliest, price))
        self.assertIn(f"bought £2.00 at {prices.format_price(order.price)}",
                      [str(formatEvent(event)) for event in events])


class MarketMakerNewSessionTests(SynchronousTestCase):
    """The exchange restarts (a fresh one on the same address, that knows neither the session nor the orders)."""

    def exchange(self, clock: object | None = None, settings: ExchangeSettings | None = None) -> InMemoryExchange:
        market = InMemoryExchange(clock, accounts=with_liquidity_account(default_accounts()),  # type: ignore[arg-type]
                                  settings=settings)
        liquidity = LiquiditySimulator(market.exchange, market.clock, interval=3600, seed=7)
        liquidity.startService()
        self.addCleanup(liquidity.stopService)
        return market

    def test_quotes_anew_in_the_new_session_after_a_restart(self) -> None:
        first = self.exchange()
        factory, connection = first.client()
        first.flush()
        maker = MarketMaker(factory, [100], interval=5)
        self.addCleanup(maker.stop)
        maker.start()
        first.advance(6)
        old = set(maker.quotes.values())
        self.assertEqual(len(old), 6)
        connection.drop()
        # Ours numbers a run above every earlier one; a real exchange might start again from 1.
        restarted = self.exchange(first.clock, ExchangeSettings(id_base=0))
        for _ in range(10):  # its order ids start again: past the old ones, as a long-running exchange's would
            restarted.exchange.place_order("liquidity", 100, 1001, BUY, 10_000, 1000)
        with capturedLogs() as events:
            restarted.connect(factory)  # the old session is refused: a new one starts
            restarted.flush()
            restarted.connect(factory)
            restarted.advance(11)
        # Quoting again, on the restarted exchange, with new orders.
        theirs = {(o.order_id, o.contract_id, o.side, o.price) for o in restarted.exchange.open_orders("demo")}
        self.assertEqual(len(theirs), 6)
        self.assertEqual({(o.order_id, o.contract_id, o.side, o.price) for o in maker.quotes.values()}, theirs)
        self.assertFalse(old & set(maker.quotes.values()))
        # The old ones stay of unknown fate until something settles them; no move of theirs was tried.
        self.assertEqual({order.state for order in old}, {OrderState.UNKNOWN})
        self.assertIn(", 12 open orders (6 unknown), ", status_line(factory, None))
        lines = [str(formatEvent(event)) for event in events]
        self.assertIn("the session ended: 6 quotes of unknown fate forgotten; their sides are quoted afresh once logged"
                      " in again", lines)
        self.assertTrue([line for line in lines if line.startswith("the exchange numbers account events afresh")])
        self.assertFalse([line for line in lines if "moving order" in line or "(too late)" in line], lines)
        # A cancel refused as not found settles one: the exchange does not have it.
        gone = sorted(old, key=lambda order: order.order_id or 0)[0]
        assert gone.order_id is not None
        refused = factory.cancel(gone.order_id)
        restarted.flush()
        self.assertEqual(self.failureResultOf(refused, errors.CancelRejected).value.reason_name,
                         "ORDER_CANCEL_REJECTED_NOT_FOUND")
        self.assertEqual((gone.state, gone.remaining_quantity), (OrderState.GONE, 0))
        # On stop, only the orders it holds on this exchange are cancelled, and said once.
        with capturedLogs() as events:
            stopped = maker.stop()
            restarted.flush()
        self.successResultOf(stopped)
        self.assertEqual(restarted.exchange.open_orders("demo"), [])
        lines = [str(formatEvent(event)) for event in events if event.get("log_level") != LogLevel.debug]
        self.assertEqual([line for line in lines if line.startswith("stopping")],
                         ["stopping: cancelling 6 orders before the logout",
                          "stopping: every order of the market maker is closed"])
        self.assertFalse([line for line in lines if "refused" in line], lines)
