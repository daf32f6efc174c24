"""A log a person reads: the status line, no price line per change, no reprs."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.demo import DemoStrategy
from smarkets_twisted.exchange.accounts import default_accounts
from smarkets_twisted.exchange.liquidity import LiquiditySimulator, with_liquidity_account
from smarkets_twisted.status import StatusService, status_line
from smarkets_twisted.tap import EmbeddedExchangeService
from smarkets_twisted.testing import InMemoryExchange


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
        self.connection.drop()
        self.assertTrue(status_line(self.factory, None).startswith("not connected, session held,"))

    def test_every_interval_one_line_and_no_price_lines_unless_verbose(self) -> None:
        for verbose in (False, True):
            status = StatusService(self.factory, interval=10)
            demo = DemoStrategy(self.factory, [100], interval=5, verbose=verbose)
            with capturedLogs() as events:
                status.startService()
                demo.start()
                self.market.advance(25)
                status.stopService()
                demo.stop()
            text = lines(events)
            statuses = [line for line in text if line.startswith("logged in")]
            self.assertEqual(len(statuses), 2)
            # The first line's ping is answered before the second.
            self.assertIn("ping -", statuses[0])
            self.assertIn("ping 0.0 ms", statuses[1])
            price_lines = [line for line in text if "best bid" in line]
            self.assertEqual(bool(price_lines), verbose, price_lines[:3])

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
