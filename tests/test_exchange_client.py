"""The project's client against the simulated exchange, in memory (iosim, through smarkets_twisted.testing)."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import errors
from smarkets_twisted.book import MarketBook
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.testing import InMemoryConnection, InMemoryExchange
from tests.exchange_helpers import AWAY, HOME, MARKET, markets, two_accounts

BUY = seto_pb2.SIDE_BUY
SELL = seto_pb2.SIDE_SELL


class Recorder:
    """Collects what a factory's handlers receive, by name."""

    def __init__(self, factory: SmarketsClientFactory, *names: str) -> None:
        self.messages: dict[str, list[Any]] = {name: [] for name in names}
        for name in names:
            factory.add_handler(name, self.messages[name].append)

    def __getitem__(self, name: str) -> list[Any]:
        return self.messages[name]


class ClientAgainstExchangeTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.market = InMemoryExchange(accounts=two_accounts(), catalogue=markets())
        self.exchange = self.market.exchange
        self.alice, self.alice_connection = self.client("alice")
        self.bob, self.bob_connection = self.client("bob")

    def client(self, username: str) -> tuple[SmarketsClientFactory, InMemoryConnection]:
        factory, connection = self.market.client(username, f"{username}-pw")
        self.market.flush()
        self.successResultOf(factory.whenLoggedIn())
        return factory, connection

    def settle(self, deferred: Any) -> Any:
        """Flush the exchange, then return the Deferred's result."""
        self.market.flush()
        return self.successResultOf(deferred)

    def refused(self, deferred: Any, error: type[Exception]) -> Any:
        self.market.flush()
        return self.failureResultOf(deferred, error).value


class LoginTests(ClientAgainstExchangeTestCase):
    def test_login_response(self) -> None:
        response = self.settle(self.alice.login())
        self.assertEqual((response.email, response.id, response.reset), ("alice@example.com", 11, 2))

    def test_bad_password(self) -> None:
        _, connection = self.market.client("alice", "wrong")
        error = self.refused(connection.client.login(), errors.LoginError)  # type: ignore[attr-defined]
        self.assertEqual(error.reason, eto_pb2.LOGOUT_UNAUTHORISED)
        self.assertFalse(connection.connected)

    def test_ping(self) -> None:
        self.assertEqual(self.settle(self.alice.ping()), 0.0)

    def test_heartbeats_keep_an_idle_client_connected(self) -> None:
        self.market.advance(120)
        self.assertTrue(self.alice_connection.connected)
        self.settle(self.alice.ping())

    def test_logout(self) -> None:
        self.settle(self.alice.logout())
        self.assertFalse(self.alice_connection.connected)
        self.assertEqual(len(self.exchange.registry), 1)


class OrderTests(ClientAgainstExchangeTestCase):
    def test_every_order_path(self) -> None:
        alice = Recorder(self.alice, "seto.order_executed", "seto.order_cancelled")
        bob = Recorder(self.bob, "seto.order_executed")
        accepted = self.settle(self.alice.order(MARKET, HOME, SELL, 30_000, 4000, reference=1, label="l"))
        self.assertEqual((accepted.reference, accepted.label), (1, "l"))
        fill = self.settle(self.bob.order(MARKET, HOME, BUY, 10_000, 4500))
        self.assertEqual(fill.price, 4500)
        self.assertEqual([(m.price, m.quantity, m.available_quantity) for m in alice["seto.order_executed"]],
                         [(4000, 10_000, 20_000)])
        self.assertEqual([(m.price, m.quantity, m.side) for m in bob["seto.order_executed"]], [(4000, 10_000, BUY)])
        reduced = self.settle(self.alice.reduce(accepted.order_id, 15_000))
        self.assertEqual(reduced.new_quantity, 15_000)
        replaced = self.settle(self.alice.replace(accepted.order_id, 4100, 15_000))
        self.assertEqual((replaced.orig_order_id, replaced.price), (accepted.order_id, 4100))
        cancelled = self.settle(self.alice.cancel(replaced.order_id))
        self.assertEqual(cancelled.order_id, replaced.order_id)
        self.settle(self.alice.order(MARKET, AWAY, BUY, 10_000, 2000))
        self.settle(self.alice.cancel_all())
        self.assertEqual(self.exchange.open_orders("alice"), [])

    def test_rejections_fail_the_deferred(self) -> None:
        self.assertEqual(self.refused(self.alice.order(999, HOME, BUY, 10_000, 5000), errors.OrderRejected).reason,
                         seto_pb2.ORDER_REJECTED_MARKET_NOT_FOUND)
        invalid = self.refused(self.alice.order(MARKET, HOME, BUY, 0, 0), errors.OrderInvalid)
        self.assertEqual(invalid.reasons,
                         [seto_pb2.ORDER_INVALID_INVALID_PRICE, seto_pb2.ORDER_INVALID_INVALID_QUANTITY])
        self.settle(self.alice.order(MARKET, HOME, SELL, 10_000, 5000))
        crossed = self.refused(self.alice.order(MARKET, HOME, BUY, 10_000, 5000), errors.OrderRejected)
        self.assertEqual(crossed.reason, seto_pb2.ORDER_REJECTED_CROSSED_SELF)
        self.assertEqual(self.refused(self.alice.cancel(999), errors.CancelRejected).reason,
                         seto_pb2.ORDER_CANCEL_REJECTED_NOT_FOUND)

    def test_immediate_or_cancel(self) -> None:
        cancelled = Recorder(self.bob, "seto.order_cancelled")
        self.settle(self.alice.order(MARKET, HOME, SELL, 10_000, 4000))
        self.settle(self.bob.order(MARKET, HOME, BUY, 30_000, 4000, tif=seto_pb2.IMMEDIATE_OR_CANCEL))
        self.assertEqual([m.reason for m in cancelled["seto.order_cancelled"]],
                         [seto_pb2.ORDER_CANCELLED_INSUFFICIENT_LIQUIDITY])
        self.assertEqual(self.exchange.open_orders("bob"), [])

    def test_balance_and_exposure(self) -> None:
        balances = Recorder(self.alice, "seto.balance_changed")
        accepted = self.settle(self.alice.order(MARKET, HOME, SELL, 400_000, 2500))
        self.assertEqual((accepted.exposure, accepted.available_balance), (30.0, 970.0))
        self.settle(self.bob.order(MARKET, HOME, BUY, 200_000, 2500))
        self.settle(self.alice.cancel(accepted.order_id))
        self.assertEqual([(m.available_balance, m.exposure) for m in balances["seto.balance_changed"]],
                         [(970.0, 30.0), (985.0, 15.0)])
        self.assertEqual(self.exchange.account("alice").exposure, 150_000)


class MarketDataTests(ClientAgainstExchangeTestCase):
    def test_client_book_matches_the_exchange(self) -> None:
        book = MarketBook(MARKET)
        self.bob.add_handler("seto.contract_quotes", book.update)
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000))
        book.snapshot(self.settle(self.bob.subscribe(MARKET)))
        for price in (4100, 4200, 3900):
            self.settle(self.alice.order(MARKET, HOME, BUY, 5_000, price))
        self.settle(self.bob.order(MARKET, HOME, SELL, 12_000, 4000))
        exchange_book = self.exchange.book(MARKET)
        assert exchange_book is not None
        for contract in exchange_book.contracts:
            mine = book.contracts[contract.contract_id]
            self.assertEqual(mine.bids, {level.price: level.quantity for level in contract.bids})
            self.assertEqual(mine.offers, {level.price: level.quantity for level in contract.offers})

    def test_market_state(self) -> None:
        states = Recorder(self.bob, "seto.market_state")
        self.settle(self.bob.subscribe(MARKET))
        self.exchange.halt(MARKET)
        self.market.flush()
        self.assertEqual([m.state for m in states["seto.market_state"]], [seto_pb2.MARKET_STATE_HALTED])


class FailureAndResumeTests(ClientAgainstExchangeTestCase):
    def test_cancel_all_on_failure(self) -> None:
        self.settle(self.alice.settings(cancel_all_on_failure=True))
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000))
        self.settle(self.bob.order(MARKET, HOME, BUY, 10_000, 3000))
        self.alice_connection.drop()
        self.assertEqual(self.exchange.open_orders("alice"), [])
        self.assertEqual(len(self.exchange.open_orders("bob")), 1)
        self.settle(self.bob.ping())

    def test_resume_with_replay_both_ways(self) -> None:
        """A fill while the connection is down arrives once on resume; a request made meanwhile is sent then."""
        fills = Recorder(self.alice, "seto.order_executed")
        self.settle(self.alice.order(MARKET, HOME, SELL, 20_000, 4000))
        self.alice_connection.drop()
        self.settle(self.bob.order(MARKET, HOME, BUY, 10_000, 4000))
        pending = self.alice.order(MARKET, AWAY, BUY, 10_000, 3000)
        self.assertNoResult(pending)
        self.market.connect(self.alice)
        accepted = self.settle(pending)
        self.assertEqual(accepted.price, 3000)
        self.assertEqual([(m.quantity, m.available_quantity) for m in fills["seto.order_executed"]],
                         [(10_000, 10_000)])
        self.assertEqual(len(self.exchange.open_orders("alice")), 2)
        self.assertEqual(len(self.exchange.registry), 2)

    def test_account_sequence_replay(self) -> None:
        """A new session that gives the last account sequence it saw is sent everything after it."""
        self.settle(self.alice.order(MARKET, HOME, SELL, 20_000, 4000))
        seen = self.alice.account_sequence
        assert seen is not None
        self.settle(self.alice.logout())
        self.settle(self.bob.order(MARKET, HOME, BUY, 10_000, 4000))
        factory = SmarketsClientFactory(self.alice.config, self.market.clock)
        factory.account_sequence = seen
        fills = Recorder(factory, "seto.order_executed")
        self.market.connect(factory)
        self.market.flush()
        (fill,) = fills["seto.order_executed"]
        self.assertEqual(fill.quantity, 10_000)
        self.assertGreater(fill.account_sequence_64, seen)
