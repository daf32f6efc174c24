"""`twistd smarkets` and SmarketsClientService over real loopback TCP and TLS."""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.application.service import IService
from twisted.internet import defer, reactor
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from smarkets_twisted import errors, tap
from smarkets_twisted.exchange.accounts import default_accounts
from smarkets_twisted.exchange.liquidity import LiquiditySimulator, with_liquidity_account
from smarkets_twisted.exchange.server import ExchangeFactory
from smarkets_twisted.exchange.service import Exchange, ExchangeSettings
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.service import SmarketsClientService
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.trading.orders import Order, OrderListener
from tests.test_journal import _client
from tests.test_state import ROOT, _Child


def fast_retry(attempt: int) -> float:
    return 0.05


class OptionsTests(SynchronousTestCase):
    def parse(self, *argv: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def test_embedded_defaults_to_demo_account_and_markets(self) -> None:
        options = self.parse()
        self.assertIsNone(options["endpoint"])
        self.assertEqual((options["username"], options.password), ("demo", "demo"))
        self.assertTrue(options["markets"])

    def test_password_comes_from_a_file_never_argv(self) -> None:
        path = Path(self.mktemp())
        path.write_text("s3cret-pw\nignored\n")
        options = self.parse("--endpoint", "tcp:127.0.0.1:1", "--username", "me", "--password-file", str(path))
        self.assertEqual(options.password, "s3cret-pw")
        self.assertRaises(usage.UsageError, self.parse, "--password", "x")

    def test_password_from_environment(self) -> None:
        os.environ[tap.PASSWORD_VARIABLE] = "from-env"
        self.addCleanup(os.environ.pop, tap.PASSWORD_VARIABLE)
        self.assertEqual(self.parse("-e", "tcp:127.0.0.1:1", "-u", "me").password, "from-env")

    def test_real_endpoint_needs_credentials(self) -> None:
        os.environ.pop(tap.PASSWORD_VARIABLE, None)
        self.assertRaises(usage.UsageError, self.parse, "--endpoint", "tcp:127.0.0.1:1")
        self.assertRaises(usage.UsageError, self.parse, "--endpoint", "tcp:127.0.0.1:1", "--username", "me")
        self.assertRaises(usage.UsageError, self.parse, "-e", "tcp:127.0.0.1:1", "-u", "me", "-p", "/nonexistent")

    def test_markets_and_strategy(self) -> None:
        options = self.parse("--market", "100", "-m", "200", "--strategy", "tests.test_client_service:fast_retry")
        self.assertEqual(options["markets"], [100, 200])
        self.assertIs(options.strategy, fast_retry)
        self.assertRaises(usage.UsageError, self.parse, "--market", "x")
        self.assertRaises(usage.UsageError, self.parse, "--strategy", "nomodule")
        self.assertRaises(usage.UsageError, self.parse, "--strategy", "tests.nothing_here:f")

    def test_bad_values_are_one_line_naming_the_option(self) -> None:
        cases = [
            (("--interval", "-1"), "--interval takes a number above 0, not '-1'"),
            (("--interval", "0"), "--interval takes a number above 0"),
            (("--interval", "abc"), "--interval takes a number above 0, not 'abc'"),
            (("--interval", "nan"), "--interval"),
            (("--request-timeout", "0"), "--request-timeout takes a number above 0"),
            (("--status-interval", "-5"), "--status-interval takes a number of at least 0, not '-5'"),
            (("--journal-rotate-mb", "0"), "--journal-rotate-mb takes a whole number of at least 1, not '0'"),
            (("--market", "-5"), "--market takes market ids (whole numbers from 1), not '-5'"),
            (("--market", str(2**64)), "--market takes market ids"),
            (("--endpoint", "bogus:foo", "-u", "me"), "bad --endpoint 'bogus:foo': Unknown endpoint type: 'bogus'"),
            (("--endpoint", "tls:h:3801:trustRoots=/nonexistent", "-u", "me"),
             "bad --endpoint 'tls:h:3801:trustRoots=/nonexistent': [Errno 2] No such file or directory"),
        ]
        empty = Path(self.mktemp())
        empty.write_text("\n")
        cases += [
            (("--endpoint", "tcp:h:1", "--username", ""), "--username cannot be empty"),
            (("--endpoint", "tcp:h:1", "-u", "me", "-p", str(empty)),
             f"--password-file {empty}: its first line is empty"),
            (("--endpoint", "tcp:h:1", "-u", "me", "--state-file", "/nonexistent/dir/state"),
             "cannot write --state-file /nonexistent/dir/state: /nonexistent/dir is not a writable directory"),
        ]
        os.environ[tap.PASSWORD_VARIABLE] = "pw"
        self.addCleanup(os.environ.pop, tap.PASSWORD_VARIABLE)
        for argv, words in cases:
            with self.assertRaises(usage.UsageError, msg=argv) as caught:
                self.parse(*argv)
            self.assertIn(words, str(caught.exception))
        self.assertEqual(self.parse("--status-interval", "0")["status-interval"], 0)

    def test_markets_separated_by_commas_as_in_the_config_file(self) -> None:
        self.assertEqual(self.parse("--market", "100,200", "-m", "300")["markets"], [100, 200, 300])

    def test_make_service_builds_client_and_embedded_exchange(self) -> None:
        service = tap.makeService(self.parse())
        self.assertTrue(IService.providedBy(service))
        self.assertEqual([type(child).__name__ for child in service], ["EmbeddedExchangeService", "StopInOrder"])
        client = list(service)[1]  # type: ignore[call-overload]
        # Stopped last started first: the status line, the strategy (its orders cancelled), the logout.
        self.assertEqual([type(child).__name__ for child in client],
                         ["SmarketsClientService", "StrategyService", "StatusService"])


class DemoStopTests(TestCase):
    """Stopping `twistd smarkets` with the demo: its orders cancelled, answered, then the logout."""

    timeout = 30

    @defer.inlineCallbacks
    def test_stopping_cancels_the_demo_orders_before_the_logout(self) -> Any:
        exchange = Exchange(reactor, with_liquidity_account(default_accounts()))
        liquidity = LiquiditySimulator(exchange, reactor, interval=0.05)
        liquidity.startService()
        self.addCleanup(liquidity.stopService)
        port: IListeningPort = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
            ExchangeFactory(exchange, reactor))
        self.addCleanup(port.stopListening)
        os.environ[tap.PASSWORD_VARIABLE] = "demo"
        self.addCleanup(os.environ.pop, tap.PASSWORD_VARIABLE)
        options = tap.Options()
        options.parseOptions(["--endpoint", f"tcp:127.0.0.1:{port.getHost().port}", "--username", "demo",  # type: ignore[attr-defined]
                              "--market", "100", "--interval", "0.05", "--status-interval", "0"])
        service = tap.makeService(options)
        factory = _client(service)
        quoting: defer.Deferred[None] = defer.Deferred()

        class Quoting(OrderListener):
            def order_changed(self, order: Order) -> None:
                # Both sides of the three contracts, and the maker moving them.
                if len(factory.orders) > 12 and not quoting.called:
                    quoting.callback(None)

        factory.orders.add_listener(Quoting())
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        service.startService()
        yield quoting
        self.assertTrue(exchange.open_orders("demo"))
        yield service.stopService()
        self.assertEqual(exchange.open_orders("demo"), [])
        lines = [str(formatEvent(event)) for event in events]
        cancelling = next(i for i, line in enumerate(lines) if line.startswith("stopping: cancelling"))
        closed = lines.index("stopping: every order of the market maker is closed")
        self.assertLess(cancelling, closed)
        self.assertLess(closed, lines.index("logged out"))


class DemoStopProcessTests(TestCase):
    """The same with two processes, as a user runs them: `twistd smarkets-exchange` and `twistd smarkets`."""

    timeout = 60

    def spawn(self, *argv: str, pattern: str) -> _Child:
        child = _Child(pattern)
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        (directory / "pw").write_text("demo\n")
        code = "from twisted.scripts.twistd import run; run()"
        transport = reactor.spawnProcess(child, sys.executable, [sys.executable, "-c", code, "-n", "--pidfile=", *argv],
                                         env=dict(os.environ, PYTHONPATH=ROOT), path=str(directory))
        self.addCleanup(lambda: transport.signalProcess("KILL") if transport.pid else None)
        return child

    @defer.inlineCallbacks
    def test_stopping_the_client_process_leaves_no_order_on_the_exchange_process(self) -> Any:
        exchange = self.spawn("smarkets-exchange", "--endpoint", "tcp:0:interface=127.0.0.1",
                              pattern=r"SIMULATED exchange .* on 127\.0\.0\.1:\d+")
        yield exchange.until(lambda lines: bool(lines))
        port = int(exchange.lines[0].rsplit(":", 1)[1])
        client = self.spawn("smarkets", "--endpoint", f"tcp:127.0.0.1:{port}", "--username", "demo",
                            "--password-file", "pw", "--market", "100", "--interval", "0.2", "--status-interval", "0",
                            pattern=r"order \d+ accepted|stopping: .*|logged out$")
        yield client.until(lambda lines: len(lines) >= 12)
        client.transport.signalProcess("INT")
        yield client.ended
        said = [line for line in client.lines if not line.startswith("order")]
        self.assertEqual(said[1:], ["stopping: every order of the market maker is closed", "logged out"])
        self.assertRegex(said[0], r"^stopping: cancelling \d+ orders before the logout$")

        # What the exchange still holds for demo: cancel it all, and count.
        checker = SmarketsClientFactory(ClientSettings(username="demo", password="demo"), reactor)
        cancelled: list[int] = []
        checker.add_handler("seto.order_cancelled", lambda message: cancelled.append(message.order_id))
        yield clientFromString(reactor, f"tcp:127.0.0.1:{port}").connect(checker)
        yield checker.whenLoggedIn()
        yield checker.cancel_all(100)
        yield checker.ping()  # after the cancellations, if any
        yield checker.logout(timeout=5)
        self.assertEqual(cancelled, [])
        exchange.transport.signalProcess("TERM")
        yield exchange.ended


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 'localhost' (key and cert in one PEM) and a CA dir trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir()
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    server_pem = directory / "server.pem"
    server_pem.write_bytes(key_pem + cert_pem)
    roots = directory / "roots"
    roots.mkdir()
    (roots / "ca.pem").write_bytes(cert_pem)
    return server_pem, roots


class LoopbackTests(TestCase):
    """The client service against the simulated exchange on real sockets."""

    timeout = 30

    @defer.inlineCallbacks
    def listen(self, description: str) -> Any:
        self.exchange = Exchange(reactor, settings=ExchangeSettings(any_price=True))  # round-figure prices
        port: IListeningPort = yield serverFromString(reactor, description).listen(
            ExchangeFactory(self.exchange, reactor)
        )
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [self.exchange.registry.end(s) for s in list(self.exchange.registry)])
        return port.getHost().port

    def start_client(self, endpoint_description: str) -> SmarketsClientFactory:
        factory = SmarketsClientFactory(ClientSettings(username="demo", password="demo"), reactor)
        service = SmarketsClientService(clientFromString(reactor, endpoint_description), factory, retry=fast_retry)
        service.startService()
        self.addCleanup(service.stopService)
        return factory

    @defer.inlineCallbacks
    def test_tcp_login_order_and_resume_after_a_dropped_connection(self) -> Any:
        port = yield self.listen("tcp:0:interface=127.0.0.1")
        factory = self.start_client(f"tcp:127.0.0.1:{port}")
        protocol = yield factory.whenLoggedIn()
        session_id = factory.state.session_id
        accepted = yield factory.order(100, 1001, seto_pb2.SIDE_BUY, 10000, 2000)
        self.assertTrue(accepted.order_id)

        # The network fails with an order in flight: the service reconnects and resumes.
        in_flight = factory.order(100, 1001, seto_pb2.SIDE_BUY, 10000, 2100)
        lost: defer.Deferred[None] = defer.Deferred()
        connection_lost = protocol.connectionLost
        protocol.connectionLost = lambda reason: (connection_lost(reason), lost.callback(None))
        protocol.transport.abortConnection()
        yield lost
        resumed = yield factory.whenLoggedIn()
        self.assertIsNot(resumed, protocol)
        self.assertTrue(resumed.resuming)
        self.assertEqual(factory.state.session_id, session_id)
        second = yield in_flight
        self.assertNotEqual(second.order_id, accepted.order_id)
        mine = [o.price for o in self.exchange.engine.open_orders(self.exchange.accounts.get("demo"), 100)]
        self.assertEqual(sorted(mine), [2000, 2100])  # each order acted on exactly once

        rtt = yield factory.ping()
        self.assertGreaterEqual(rtt, 0.0)

    @defer.inlineCallbacks
    def test_tls_with_hostname_verification(self) -> Any:
        server_pem, roots = self_signed_certificate(Path(self.mktemp()))
        port = yield self.listen(f"ssl:0:interface=127.0.0.1:privateKey={server_pem}")
        factory = self.start_client(f"tls:localhost:{port}:trustRoots={roots}")
        protocol = yield factory.whenLoggedIn()
        self.assertIsNotNone(protocol.transport.getPeerCertificate())
        cancelled = yield factory.cancel_all()
        self.assertIsNotNone(cancelled)

    @defer.inlineCallbacks
    def test_tls_refuses_a_certificate_for_another_host(self) -> Any:
        server_pem, roots = self_signed_certificate(Path(self.mktemp()))
        port = yield self.listen(f"ssl:0:interface=127.0.0.1:privateKey={server_pem}")
        factory = SmarketsClientFactory(ClientSettings(username="demo", password="demo"), reactor)
        # The certificate names localhost; asking for 127.0.0.1 must fail verification.
        protocol = yield clientFromString(reactor, f"tls:127.0.0.1:{port}:trustRoots={roots}").connect(factory)
        with self.assertRaises(errors.TLSVerificationFailed):
            yield protocol.login()
        self.assertEqual(len(self.exchange.registry), 0)

    @defer.inlineCallbacks
    def test_bad_password_stops_retrying(self) -> Any:
        port = yield self.listen("tcp:0:interface=127.0.0.1")
        factory = SmarketsClientFactory(ClientSettings(username="demo", password="wrong"), reactor)
        service = SmarketsClientService(clientFromString(reactor, f"tcp:127.0.0.1:{port}"), factory,
                                        retry=fast_retry)
        service.startService()
        self.addCleanup(service.stopService)
        with self.assertRaises(errors.LoginError) as caught:
            yield factory.whenLoggedIn()
        self.assertEqual(caught.exception.reason_name, "LOGOUT_UNAUTHORISED")
        self.assertFalse(service.connections.running)
        self.assertEqual(len(self.exchange.registry), 0)
