"""``twistd smarkets``: the client as a long-running service.

With ``--endpoint`` it connects to that exchange (``tls:stream.smarkets.com:3801``
for production); without, it starts an embedded simulated exchange on a
loopback port of its own and trades against it as ``demo``.  The password is
never taken from the command line (it would show in the process's argv):
``--password-file`` or the ``SMARKETS_PASSWORD`` environment variable.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any, cast

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python import usage

from smarkets_twisted.config import number_option, read_options
from smarkets_twisted.errors import ConfigurationError
from smarkets_twisted.exchange.catalogue import demo_catalogue
from smarkets_twisted.exchange.embedded import EmbeddedExchangeEndpoint, EmbeddedExchangeService
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.journal import DEFAULT_ROTATE_BYTES, Journal, JournalError, JournalService
from smarkets_twisted.pricelog import PriceLog
from smarkets_twisted.process import daemonised, exit_after_stop, quiet_while_stopping, usage_error_in_one_line
from smarkets_twisted.service import SmarketsClientService, address_of
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.state import StateFile, StateFileError
from smarkets_twisted.status import DEFAULT_STATUS_INTERVAL, StatusService
from smarkets_twisted.strategies import RECORDER, StrategyFactory, StrategyService, load_strategy, subscribe_only
from smarkets_twisted.tradelog import TradeLog
from smarkets_twisted.trading.demo import MarketMaker

PASSWORD_VARIABLE = "SMARKETS_PASSWORD"

#: --journal-rotate-mb counts these.
MIB = 1024 * 1024

_log = Logger()

#: Market ids are uint64 on the wire.
_MARKET_IDS = range(1, 2**64)


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
        ["journal-rotate-mb", None, DEFAULT_ROTATE_BYTES // MIB, "Rotate the journal when it reaches this many MiB.",
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
        self.strategy: StrategyFactory | None = None
        self._markets_from_file = False
        #: The --state-file, and the account sequence it holds (None for a first start).
        self.state: StateFile | None = None
        self.account_sequence: int | None = None

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Read ``--config`` first, so that every other option on the command line overrides it."""
        argv = sys.argv[1:] if options is None else list(options)
        with usage_error_in_one_line(self):
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
        # Files that cannot be used stop start-up here, in one line, not a traceback.
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


def _strategy(options: Options) -> tuple[StrategyFactory, str]:
    """What builds the strategy the options name, and its name for the log: the user's, the recorder or the demo."""
    if options["strategy"] == RECORDER:
        return partial(subscribe_only, market_ids=options["markets"]), "the recorder (--strategy none)"
    markets, interval, verbose = options["markets"], options["interval"], bool(options["verbose"])
    if options.strategy is not None:
        user = options.strategy

        def subscribed(factory: SmarketsClientFactory) -> object:
            # --market says what to subscribe to, whatever the strategy: it finds them in factory.subscriptions.
            subscribe_only(factory, markets)
            return user(factory)

        return subscribed, f"--strategy {options['strategy']}"

    def demo(factory: SmarketsClientFactory) -> MarketMaker:
        if not markets:
            _log.warn("no --market given: the demo strategy watches no market and will not trade")
        return MarketMaker(factory, markets, interval, verbose=verbose)

    return demo, "the demo market maker"


def makeService(options: Options) -> IService:
    """The client service, its strategy and, with no endpoint, an embedded exchange."""
    from twisted.internet import reactor

    top = MultiService()  # type: ignore[no-untyped-call]
    quiet_while_stopping(reactor)
    endpoint: IStreamClientEndpoint
    if options["endpoint"] is None:
        embedded = EmbeddedExchangeService(reactor, daemonised(options))
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
        with usage_error_in_one_line(options):
            try:
                factory.journal = Journal(options["journal"], rotate_bytes=options["journal-rotate-mb"] * MIB)
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
    build, name = _strategy(options)
    strategy = StrategyService(factory, build, name)
    strategy.on_failure = lambda error: exit_after_stop(reactor)
    strategy.setServiceParent(client)  # type: ignore[no-untyped-call]
    if options["status-interval"] > 0:
        StatusService(factory, options["status-interval"]).setServiceParent(client)  # type: ignore[no-untyped-call]
    return top
