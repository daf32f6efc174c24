"""``twistd smarkets``: the client as a long-running service.

With ``--endpoint`` it connects to that exchange (``tls:stream.smarkets.com:3801``
for production); without, it starts an embedded simulated exchange on a
loopback port of its own and trades against it as ``demo``.  The password is
never taken from the command line (it would show in the process's argv):
``--password-file`` or the ``SMARKETS_PASSWORD`` environment variable.
"""

from __future__ import annotations

import configparser
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any, cast

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString, serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from smarkets_twisted.config import number_option, read_options
from smarkets_twisted.errors import ConfigurationError
from smarkets_twisted.exchange.accounts import default_accounts
from smarkets_twisted.exchange.catalogue import demo_catalogue
from smarkets_twisted.exchange.liquidity import LiquiditySimulator, with_liquidity_account
from smarkets_twisted.exchange.server import ExchangeFactory
from smarkets_twisted.exchange.service import Exchange
from smarkets_twisted.exchange.tap import describe_simulation
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.journal import Journal, JournalError, JournalService
from smarkets_twisted.pricelog import PriceLog
from smarkets_twisted.process import exit_after_stop, quiet_while_stopping
from smarkets_twisted.service import SmarketsClientService, address_of
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.state import StateFile, StateFileError
from smarkets_twisted.status import DEFAULT_STATUS_INTERVAL, StatusService
from smarkets_twisted.tradelog import TradeLog
from smarkets_twisted.trading.demo import MarketMaker
from smarkets_twisted.trading.strategy import Strategy

PASSWORD_VARIABLE = "SMARKETS_PASSWORD"

#: Market ids are uint64 on the wire.
_MARKET_IDS = range(1, 2**64)


#: ``--strategy none``: trade nothing, only subscribe to the markets (a recorder, with --journal).
RECORDER = "none"


class Options(usage.Options):
    """Command-line options of ``twistd smarkets``."""

    synopsis = "[--endpoint ENDPOINT] [--username NAME --password-file FILE] [--market ID ...] [--strategy M:F]"

    optParameters = [
        ["endpoint", "e", None, "Client endpoint string of the exchange. Default: an embedded simulated exchange."],
        ["username", "u", None, "Username (default with the embedded exchange: demo)."],
        ["password-file", "p", None, f"File whose first line is the password (or set {PASSWORD_VARIABLE})."],
        ["strategy", "s", None, "module:Name, a Strategy class or a callable of the factory; none: only subscribe"
                                " to the markets (a recorder). Default: the demo market maker."],
        ["interval", "i", 5.0, "Seconds between the demo market maker's quoting passes.",
         number_option("interval", float, 0, above=True)],
        ["request-timeout", None, 30.0, "Seconds before a request without an answer fails.",
         number_option("request-timeout", float, 0, above=True)],
        ["journal", "j", None, "Record every payload, both directions, as JSON lines in this file."],
        ["journal-rotate-mb", None, 64, "Rotate the journal when it reaches this many MiB.",
         number_option("journal-rotate-mb", int, 1)],
        ["state-file", None, None, "Keep the last account sequence here, so that a restart misses no fill."],
        ["status-interval", None, DEFAULT_STATUS_INTERVAL, "Seconds between status lines (0: none).",
         number_option("status-interval", float, 0)],
        ["config", None, None, "Read options from this ini file ([smarkets] section); the command line overrides it."],
    ]

    optFlags = [
        ["verbose", "v", "Log every change of the best prices (whatever the strategy), as well as the status line."],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["markets"] = []
        self.password: str | None = None
        self.strategy: Callable[[SmarketsClientFactory], object] | None = None
        self._markets_from_file = False
        #: The --state-file, and the account sequence it holds (None for a first start).
        self.state: StateFile | None = None
        self.account_sequence: int | None = None

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Read ``--config`` first, so that every other option on the command line overrides it."""
        argv = sys.argv[1:] if options is None else list(options)
        path = _config_argument(argv)
        if path is not None:
            self._read_config(path)
        super().parseOptions(argv)  # type: ignore[no-untyped-call]

    def _read_config(self, path: str) -> None:
        try:
            values = read_options(path)
        except ConfigurationError as e:
            raise usage.UsageError(str(e)) from None
        parameters = cast("list[list[Any]]", self.optParameters)
        coerce: dict[str, Callable[[str], object] | None] = {p[0]: p[4] if len(p) > 4 else None for p in parameters}
        flags = {str(flag[0]) for flag in cast("list[list[Any]]", self.optFlags)}
        for key, text in values.items():
            if key == "password":
                raise usage.UsageError(
                    f"configuration {path}: the password is never read from a file's options;"
                    f" give password-file or set {PASSWORD_VARIABLE}"
                )
            if key in ("market", "markets"):
                try:
                    self["markets"] = _market_ids(text)
                except usage.UsageError as e:
                    raise usage.UsageError(f"configuration {path}: {e}") from None
                self._markets_from_file = True
            elif key in flags:
                if text.lower() not in _BOOLEANS:
                    raise usage.UsageError(f"configuration {path}: {key} is yes or no, not {text!r}")
                self[key] = int(_BOOLEANS[text.lower()])
            elif key in coerce and key != "config":
                convert = coerce[key]
                try:
                    self[key] = text if convert is None else convert(text)
                except usage.UsageError as e:
                    raise usage.UsageError(f"configuration {path}: {e}") from None
            else:
                raise usage.UsageError(f"configuration {path}: unknown option {key!r}")

    def opt_market(self, market_ids: str) -> None:
        """Subscribe to this market, or these (100,200); repeatable. Default with the embedded exchange: all."""
        if self._markets_from_file:
            # The command line's markets replace the file's.
            self["markets"] = []
            self._markets_from_file = False
        self["markets"].extend(_market_ids(market_ids))

    opt_m = opt_market

    def postOptions(self) -> None:
        embedded = self["endpoint"] is None
        if not embedded:
            from twisted.internet import reactor

            try:
                clientFromString(reactor, self["endpoint"])  # type: ignore[no-untyped-call]
            except (ValueError, KeyError, TypeError, OSError) as e:
                # A trustRoots= directory that cannot be listed says why only in its original exception.
                detail = str(e) or str(getattr(e, "originalException", "")) or type(e).__name__
                raise usage.UsageError(f"bad --endpoint {self['endpoint']!r}: {detail}") from None
        if self["username"] is None:
            if not embedded:
                raise usage.UsageError("--username is needed with --endpoint")
            self["username"] = "demo"
        if not self["username"].strip():
            raise usage.UsageError("--username cannot be empty")
        if self["password-file"] is not None:
            try:
                with open(self["password-file"], encoding="utf-8") as f:
                    self.password = f.readline().rstrip("\r\n")
            except OSError as e:
                raise usage.UsageError(f"cannot read --password-file {self['password-file']}: {e.strerror}") from None
            if not self.password:
                raise usage.UsageError(f"--password-file {self['password-file']}: its first line is empty")
        else:
            self.password = os.environ.get(PASSWORD_VARIABLE)
        if self.password is None:
            if not embedded:
                raise usage.UsageError(f"give --password-file or set {PASSWORD_VARIABLE}")
            self.password = "demo"
        if embedded and not self["markets"]:
            self["markets"] = [market.id for market in demo_catalogue()]
        if self["strategy"] is not None and self["strategy"] != RECORDER:
            self.strategy = load_strategy(self["strategy"])
        # Files that cannot be used stop start-up here, with the usage message, not a traceback.
        if self["state-file"] is not None:
            if embedded:
                # Its account sequences start again at each run: a saved one would hide every new event.
                raise usage.UsageError("--state-file needs --endpoint: the embedded exchange starts afresh each run")
            _writable_directory("--state-file", self["state-file"])
            self.state = StateFile(self["state-file"], self["username"])
            try:
                self.account_sequence = self.state.load()
            except StateFileError as e:
                raise usage.UsageError(str(e)) from None
        if self["journal"] is not None:
            _writable_directory("--journal", self["journal"])


_BOOLEANS = configparser.ConfigParser.BOOLEAN_STATES


def _writable_directory(option: str, path: str) -> None:
    """A UsageError unless the file at ``path`` can be written (made, replaced, rotated) in its directory."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.access(directory, os.W_OK):
        raise usage.UsageError(f"cannot write {option} {path}: {directory} is not a writable directory")


def _market_ids(text: str) -> list[int]:
    """The market ids in ``100, 200`` (commas or spaces), or a UsageError naming the one that is not."""
    ids = []
    for item in text.replace(",", " ").split():
        try:
            market_id = int(item)
        except ValueError:
            market_id = 0
        if market_id not in _MARKET_IDS:
            raise usage.UsageError(f"--market takes market ids (whole numbers from 1), not {item!r}")
        ids.append(market_id)
    if not ids:
        raise usage.UsageError("--market takes market ids, not nothing")
    return ids


def _config_argument(argv: list[str]) -> str | None:
    """The value of the last ``--config`` in ``argv``, if any."""
    path = None
    for index, argument in enumerate(argv):
        if argument == "--":
            break
        if argument == "--config" and index + 1 < len(argv):
            path = argv[index + 1]
        elif argument.startswith("--config="):
            path = argument[len("--config=") :]
    return path


def load_strategy(spec: str) -> Callable[[SmarketsClientFactory], object]:
    """The callable ``module:Name`` names (mystrat.py in the current directory too); UsageError if none."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise usage.UsageError(f"--strategy takes module:callable, not {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        # As `python -m` does: mystrat.py in the current directory is importable.
        sys.path.insert(0, os.getcwd())
    try:
        strategy = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as e:
        raise usage.UsageError(f"cannot load --strategy {spec}: {e}") from None
    if not callable(strategy):
        raise usage.UsageError(f"--strategy {spec} is not callable")
    try:
        inspect.signature(strategy).bind(None)
    except TypeError as e:
        # Found now, in one line, rather than as a traceback once the service starts.
        raise usage.UsageError(f"--strategy {spec} cannot be called with the client factory alone: {e}") from None
    except ValueError:
        pass  # no signature to check (a builtin): it is called as it is
    return strategy  # type: ignore[no-any-return]


class EmbeddedExchangeService(Service):
    """A simulated exchange with liquidity on a loopback port chosen by the system."""

    log = Logger()

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.exchange = Exchange(reactor, with_liquidity_account(default_accounts()))
        self.liquidity = LiquiditySimulator(self.exchange, reactor)
        self.port: IListeningPort | None = None
        self._waiting: list[Deferred[IListeningPort]] = []

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        endpoint = serverFromString(self.reactor, "tcp:0:interface=127.0.0.1")  # type: ignore[no-untyped-call]
        factory = ExchangeFactory(self.exchange, self.reactor)
        factory.noisy = False
        endpoint.listen(factory).addCallbacks(self._listening, self._cannot_listen)
        self.liquidity.startService()

    def _cannot_listen(self, failure: Failure) -> None:
        self.log.critical("the embedded exchange cannot listen: {error}", error=failure.getErrorMessage())
        waiting, self._waiting = self._waiting, []
        for deferred in waiting:
            deferred.errback(failure)
        exit_after_stop(self.reactor)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        self.log.info("{description}", description=describe_simulation(self.exchange, port))
        waiting, self._waiting = self._waiting, []
        for deferred in waiting:
            deferred.callback(port)

    def listening(self) -> Deferred[IListeningPort]:
        """Fires with the listening port once it is bound."""
        deferred: Deferred[IListeningPort] = Deferred()
        if self.port is not None:
            deferred.callback(self.port)
        else:
            self._waiting.append(deferred)
        return deferred

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        self.liquidity.stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None


@implementer(IStreamClientEndpoint)
class EmbeddedExchangeEndpoint:
    """Connects to the embedded exchange's port, once it is listening."""

    def __init__(self, reactor: Any, exchange: EmbeddedExchangeService) -> None:
        self.reactor = reactor
        self.exchange = exchange

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        def to(port: IListeningPort) -> Deferred[Any]:
            address = port.getHost()
            return TCP4ClientEndpoint(self.reactor, "127.0.0.1", address.port).connect(  # type: ignore[attr-defined]
                protocolFactory
            )

        return self.exchange.listening().addCallback(to)


class StrategyService(Service):
    """Starts the strategy when the service starts, and stops it on stop.

    ``--strategy`` names a callable of the factory: a `Strategy` subclass is
    built and started; anything else is called, as it is.  Without it, the
    demo market maker runs.
    """

    log = Logger()

    def __init__(self, factory: SmarketsClientFactory, options: Options) -> None:
        self.factory = factory
        self.options = options
        self.strategy: Strategy | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        started: object = None
        if self.options["strategy"] == RECORDER:
            # No trading: subscribe to the markets (renewed by the factory), for --journal to record.
            self.factory.whenLoggedIn().addCallbacks(self._subscribe, lambda failure: None)
        elif self.options.strategy is not None:
            started = self.options.strategy(self.factory)
        else:
            if not self.options["markets"]:
                self.log.warn("no --market given: the demo strategy watches no market and will not trade")
            started = MarketMaker(self.factory, self.options["markets"], self.options["interval"],
                                  verbose=bool(self.options["verbose"]))
        if isinstance(started, Strategy):
            self.strategy = started
            started.start()

    def stopService(self) -> Deferred[None] | None:
        """Stop the strategy; the Deferred it may return (its orders cancelled) delays the logout."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self.strategy is not None:
            return self.strategy.stop()
        return None

    def _subscribe(self, protocol: object) -> None:
        for market_id in self.options["markets"]:
            self.factory.subscribe(market_id).addErrback(self._not_subscribed, market_id)

    def _not_subscribed(self, failure: Failure, market_id: int) -> None:
        self.log.warn("cannot subscribe to market {market}: {error}", market=market_id, error=failure.getErrorMessage())


class StopInOrder(MultiService):
    """Stops its services one after the other, the last started first, each once the one before has stopped.

    MultiService stops them all at once: the client would log out while the
    strategy's cancels are still on their way, leaving its orders resting.
    """

    log = Logger()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)  # type: ignore[no-untyped-call]
        stopped: Deferred[None] = succeed(None)
        for service in reversed(list(self)):
            stopped.addCallback(self._stop, service)
        return stopped

    def _stop(self, _: object, service: IService) -> Deferred[None]:
        return maybeDeferred(service.stopService).addErrback(
            lambda failure: self.log.failure("stopping {service}", failure, service=type(service).__name__))


def build_client(options: Options, clock: IReactorTime) -> SmarketsClientFactory:
    """The client factory the options describe, starting from its state file's sequence and saving to it."""
    settings = ClientSettings(
        username=options["username"],
        password=options.password,
        request_timeout=options["request-timeout"],
        account_sequence=options.account_sequence,
    )
    factory = SmarketsClientFactory(settings, clock)
    if options.state is not None:
        options.state.attach(factory)
    return factory


def makeService(options: Options) -> IService:
    """The client service, its strategy and, with no endpoint, an embedded exchange."""
    from twisted.internet import reactor

    top = MultiService()  # type: ignore[no-untyped-call]
    quiet_while_stopping(reactor)
    endpoint: IStreamClientEndpoint
    if options["endpoint"] is None:
        embedded = EmbeddedExchangeService(reactor)
        embedded.setServiceParent(top)  # type: ignore[no-untyped-call]
        endpoint = EmbeddedExchangeEndpoint(reactor, embedded)
    else:
        endpoint = clientFromString(reactor, options["endpoint"])  # type: ignore[no-untyped-call]
    factory = build_client(options, reactor)
    factory.orders.add_listener(TradeLog())
    if options["verbose"]:
        factory.books.add_listener(PriceLog())
    parent: MultiService = top
    if options["journal"] is not None:
        try:
            factory.journal = Journal(options["journal"], rotate_bytes=options["journal-rotate-mb"] * 1024 * 1024)
        except JournalError as e:
            raise usage.UsageError(str(e)) from None
        # The client stops (and logs out) before the journal is flushed and closed.
        parent = JournalService(factory.journal)
        parent.setServiceParent(top)  # type: ignore[no-untyped-call]
    # Stopped in order: the status line, the strategy (its orders cancelled), then the connection (logout).
    client = StopInOrder()  # type: ignore[no-untyped-call]
    client.setServiceParent(parent)  # type: ignore[no-untyped-call]
    address = "the embedded exchange" if options["endpoint"] is None else address_of(options["endpoint"])
    connection = SmarketsClientService(endpoint, factory, address=address)
    connection.on_refused = lambda error: exit_after_stop(reactor)
    connection.setServiceParent(client)  # type: ignore[no-untyped-call]
    StrategyService(factory, options).setServiceParent(client)  # type: ignore[no-untyped-call]
    if options["status-interval"] > 0:
        StatusService(factory, options["status-interval"]).setServiceParent(client)  # type: ignore[no-untyped-call]
    return top
