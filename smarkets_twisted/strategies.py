"""The strategy ``twistd smarkets`` runs: a user's ``--strategy module:Name`` loaded, and run as a service.

Loading a user's code and starting it with the client is service glue, not
trading logic: what a strategy is and does lives in `smarkets_twisted.trading`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.trading.strategy import Strategy

#: What ``--strategy`` names: called with the client factory when the service starts.
StrategyFactory = Callable[[SmarketsClientFactory], object]

#: ``--strategy none``: trade nothing, only subscribe to the markets (a recorder, with --journal).
RECORDER = "none"

_log = Logger()


def load_strategy(spec: str) -> StrategyFactory:
    """The callable ``module:Name`` names (mystrat.py in the current directory too); UsageError if none."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise usage.UsageError(f"--strategy takes module:callable, not {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        # As `python -m` does: mystrat.py in the current directory is importable.
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise usage.UsageError(f"cannot load --strategy {spec}: {e}") from None
    except Exception as e:
        # The module failed as it ran (a syntax error, a bad top-level line): why and
        # where, in one line, rather than a traceback out of twistd's option parsing.
        raise usage.UsageError(f"cannot load --strategy {spec}: {_raised_where(e)}") from None
    try:
        strategy = getattr(module, attribute)
    except AttributeError as e:
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


def _raised_where(error: Exception) -> str:
    """The error and the file and line that raised it (a SyntaxError's own words say where)."""
    if isinstance(error, SyntaxError) or error.__traceback__ is None:
        return f"{type(error).__name__}: {error}"
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return f"{type(error).__name__}: {error} ({frame.filename}, line {frame.lineno})"


def subscribe_only(factory: SmarketsClientFactory, market_ids: Iterable[int]) -> None:
    """The recorder: subscribe to the markets once logged in (the factory renews them), and trade nothing."""
    markets = list(market_ids)

    def subscribe(protocol: object) -> None:
        for market_id in markets:
            factory.subscribe(market_id).addErrback(_not_subscribed, market_id)

    factory.whenLoggedIn().addCallbacks(subscribe, lambda failure: None)


def _not_subscribed(failure: Failure, market_id: int) -> None:
    _log.warn("cannot subscribe to market {market}: {error}", market=market_id, error=failure.getErrorMessage())


class StrategyService(Service):
    """Builds the strategy when the service starts, and stops it on stop.

    ``build`` is called with the factory: a `Strategy` it returns is started;
    anything else is left as it is.  One that raises (a user's constructor
    refusing its configuration) is said in one line naming ``name``, and
    ``on_failure`` is called (``twistd smarkets`` exits 1): neither a
    traceback out of ``startService`` nor a client running without its
    strategy.
    """

    log = Logger()

    #: Seconds to wait for a strategy's stop (its orders cancelled) before the logout goes ahead.
    stop_timeout = 10.0

    def __init__(self, factory: SmarketsClientFactory, build: StrategyFactory, name: str) -> None:
        self.factory = factory
        self.build = build
        self.name = name
        self.strategy: Strategy | None = None
        self.on_failure: Callable[[Exception], object] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        try:
            started = self.build(self.factory)
            if isinstance(started, Strategy):
                self.strategy = started  # stopped on stop, however far its start went
                started.start()
        except Exception as e:
            self.log.critical("{name} cannot start: {error}", name=self.name, error=f"{type(e).__name__}: {e}")
            if self.on_failure is not None:
                self.on_failure(e)

    def stopService(self) -> Deferred[None] | None:
        """Stop the strategy; the Deferred it may return (its orders cancelled) delays the logout.

        By ``stop_timeout`` seconds at most: a Deferred that never fires would
        keep twistd from ever exiting, a second Ctrl-C included.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        if self.strategy is None:
            return None
        stopping = self.strategy.stop()
        if stopping is None:
            return None
        return stopping.addTimeout(self.stop_timeout, self.factory.clock, onTimeoutCancel=self._stop_timed_out)

    def _stop_timed_out(self, result: object, timeout: float) -> None:
        self.log.warn("{name} did not finish stopping in {timeout} seconds; logging out all the same",
                      name=self.name, timeout=timeout)
