"""``twistd smarkets-exchange``: the simulated exchange as a service.

Options are checked, and the accounts and catalogue files read, before the
service is made, so that a bad file stops start-up with a message naming the
file and the problem.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorTime, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from smarkets_twisted.config import number_option
from smarkets_twisted.errors import ConfigurationError, SmarketsError
from smarkets_twisted.exchange.accounts import Accounts, default_accounts, load_accounts
from smarkets_twisted.exchange.catalogue import Catalogue, demo_catalogue, load_catalogue
from smarkets_twisted.exchange.liquidity import BOT_USERNAME, LiquiditySimulator, with_liquidity_account
from smarkets_twisted.exchange.server import ExchangeFactory
from smarkets_twisted.exchange.service import Exchange, ExchangeSettings
from smarkets_twisted.process import daemonised, exit_after_stop, quiet_while_stopping, said, usage_error_in_one_line
from smarkets_twisted.trading.prices import format_money, money

#: Loopback only: the simulated exchange has no business on a public interface.
DEFAULT_ENDPOINT = "tcp:3701:interface=127.0.0.1"

#: Connections the kernel queues before the exchange accepts them.  Twisted's
#: default of 50 left a burst of 200 connects partly unaccepted; the kernel
#: caps it at net.core.somaxconn (4096 on current Linux).
DEFAULT_BACKLOG = 1024


def with_backlog(description: str, backlog: int) -> str:
    """The endpoint description with ``backlog=`` added, unless it names its own."""
    if any(part.startswith("backlog=") for part in description.split(":")[1:]):
        return description
    return f"{description}:backlog={backlog}"


class Options(usage.Options):
    """Command-line options of ``twistd smarkets-exchange``."""

    synopsis = (
        "[--endpoint ENDPOINT] [--backlog N] [--accounts FILE] [--catalogue FILE] [--liquidity | --no-liquidity]"
        " [--any-price]"
    )

    optParameters = [
        ["endpoint", "e", DEFAULT_ENDPOINT, "Server endpoint string to listen on."],
        ["backlog", None, DEFAULT_BACKLOG, "Connections queued before they are accepted (unless --endpoint "
         "names a backlog=).", number_option("backlog", int, 1)],
        ["accounts", "a", None, "Accounts file (JSON). Default: a demo/demo account with 1000.00."],
        ["catalogue", "c", None, "Catalogue file (JSON). Default: a demo event with two markets."],
    ]

    optFlags = [
        ["liquidity", None, "Run the liquidity simulator (the default)."],
        ["no-liquidity", None, "Do not run the liquidity simulator."],
        ["any-price", None, "Accept any price from 1 to 9999, not only the ticks of the odds ladder."],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.accounts: Accounts = default_accounts()
        self.catalogue: Catalogue = demo_catalogue()

    def parseOptions(self, options: list[str] | None = None) -> None:
        with usage_error_in_one_line(self):
            super().parseOptions(options)  # type: ignore[no-untyped-call]

    def postOptions(self) -> None:
        if self["liquidity"] and self["no-liquidity"]:
            raise usage.UsageError("--liquidity and --no-liquidity cannot both be given")
        self["liquidity"] = not self["no-liquidity"]
        try:
            if self["accounts"] is not None:
                self.accounts = load_accounts(self["accounts"])
            if self["catalogue"] is not None:
                self.catalogue = load_catalogue(self["catalogue"])
        except ConfigurationError as error:
            raise usage.UsageError(str(error)) from None
        from twisted.internet import reactor

        try:
            serverFromString(reactor, with_backlog(self["endpoint"], self["backlog"]))  # type: ignore[no-untyped-call]
        except (ValueError, KeyError, TypeError) as error:
            raise usage.UsageError(f"bad --endpoint {self['endpoint']!r}: {error}") from None


class CannotListen(SmarketsError):
    """The exchange cannot listen on its endpoint (a port in use, a bad interface)."""


class ListenerService(Service):
    """Listens on an endpoint while running, and says what it is; an endpoint it cannot listen on ends the process.

    twistd's own StreamServerEndpointService logs a traceback there and keeps
    running, listening nowhere; a supervisor must see the process fail.
    """

    log = Logger()

    def __init__(self, reactor: Any, description: str, endpoint: IStreamServerEndpoint,
                 factory: ExchangeFactory, daemon: bool = False) -> None:
        self.reactor = reactor
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        #: Under twistd without -n, whose first process exits 0 once the daemon has started its services:
        #: a port it cannot have is raised at start (`said`), so that twistd's first process says it and exits 1.
        self.daemon = daemon
        self.port: IListeningPort | None = None
        self._listened = False
        self._cannot: str | None = None

    def privilegedStartService(self) -> None:
        # Before twistd drops privileges (--uid), as StreamServerEndpointService does.
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        self._listen()
        if self.daemon and self._cannot is not None:
            raise said(CannotListen(self._cannot))

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._listen()

    def _listen(self) -> None:
        if not self._listened:
            self._listened = True
            self.endpoint.listen(self.factory).addCallbacks(self._listening, self._cannot_listen)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        self.log.info("{description}", description=describe_simulation(self.factory.exchange, port))

    def _cannot_listen(self, failure: Failure) -> None:
        self._cannot = f"cannot listen on {self.description}: {failure.getErrorMessage()}"
        self.log.critical("{error}", error=self._cannot)
        exit_after_stop(self.reactor)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        self._listened = False
        if self.port is None:
            return None
        port, self.port = self.port, None
        return port.stopListening()


def describe_simulation(exchange: Exchange, port: IListeningPort) -> str:
    """What a person must know of a simulated exchange: that it is one, and what it holds."""
    address = port.getHost()
    accounts = ", ".join(f"{a.username} (balance {format_money(money(a.balance))})" for a in exchange.accounts
                         if a.username != BOT_USERNAME)
    markets = ", ".join(f"{m.id} {m.name} ({m.state_name})" for m in exchange.catalogue)
    bot = "; a liquidity bot trades in them" if exchange.accounts.get(BOT_USERNAME) is not None else ""
    any_price = "; any price from 1 to 9999, not only the ticks (--any-price)" if exchange.settings.any_price else ""
    return (
        f"SIMULATED exchange (not Smarkets, no real money) on {address.host}:{address.port}"  # type: ignore[attr-defined]
        f" with accounts {accounts or 'none'}; markets {markets or 'none'}{bot}{any_price}"
    )


def makeService(options: Options) -> IService:
    """The exchange listening on ``--endpoint``, with the liquidity simulator if asked."""
    from twisted.internet import reactor

    accounts = with_liquidity_account(options.accounts) if options["liquidity"] else options.accounts
    clock: IReactorTime = reactor
    exchange = Exchange(clock, accounts, options.catalogue, ExchangeSettings(any_price=bool(options["any-price"])))
    service = MultiService()  # type: ignore[no-untyped-call]
    quiet_while_stopping(reactor)
    endpoint = serverFromString(reactor, with_backlog(options["endpoint"], options["backlog"]))  # type: ignore[no-untyped-call]
    factory = ExchangeFactory(exchange, clock)
    factory.noisy = False  # no "Starting factory <...ExchangeFactory object at 0x...>"
    listener = ListenerService(reactor, options["endpoint"], endpoint, factory, daemonised(options))
    listener.setServiceParent(service)  # type: ignore[no-untyped-call]
    if options["liquidity"]:
        LiquiditySimulator(exchange, clock).setServiceParent(service)  # type: ignore[no-untyped-call]
    return service
