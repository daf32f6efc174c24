"""``twistd smarkets-exchange``: the simulated exchange as a service.

Options are checked, and the accounts and catalogue files read, before the
service is made, so that a bad file stops start-up with a message naming the
file and the problem.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorTime
from twisted.python import usage

from smarkets_twisted.errors import ConfigurationError
from smarkets_twisted.exchange.accounts import Accounts, default_accounts, load_accounts
from smarkets_twisted.exchange.catalogue import Catalogue, demo_catalogue, load_catalogue
from smarkets_twisted.exchange.liquidity import LiquiditySimulator, with_liquidity_account
from smarkets_twisted.exchange.server import ExchangeFactory
from smarkets_twisted.exchange.service import Exchange

#: Loopback only: the simulated exchange has no business on a public interface.
DEFAULT_ENDPOINT = "tcp:3701:interface=127.0.0.1"


class Options(usage.Options):
    """Command-line options of ``twistd smarkets-exchange``."""

    synopsis = "[--endpoint ENDPOINT] [--accounts FILE] [--catalogue FILE] [--liquidity | --no-liquidity]"

    optParameters = [
        ["endpoint", "e", DEFAULT_ENDPOINT, "Server endpoint string to listen on."],
        ["accounts", "a", None, "Accounts file (JSON). Default: a demo/demo account with 1000.00."],
        ["catalogue", "c", None, "Catalogue file (JSON). Default: a demo event with two markets."],
    ]

    optFlags = [
        ["liquidity", None, "Run the liquidity simulator (the default)."],
        ["no-liquidity", None, "Do not run the liquidity simulator."],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.accounts: Accounts = default_accounts()
        self.catalogue: Catalogue = demo_catalogue()

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
            serverFromString(reactor, self["endpoint"])  # type: ignore[no-untyped-call]
        except (ValueError, KeyError, TypeError) as error:
            raise usage.UsageError(f"bad --endpoint {self['endpoint']!r}: {error}") from None


def makeService(options: Options) -> IService:
    """The exchange listening on ``--endpoint``, with the liquidity simulator if asked."""
    from twisted.internet import reactor

    accounts = with_liquidity_account(options.accounts) if options["liquidity"] else options.accounts
    clock: IReactorTime = reactor
    exchange = Exchange(clock, accounts, options.catalogue)
    service = MultiService()  # type: ignore[no-untyped-call]
    endpoint = serverFromString(reactor, options["endpoint"])  # type: ignore[no-untyped-call]
    listener = StreamServerEndpointService(endpoint, ExchangeFactory(exchange, clock))  # type: ignore[no-untyped-call]
    listener.setServiceParent(service)  # type: ignore[no-untyped-call]
    if options["liquidity"]:
        LiquiditySimulator(exchange, clock).setServiceParent(service)  # type: ignore[no-untyped-call]
    return service
