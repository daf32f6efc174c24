"""End to end over real loopback TCP: the client and the simulated exchange on the reactor.

Sockets are real; timers run on a task.Clock shared by both ends, so that
nothing waits on the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.interfaces import IAddress, IProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from smarkets_twisted import errors
from smarkets_twisted.exchange.server import ExchangeFactory
from smarkets_twisted.exchange.service import Exchange
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.settings import ClientSettings
from tests.exchange_helpers import HOME, MARKET, markets, two_accounts


def _watch(protocol: IProtocol, lost: list[Deferred[None]]) -> IProtocol:
    """Make ``protocol`` fire a Deferred, added to ``lost``, when its connection ends."""
    done: Deferred[None] = Deferred()
    original = protocol.connectionLost

    def connectionLost(reason: Failure) -> None:
        original(reason)
        done.callback(None)

    protocol.connectionLost = connectionLost  # type: ignore[method-assign]
    lost.append(done)
    return protocol


def inline(test: Callable[[Any], Coroutine[Any, Any, None]]) -> Callable[[Any], Deferred[None]]:
    return lambda self: ensureDeferred(test(self))


class LoopbackTests(TestCase):
    def setUp(self) -> Deferred[None]:
        self.clock = Clock()
        self.exchange = Exchange(self.clock, two_accounts(), markets())
        self.lost: list[Deferred[None]] = []
        self.server_factory = ExchangeFactory(self.exchange, self.clock)
        build = self.server_factory.buildProtocol
        self.server_factory.buildProtocol = lambda addr: _watch(build(addr), self.lost)  # type: ignore[method-assign]
        listening = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.server_factory)

        def listened(port: Any) -> None:
            self.port = port
            self.addCleanup(self.closeAll)

        return listening.addCallback(listened)

    def closeAll(self) -> Deferred[Any]:
        for client in self.clients:
            client.stop()
            if client.current is not None and client.current.transport is not None:
                client.current.transport.loseConnection()
        stopped = self.port.stopListening()
        return DeferredList([*self.lost, stopped])

    @property
    def clients(self) -> list[SmarketsClientFactory]:
        return getattr(self, "_clients", [])

    async def connect(self, username: str, password: str) -> tuple[SmarketsClientFactory, Any]:
        """A client factory and its first connection's protocol."""
        factory = SmarketsClientFactory(ClientSettings(username=username, password=password), self.clock)
        build = factory.buildProtocol

        def watched(addr: IAddress | None) -> Any:
            return _watch(build(addr), self.lost)

        factory.buildProtocol = watched  # type: ignore[method-assign]
        self._clients = [*self.clients, factory]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        protocol = await endpoint.connect(factory)
        return factory, protocol

    @inline
    async def test_login_order_fill_ping_logout(self) -> None:
        alice, _ = await self.connect("alice", "alice-pw")
        bob, _ = await self.connect("bob", "bob-pw")
        await alice.whenLoggedIn()
        await bob.whenLoggedIn()
        fills: list[Any] = []
        alice.add_handler("seto.order_executed", fills.append)
        resting = await alice.order(MARKET, HOME, seto_pb2.SIDE_SELL, 20_000, 4000, reference=5)
        self.assertEqual(resting.reference, 5)
        taken = await bob.order(MARKET, HOME, seto_pb2.SIDE_BUY, 10_000, 4000)
        self.assertEqual(taken.quantity, 10_000)
        self.assertIsInstance(await alice.ping(), float)
        self.assertEqual([(m.order_id, m.quantity) for m in fills], [(resting.order_id, 10_000)])
        cancelled = await alice.cancel(resting.order_id)
        self.assertEqual(cancelled.order_id, resting.order_id)
        await alice.logout()
        await bob.logout()
        self.assertEqual(len(self.exchange.registry), 0)

    @inline
    async def test_bad_password(self) -> None:
        _, protocol = await self.connect("alice", "wrong")
        with self.assertRaises(errors.LoginError) as caught:
            await protocol.login()
        self.assertEqual(caught.exception.reason, eto_pb2.LOGOUT_UNAUTHORISED)
        await DeferredList(self.lost)
        self.assertEqual(len(self.exchange.registry), 0)

    @inline
    async def test_garbage_closes_only_that_connection(self) -> None:
        alice, _ = await self.connect("alice", "alice-pw")
        await alice.whenLoggedIn()
        vandal = _watch(Protocol(), self.lost)
        lost = self.lost[-1]
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port), vandal)
        vandal.transport.write(b"\xff" * 11)  # type: ignore[attr-defined]
        await lost
        self.assertIsInstance(await alice.ping(), float)
        await alice.logout()
