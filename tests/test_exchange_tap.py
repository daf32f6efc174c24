"""``twistd smarkets-exchange``: options, bad files at start-up, the service, the plugin, the liquidity bot."""

from __future__ import annotations

import json
import select
import socket

from twisted.application.service import IServiceMaker, MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smarkets_twisted.exchange import tap
from smarkets_twisted.exchange.accounts import default_accounts
from smarkets_twisted.exchange.liquidity import BOT_USERNAME, LiquiditySimulator, with_liquidity_account
from smarkets_twisted.exchange.service import Exchange
from smarkets_twisted.proto import seto_pb2


class OptionsTests(SynchronousTestCase):
    def write(self, content: object) -> str:
        path = FilePath(self.mktemp())
        path.setContent(content if isinstance(content, bytes) else json.dumps(content).encode())
        return path.path

    def parse(self, *argv: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        options = self.parse()
        self.assertEqual(options["endpoint"], "tcp:3701:interface=127.0.0.1")
        self.assertTrue(options["liquidity"])
        self.assertIsNotNone(options.accounts.get("demo"))
        self.assertIsNotNone(options.catalogue.market(100))

    def test_files(self) -> None:
        accounts = self.write({"accounts": [{"username": "ann", "password": "pw", "balance": "50.00"}]})
        catalogue = self.write({"markets": [{"id": 7, "name": "M", "state": "live",
                                             "contracts": [{"id": 71, "name": "A"}, {"id": 72, "name": "B"}]}]})
        options = self.parse("--accounts", accounts, "--catalogue", catalogue, "--no-liquidity",
                             "--endpoint", "tcp:0:interface=127.0.0.1")
        self.assertEqual(options.accounts.get("ann").balance, 500_000)  # type: ignore[union-attr]
        self.assertEqual([market.id for market in options.catalogue], [7])
        self.assertFalse(options["liquidity"])

    def test_bad_accounts_file_names_the_file(self) -> None:
        path = self.write(b"{not json")
        error = self.assertRaises(usage.UsageError, self.parse, "--accounts", path)
        self.assertIn(path, str(error))
        self.assertIn("not valid JSON", str(error))

    def test_missing_catalogue_file_names_the_file(self) -> None:
        path = self.mktemp()
        error = self.assertRaises(usage.UsageError, self.parse, "--catalogue", path)
        self.assertIn(path, str(error))
        self.assertIn("cannot read", str(error))

    def test_bad_catalogue_content(self) -> None:
        path = self.write({"markets": [{"id": 7, "name": "M", "state": "sideways", "contracts": []}]})
        error = self.assertRaises(usage.UsageError, self.parse, "--catalogue", path)
        self.assertIn(path, str(error))
        self.assertIn("sideways", str(error))

    def test_bad_endpoint(self) -> None:
        error = self.assertRaises(usage.UsageError, self.parse, "--endpoint", "carrier-pigeon:3")
        self.assertIn("carrier-pigeon", str(error))

    def test_both_liquidity_flags(self) -> None:
        self.assertRaises(usage.UsageError, self.parse, "--liquidity", "--no-liquidity")


class MakeServiceTests(SynchronousTestCase):
    def test_service_listens_on_the_endpoint(self) -> None:
        options = tap.Options()
        options.parseOptions(["--no-liquidity", "--endpoint", "tcp:0:interface=127.0.0.1"])
        service = tap.makeService(options)
        self.assertIsInstance(service, MultiService)
        children = list(service)  # type: ignore[call-overload]
        self.assertEqual([type(child) for child in children], [tap.ListenerService])

    def test_liquidity_adds_the_bot(self) -> None:
        options = tap.Options()
        options.parseOptions(["--endpoint", "tcp:0:interface=127.0.0.1"])
        children = list(tap.makeService(options))  # type: ignore[call-overload]
        self.assertEqual([type(child) for child in children], [tap.ListenerService, LiquiditySimulator])

    def test_plugin_is_found(self) -> None:
        import twisted.plugins

        names = {plugin.tapname: plugin for plugin in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertIn("smarkets-exchange", names)
        self.assertEqual(names["smarkets-exchange"].options, tap.Options)


class BannerTests(TestCase):
    def test_says_it_is_a_simulation_with_its_accounts_and_markets_and_no_reprs(self) -> Deferred[None]:
        options = tap.Options()
        options.parseOptions(["--endpoint", "tcp:0:interface=127.0.0.1"])
        service = tap.makeService(options)
        with capturedLogs() as events:
            service.startService()
        self.addCleanup(service.stopService)
        text = "\n".join(formatEvent(event) or "" for event in events)
        self.assertIn("SIMULATED exchange (not Smarkets, no real money) on 127.0.0.1:", text)
        self.assertIn("accounts demo (balance £1000.00)", text)
        self.assertIn("markets 100 ", text)
        self.assertIn("a liquidity bot trades in them", text)
        self.assertNotIn("object at 0x", text)
        self.assertNotIn("Starting factory", text)
        self.assertNotIn("any price", text)
        return succeed(None)

    def test_says_when_it_takes_any_price(self) -> Deferred[None]:
        """--any-price changes what it accepts: a person reading the log must know."""
        options = tap.Options()
        options.parseOptions(["--endpoint", "tcp:0:interface=127.0.0.1", "--any-price", "--no-liquidity"])
        service = tap.makeService(options)
        with capturedLogs() as events:
            service.startService()
        self.addCleanup(service.stopService)
        text = "\n".join(formatEvent(event) or "" for event in events)
        self.assertRegex(text, r"markets 100 .*; any price from 1 to 9999, not only the ticks \(--any-price\)$")
        return succeed(None)


class LiquidityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.exchange = Exchange(self.clock, with_liquidity_account(default_accounts()))
        self.bot = LiquiditySimulator(self.exchange, self.clock, interval=1.0, levels=2, seed=1)

    def test_bot_account_is_added_once(self) -> None:
        accounts = with_liquidity_account(default_accounts())
        self.assertIsNotNone(accounts.get(BOT_USERNAME))
        self.assertIs(with_liquidity_account(accounts), accounts)
        self.assertIsNone(accounts.authenticate(BOT_USERNAME, ""))

    def test_quotes_both_sides_of_trading_markets(self) -> None:
        self.bot.startService()
        self.addCleanup(self.bot.stopService)
        for market in self.exchange.catalogue:
            book = self.exchange.book(market.id)
            assert book is not None
            for contract in book.contracts:
                trading = market.state in (seto_pb2.MARKET_STATE_OPEN, seto_pb2.MARKET_STATE_LIVE)
                self.assertEqual((len(contract.bids), len(contract.offers)), (2, 2) if trading else (0, 0))
                if trading:
                    self.assertLess(contract.bids[0].price, contract.offers[0].price)

    def test_quotes_move_on_the_clock(self) -> None:
        self.bot.startService()
        self.addCleanup(self.bot.stopService)
        seen = set()
        for _ in range(20):
            self.clock.advance(1.0)
            seen.add(self.bot.fair[1001])
            self.assertEqual(len(self.exchange.open_orders(BOT_USERNAME)), 2 * 2 * 5)
        self.assertGreater(len(seen), 1)

    def test_halted_market_is_not_quoted(self) -> None:
        self.bot.startService()
        self.addCleanup(self.bot.stopService)
        self.exchange.halt(200)
        self.clock.advance(1.0)
        self.assertEqual(self.exchange.open_orders(BOT_USERNAME, 200), [])

    def test_stop(self) -> None:
        self.bot.startService()
        self.bot.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_missing_bot_account_fails_at_start(self) -> None:
        exchange = Exchange(self.clock)
        self.assertRaises(KeyError, LiquiditySimulator(exchange, self.clock).startService)


class BacklogTests(TestCase):
    """The listening socket queues a burst of connects that arrive before any is accepted."""

    BURST = 200

    def listen(self, *argv: str) -> Deferred[None]:
        options = tap.Options()
        options.parseOptions(["--no-liquidity", "--endpoint", "tcp:0:interface=127.0.0.1", *argv])
        (listener,) = list(tap.makeService(options))  # type: ignore[call-overload]
        listening: Deferred[IListeningPort] = listener.endpoint.listen(Factory.forProtocol(Protocol))

        def listened(port: IListeningPort) -> Deferred[None]:
            self.addCleanup(port.stopListening)
            self.port = port.getHost().port  # type: ignore[attr-defined]
            return succeed(None)

        return listening.addCallback(listened)

    def connected_of_a_burst(self) -> int:
        """Connect BURST sockets without letting the reactor accept any; count those the kernel took."""
        sockets = []
        for _ in range(self.BURST):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.addCleanup(client.close)
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", self.port))
            sockets.append(client)
        poller = select.poll()
        for client in sockets:
            poller.register(client, select.POLLOUT)
        # Waits for the kernel's handshakes on loopback, not for the exchange:
        # the reactor does not run (nothing is accepted) until this returns.
        connected: set[int] = set()
        for _ in range(5):
            connected |= {fd for fd, events in poller.poll(200) if events & select.POLLOUT}
            if len(connected) == self.BURST:
                break
        return len(connected)

    def test_default_backlog_takes_a_burst(self) -> Deferred[None]:
        return self.listen().addCallback(lambda _: self.assertEqual(self.connected_of_a_burst(), self.BURST))

    def test_backlog_option(self) -> Deferred[None]:
        return self.listen("--backlog", "20").addCallback(
            lambda _: self.assertLess(self.connected_of_a_burst(), self.BURST)
        )

    def test_backlog_must_be_positive(self) -> None:
        for value in ("0", "abc"):
            with self.assertRaises(usage.UsageError) as caught:
                tap.Options().parseOptions(["--backlog", value])
            self.assertEqual(str(caught.exception), f"--backlog takes a whole number of at least 1, not {value!r}")
