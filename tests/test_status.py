"""A log a person reads: the status line, no price line per change, no reprs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import status as status_module
from smarkets_twisted import tap
from smarkets_twisted.exchange.accounts import default_accounts
from smarkets_twisted.exchange.embedded import EmbeddedExchangeService
from smarkets_twisted.exchange.liquidity import LiquiditySimulator, with_liquidity_account
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.handlers import HandlerRegistry
from smarkets_twisted.pricelog import PriceLog
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.status import StatusService, status_line
from smarkets_twisted.testing import InMemoryExchange
from smarkets_twisted.tradelog import TradeLog
from smarkets_twisted.trading import prices
from smarkets_twisted.trading.demo import MarketMaker
from smarkets_twisted.trading.orders import Orders, OrderState
from smarkets_twisted.trading.prices import format_money, format_price, money
from tests.exchange_helpers import HOME, MARKET, markets, two_accounts
from tests.test_journal import _client


def lines(events: list[dict[str, object]]) -> list[str]:
    return [str(formatEvent(event)) for event in events]


class StatusLineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.market = InMemoryExchange(accounts=with_liquidity_account(default_accounts()))
        self.liquidity = LiquiditySimulator(self.market.exchange, self.market.clock)
        self.liquidity.startService()
        self.addCleanup(self.liquidity.stopService)
        self.factory, self.connection = self.market.client()
        self.market.flush()

    def test_line_says_connection_session_seqs_and_queue(self) -> None:
        state = self.factory.state
        line = status_line(self.factory, 0.0123)
        self.assertIn(f"logged in, session held, seq in {state.next_incoming_seq - 1} "
                      f"out {state.next_outgoing_seq - 1}, ping 12.3 ms, 0 queued", line)
        # No balance_changed yet: the exchange's figure is not known (the account may hold older positions).
        self.assertTrue(line.endswith("0 open orders, exposure unknown"), line)

        self.factory.subscribe(100)
        self.market.flush()
        book = self.factory.books[100]
        offer = book.contracts[1001].best_offer
        assert offer is not None
        self.factory.order(100, 1001, seto_pb2.SIDE_BUY, 20000, offer.price, tif=seto_pb2.IMMEDIATE_OR_CANCEL)
        self.factory.order(100, 1001, seto_pb2.SIDE_BUY, 20000, 200)  # far below the market: stays open
        self.market.flush()
        bid, offer = book.contracts[1001].best_bid, book.contracts[1001].best_offer
        assert bid is not None and offer is not None
        demo = self.market.exchange.accounts.get("demo")
        assert demo is not None
        exposure = format_money(money(demo.exposure))  # the exchange's own figure
        line = status_line(self.factory, None)
        available = format_money(money(demo.available_balance))
        self.assertIn(f", 1 open order, available {available} of £1000.00, exposure {exposure},"
                      f" market 100 [1001 {format_price(bid.price)} / {format_price(offer.price)};", line)
        self.assertTrue(line.endswith(f"] (this run's position 1001 +£2.00 payoff, worst loss {exposure})"), line)
        self.connection.drop()
        line = status_line(self.factory, None)
        self.assertTrue(line.startswith("not connected, session held,"))
        self.assertIn(", 1 open order (1 unknown), ", line)  # the exchange may cancel it meanwhile
        self.assertIn(f", exposure {exposure} (last known), ", line)
        self.assertIn("market 100 [prices stale] (this run's position 1001 +£2.00 payoff, ", line)

    def test_orders_not_yet_accepted_are_pending_not_open(self) -> None:
        """Only the orders the exchange accepted are open; the rest, sent or queued, wait for its answer."""
        for price in (200, prices.ticks_above(200)[0]):
            self.factory.order(100, 1001, seto_pb2.SIDE_BUY, 20000, price)
        self.assertIn(", 0 open orders, 2 orders pending, ", status_line(self.factory, None))
        self.market.flush()
        self.assertIn(", 2 open orders, ", status_line(self.factory, None))
        self.assertNotIn("pending", status_line(self.factory, None))
        self.factory.order(100, 1001, seto_pb2.SIDE_BUY, 20000, 200, timeout=1).addErrback(lambda _: None)
        self.connection.pump.clientIO.getOutBuffer()  # sent; no answer comes
        self.market.clock.advance(1)
        self.assertIn(", 2 open orders, 1 order pending (1 unknown), ", status_line(self.factory, None))


    def test_every_interval_one_line_and_no_price_lines_unless_verbose(self) -> None:
        for verbose in (False, True):
            status = StatusService(self.factory, interval=10)
            demo = MarketMaker(self.factory, [100], interval=5, verbose=verbose)
            price_log = PriceLog()
            if verbose:
                self.factory.books.add_listener(price_log)
            with capturedLogs() as events:
                status.startService()
                demo.start()
                self.market.advance(25)
                status.stopService()
                demo.stop()
            if verbose:
                self.factory.books.del_listener(price_log)
            text = lines(events)
            statuses = [line for line in text if line.startswith("logged in")]
            self.assertEqual(len(statuses), 2)
            # The first line's ping is answered before the second.
            self.assertIn("no ping answer", statuses[0])
            self.assertIn("ping 0.0 ms", statuses[1])
            price_lines = [line for line in text if "best bid" in line]
            self.assertEqual(bool(price_lines), verbose, price_lines[:3])

    def test_a_status_line_that_fails_is_logged_and_the_next_still_comes(self) -> None:
        """The line runs on a LoopingCall: an error in it must not stop the status lines for good."""
        real = status_module.status_line
        calls = []

        def status_line_once_broken(factory: SmarketsClientFactory, rtt: float | None) -> str:
            calls.append(rtt)
            if len(calls) == 1:
                raise RuntimeError("a bug in the status line")
            return real(factory, rtt)

        self.patch(status_module, "status_line", status_line_once_broken)
        service = StatusService(self.factory, interval=10)
        with capturedLogs() as events:
            service.startService()
            self.market.advance(25)
            service.stopService()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len([line for line in lines(events) if line.startswith("logged in")]), 1)

    def test_price_lines_whatever_the_strategy_each_change_once(self) -> None:
        """A recorder (no strategy at all) with --verbose: a line per change of a contract's best prices."""
        self.factory.books.add_listener(PriceLog())
        with capturedLogs() as events:
            self.factory.subscribe(100)
            self.market.flush()
            book = self.factory.books[100]
            first = lines(events)
            self.factory.order(100, 1001, seto_pb2.SIDE_BUY, 20000, 200)  # far below the best bid: no change
            self.market.flush()
            offer = book.contracts[1001].best_offer
            assert offer is not None
            self.factory.order(100, 1001, seto_pb2.SIDE_BUY, 20000, prices.ticks_below(offer.price)[0])
            self.market.flush()
            self.connection.drop()
        text = lines([e for e in events if str(e.get("log_namespace")).startswith("smarkets_twisted.pricelog")])
        self.assertEqual(len(first), len(book.contracts))
        bid = book.contracts[1001].best_bid
        assert bid is not None
        offered = format_money(money(book.contracts[1001].depth(seto_pb2.SIDE_SELL)[0].quantity))
        self.assertEqual(text[len(first):], [
            f"market 100 contract 1001: best bid {format_price(bid.price)} x £2.00, best offer "
            f"{format_price(offer.price)} x {offered}",
            "market 100: prices stale until the next snapshot",
        ])

    def test_verbose_is_a_feature_of_the_service(self) -> None:
        for argv, logged in ((["--strategy", "none", "-v"], True), (["--strategy", "none"], False), (["-v"], True)):
            options = tap.Options()
            options.parseOptions(argv)
            factory = _client(tap.makeService(options))
            self.assertEqual(any(isinstance(listener, PriceLog) for listener in factory.books._listeners), logged)

    def test_no_reprs_of_the_factory(self) -> None:
        with capturedLogs() as events:
            self.factory.doStart()
            self.factory.doStop()
            self.connection.drop()
            self.market.connect(self.factory)
            self.market.flush()
        # The client's lines (the exchange's name iosim's fake addresses).
        client = [e for e in events if not str(e.get("log_namespace")).startswith("smarkets_twisted.exchange")]
        text = "\n".join(lines(client))
        self.assertIn("connected; resuming as demo", text)
        self.assertNotIn("<", text)
        self.assertNotIn("SessionState", text)


class AccountFiguresTests(SynchronousTestCase):
    """The account's figures are the exchange's: another client's orders, or an earlier run's, count in them."""

    def setUp(self) -> None:
        self.market = InMemoryExchange(accounts=two_accounts(), catalogue=markets())
        self.first, _ = self.market.client("alice", "alice-pw")
        self.market.flush()

    def assertExchangeFigures(self, factory: SmarketsClientFactory) -> str:
        alice = self.market.exchange.account("alice")
        line = status_line(factory, None)
        self.assertGreater(alice.exposure, 0)
        self.assertIn(f", available {format_money(money(alice.available_balance))} of £1000.00,"
                      f" exposure {format_money(money(alice.exposure))}", line)
        return line

    def test_another_clients_orders_count(self) -> None:
        self.first.order(MARKET, HOME, seto_pb2.SIDE_BUY, 20000, 2500)
        self.market.flush()
        second, _ = self.market.client("alice", "alice-pw")
        second.order(MARKET, HOME, seto_pb2.SIDE_BUY, 40000, 2000)
        self.market.flush()
        self.assertExchangeFigures(self.first)
        line = self.assertExchangeFigures(second)
        self.assertIn("(this run's worst loss £0.80)", line)  # its own order only, and said to be so

    def test_an_earlier_runs_orders_count(self) -> None:
        self.first.order(MARKET, HOME, seto_pb2.SIDE_BUY, 20000, 2500)
        self.market.flush()
        self.first.stop()
        self.market.flush()
        restarted, _ = self.market.client("alice", "alice-pw")
        self.market.flush()
        self.assertIn("exposure unknown", status_line(restarted, None))  # until the exchange reports a balance
        restarted.order(MARKET, HOME, seto_pb2.SIDE_BUY, 20000, 2000)
        self.market.flush()
        self.assertExchangeFigures(restarted)


class EmbeddedExchangeTests(SynchronousTestCase):
    def test_says_it_is_a_simulation_with_its_account_and_markets(self) -> None:
        reactor = MemoryReactorClock()
        service = EmbeddedExchangeService(reactor)
        with capturedLogs() as events:
            service.startService()
        service.stopService()
        text = "\n".join(lines(events))
        self.assertIn("SIMULATED exchange (not Smarkets, no real money) on ", text)
        self.assertIn("accounts demo (balance £1000.00)", text)
        self.assertIn("markets 100 ", text)
        self.assertNotIn("liquidity (", text)
        self.assertNotIn("<", text)


class TradeLogTests(SynchronousTestCase):
    """Orders and fills in words: side, payoff and risk in pounds, price in percent and odds, the end."""

    def setUp(self) -> None:
        self.market = InMemoryExchange(accounts=two_accounts(), catalogue=markets())
        self.alice, self.alice_connection = self.market.client("alice", "alice-pw")
        self.bob, _ = self.market.client("bob", "bob-pw")
        self.market.flush()
        self.alice.orders.add_listener(TradeLog())

    def order(self, client: SmarketsClientFactory, side: int, quantity: int, price: int = 2500,
              tif: int = seto_pb2.GOOD_TIL_CANCELLED) -> Any:
        d = client.order(MARKET, HOME, side, quantity, price, tif=tif)
        self.market.flush()
        return d

    def logged(self, action: Callable[[], object]) -> list[str]:
        with capturedLogs() as events:
            action()
            self.market.flush()
        return [line for line in lines(events) if line.startswith(("order", "an order"))]

    def test_ioc_filled(self) -> None:
        self.order(self.bob, seto_pb2.SIDE_SELL, 20000)
        text = self.logged(lambda: self.order(self.alice, seto_pb2.SIDE_BUY, 20000, tif=seto_pb2.IMMEDIATE_OR_CANCEL))
        order_id = next(iter(self.alice.orders)).order_id
        self.assertEqual(text, [
            f"order {order_id} accepted: buy £2.00 payoff of market {MARKET} contract {HOME} at 25.00% (4.0),"
            " immediate or cancel, risking £0.50",
            f"order {order_id} filled: £2.00 at an average 25.00% (4.0)",
        ])

    def test_filled_in_parts(self) -> None:
        placed = self.successResultOf(self.order(self.alice, seto_pb2.SIDE_BUY, 20000))
        text = self.logged(lambda: (self.order(self.bob, seto_pb2.SIDE_SELL, 5000),
                                    self.order(self.bob, seto_pb2.SIDE_SELL, 15000)))
        self.assertEqual(text, [
            f"order {placed.order_id}: bought £0.50 payoff at 25.00% (4.0) (£0.50 of £2.00 filled)",
            f"order {placed.order_id}: bought £1.50 payoff at 25.00% (4.0) (£2.00 of £2.00 filled)",
            f"order {placed.order_id} filled: £2.00 at an average 25.00% (4.0)",
        ])

    def test_ioc_with_nothing_to_match_expires_unfilled(self) -> None:
        text = self.logged(lambda: self.order(self.alice, seto_pb2.SIDE_SELL, 20000, tif=seto_pb2.IMMEDIATE_OR_CANCEL))
        self.assertTrue(text[-1].endswith("expired unfilled: nothing matched at once"), text)
        self.assertIn("sell £2.00 payoff", "\n".join(text))
        self.assertIn("risking £1.50", "\n".join(text))

    def test_partly_filled_then_cancelled(self) -> None:
        placed = self.successResultOf(self.order(self.alice, seto_pb2.SIDE_BUY, 20000))
        self.order(self.bob, seto_pb2.SIDE_SELL, 5000)

        def cancel() -> None:
            self.alice.cancel(placed.order_id)

        text = self.logged(cancel)
        self.assertEqual(text, [f"order {placed.order_id} partly filled (£0.50 of £2.00 at an average 25.00% (4.0))"
                                " then cancelled (member requested)"])

    def test_an_order_another_client_placed_during_this_run(self) -> None:
        """Not "placed before this run": another client of the account placed it while this one ran."""
        other, _ = self.market.client("alice", "alice-pw")
        self.market.flush()
        placed = self.successResultOf(self.order(other, seto_pb2.SIDE_BUY, 20000))
        text = self.logged(lambda: self.order(self.bob, seto_pb2.SIDE_SELL, 20000))
        self.assertEqual(text, [f"order {placed.order_id} (not placed by this client) filled: £2.00"
                                " at an average 25.00% (4.0)"])

    def test_refused(self) -> None:
        text = self.logged(lambda: self.failureResultOf(self.order(self.alice, seto_pb2.SIDE_BUY, 10**9, price=5000)))
        self.assertEqual(text, [f"an order (buy £100000.00 payoff of market {MARKET} contract {HOME} at 50.00% (2.0),"
                                " good till cancelled, risking £50000.00)"
                                " refused by the exchange (insufficient funds)"])

    def test_an_order_whose_answer_will_not_come_says_why(self) -> None:
        """Given up after it went out (timeout, cancel, lost session): it may be at the exchange."""

        def give_up() -> None:
            self.alice.order(MARKET, HOME, seto_pb2.SIDE_BUY, 20000, 2500, timeout=1).addErrback(lambda _: None)
            self.alice_connection.pump.clientIO.getOutBuffer()  # sent; no answer comes
            self.market.clock.advance(1)

        text = self.logged(give_up)
        self.assertEqual(text[0], "an order: fate unknown: no answer from the exchange in time;"
                                  " it may be at the exchange")

    def test_an_order_that_never_went_out_says_so(self) -> None:
        def never_sent() -> None:
            placed = self.alice.order(MARKET, HOME, seto_pb2.SIDE_BUY, 20000, 2500)
            placed.addErrback(lambda _: None)
            placed.cancel()

        self.alice.bucket.spend(10**6, self.market.clock.seconds())  # held back by the throttle
        text = self.logged(never_sent)
        self.assertEqual(text, [f"an order (buy £2.00 payoff of market {MARKET} contract {HOME} at 25.00% (4.0),"
                                " good till cancelled, risking £0.50) not sent: cancelled before it was sent"])


class TradeLogOfOrdersFromBeforeTests(SynchronousTestCase):
    """A restarted client hears, in the account replay, of orders an earlier run placed."""

    def setUp(self) -> None:
        self.market = InMemoryExchange(accounts=two_accounts(), catalogue=markets())
        earlier, _ = self.market.client("alice", "alice-pw")
        self.bob, _ = self.market.client("bob", "bob-pw")
        self.market.flush()
        self.ids = []
        for _ in range(2):
            placed = earlier.order(MARKET, HOME, seto_pb2.SIDE_BUY, 20000, 2500)
            self.market.flush()
            self.ids.append(self.successResultOf(placed).order_id)
        self.saved = earlier.account_sequence  # as the state file keeps it
        earlier.stop()
        self.market.flush()

    def restart(self) -> tuple[SmarketsClientFactory, list[str]]:
        """A new run from the saved account sequence, and what it logs of orders."""
        settings = ClientSettings(username="alice", password="alice-pw", account_sequence=self.saved)
        factory = SmarketsClientFactory(settings, self.market.clock)
        factory.orders.add_listener(TradeLog())
        with capturedLogs() as events:
            self.market.connect(factory)
            self.market.flush()
        return factory, [line for line in lines(events) if line.startswith("order")]

    def test_cancelled_while_down_is_said_once_and_counted_closed(self) -> None:
        first, second = self.ids
        self.bob.order(MARKET, HOME, seto_pb2.SIDE_SELL, 5000, 2500)  # partly fills the first
        self.market.flush()
        self.market.exchange.cancel_order("alice", first)
        self.market.exchange.cancel_order("alice", second)
        factory, text = self.restart()
        self.assertEqual(text, [
            f"order {first}: bought £0.50 payoff at 25.00% (4.0) (£0.50 of £2.00 filled)",
            f"order {first} (not placed by this client) is live: buy £2.00 payoff of market {MARKET} contract {HOME}"
            " at 25.00% (4.0), good till cancelled, risking £0.50",
            f"order {first} partly filled (£0.50 of £2.00 at an average 25.00% (4.0)) then cancelled"
            " (member requested)",
            f"order {second} (not placed by this client) cancelled: member requested",
        ])
        self.assertEqual(factory.orders.open(), [])
        order = factory.orders.get(second)
        assert order is not None
        self.assertEqual((order.state, order.adopted, order.market_id, order.price),
                         (OrderState.CANCELLED, True, MARKET, 2500))
        self.assertIn("0 open orders", status_line(factory, None))
        factory.stop()  # and a new session after it: the replay asks for later events only
        self.market.flush()
        with capturedLogs() as events:
            self.market.connect(factory)
            self.market.flush()
        self.assertEqual([line for line in lines(events) if line.startswith("order")], [])


class TradeLogOfVoidsTests(SynchronousTestCase):
    def test_an_order_voided_says_which_fills_stand(self) -> None:
        """The simulated exchange sends no order_voided: these are scripted, first heard of at their void."""
        handlers = HandlerRegistry()
        orders = Orders(handlers)
        orders.add_listener(TradeLog())
        with capturedLogs() as events:
            for order_id, quantity, executed in ((20, 15000, 5000), (21, 20000, 0)):
                handlers.dispatch("seto.order_voided", None, seto_pb2.OrderVoided(
                    order_id=order_id, quantity=quantity, source_quantity=20000, executed_quantity=executed,
                    executed_avg_price=2500, market_id=MARKET, contract_id=HOME, side=seto_pb2.SIDE_BUY,
                    orig_price=2500, account_sequence_64=order_id))
        self.assertEqual(lines(events), [
            "order 20 (not placed by this client) voided by the exchange; £0.50 filled at an average 25.00% (4.0)"
            " stands",
            "order 21 (not placed by this client) voided by the exchange: none of its fills stand",
        ])
