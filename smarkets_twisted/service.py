"""The client as a Twisted service: reconnect with backoff and jitter, log out on stop.

Reconnecting is `twisted.application.internet.ClientService`'s job; the
factory it drives keeps the session, so each new connection resumes it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger

from smarkets_twisted import errors
from smarkets_twisted.factory import SmarketsClientFactory

#: How long stopping waits for the exchange to confirm a logout, in seconds.
LOGOUT_GRACE = 5.0


def retry_policy(initial: float = 0.5, factor: float = 2.0, maximum: float = 30.0) -> Callable[[int], float]:
    """Exponential backoff with up to a second of random jitter."""
    return backoffPolicy(initialDelay=initial, factor=factor, maxDelay=maximum, jitter=random.random)


class SmarketsClientService(Service):
    """Keeps one session logged in until stopped; stops trying on a final login refusal."""

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        factory: SmarketsClientFactory,
        clock: IReactorTime | None = None,
        retry: Callable[[int], float] | None = None,
    ) -> None:
        self.factory = factory
        self.clock = clock or factory.clock
        self.connections = ClientService(endpoint, factory, retryPolicy=retry or retry_policy(), clock=self.clock)
        factory.on_final_refusal = self._give_up

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.connections.startService()

    def stopService(self) -> Deferred[Any]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self.factory.current is None:
            self.factory.stop()
            return self.connections.stopService()
        logged_out = self.factory.logout()
        logged_out.addTimeout(LOGOUT_GRACE, self.clock)
        logged_out.addErrback(lambda f: self.log.warn("no logout confirmation: {f}", f=f.getErrorMessage()))
        logged_out.addBoth(lambda _: self.connections.stopService())
        return logged_out

    def _give_up(self, error: errors.SmarketsError) -> None:
        self.log.error("login refused for good ({error}): no more connection attempts", error=error)
        if self.connections.running:
            self.connections.stopService()
