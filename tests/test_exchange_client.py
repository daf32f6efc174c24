"""The project's client against the simulated exchange, in memory (iosim, through smarkets_twisted.testing)."""

from __future__ import annotations

from typing import Any

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import errors
from smarkets_twisted.exchange.server import ConnectionSettings
from smarkets_twisted.exchange.service import ExchangeSettings
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.testing import InMemoryConnection, InMemoryExchange
from smarkets_twisted.trading.books import MarketBook
from smarkets_twisted.trading.orders import OrderState
from tests.exchange_helpers import AWAY, HALTABLE, HOME, MARKET, OVER, markets, two_accounts

BUY = seto_pb2.SIDE_BUY
SELL = seto_pb2.SIDE_SELL


#: The tests' round-figure prices are off the tick ladder.
ANY_PRICE = ExchangeSettings(any_price=True)

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
        self.market = InMemoryExchange(accounts=two_accounts(), catalogue=markets(), settings=ANY_PRICE)
        self.exchange = self.market.exchange
        self.alice, self.alice_connection = self.client("alice")
        self.bob, self.bob_connection = self.client("bob")

    def client(self, username: str, **settings: Any) -> tuple[SmarketsClientFactory, InMemoryConnection]:
        factory, connection = self.market.client(username, f"{username}-pw", **settings)
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

    def test_the_exchange_log_names_each_in_memory_client_by_an_address(self) -> None:
        """As over TCP, one address a connection: no Python repr of iosim's FakeAddress in a test's log."""
        with capturedLogs() as events:
            self.client("alice")
            self.client("alice")
        logins = [formatEvent(e) for e in events if "logged in from" in e.get("log_format", "")]
        self.assertEqual(len(logins), 2)
        for line in logins:
            self.assertRegex(line, r"^alice logged in from 127\.0\.0\.1:\d+ \(new session\)$")
        self.assertNotEqual(logins[0], logins[1])

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
        # (A price outside 1..9999 never leaves the client: InvalidRequest.)
        invalid = self.refused(self.alice.order(MARKET, HOME, BUY, 0, 5000), errors.OrderInvalid)
        self.assertEqual(invalid.reasons, [seto_pb2.ORDER_INVALID_INVALID_QUANTITY])
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


class TwoSessionTests(ClientAgainstExchangeTestCase):
    def test_cancel_all_is_answered_to_its_own_session(self) -> None:
        """Another session's cancel_all answer does not fire this session's request."""
        other, other_connection = self.client("alice")
        self.settle(other.order(HALTABLE, OVER, BUY, 10_000, 3000))
        self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 3000))
        open_when_fired: list[int] = []
        done = other.cancel_all(HALTABLE)
        done.addCallback(lambda _: open_when_fired.append(len(self.exchange.open_orders("alice", HALTABLE))))
        held = other_connection.pump.clientIO.getOutBuffer()  # in flight, not yet read
        self.settle(self.alice.cancel_all(MARKET))
        self.assertNoResult(done)
        other_connection.pump.serverIO.bufferReceived(held)
        self.settle(done)
        self.assertEqual(open_when_fired, [0])


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

    def test_subscribe_to_an_unknown_market_is_answered(self) -> None:
        snapshot = self.settle(self.bob.subscribe(999))
        self.assertEqual((snapshot.market_id, len(snapshot.contract_quotes)), (999, 0))

    def test_market_state(self) -> None:
        states = Recorder(self.bob, "seto.market_state")
        self.settle(self.bob.subscribe(MARKET))
        self.exchange.halt(MARKET)
        self.market.flush()
        self.assertEqual([m.state for m in states["seto.market_state"]], [seto_pb2.MARKET_STATE_HALTED])


class ExchangeRestartTests(ClientAgainstExchangeTestCase):
    """The exchange process is killed and started again (kill -9, then twistd); the clients stay up."""

    def restart(self) -> None:
        for connection in self.market.connections:
            connection.drop()
        self.market.clock.advance(5)
        self.market = InMemoryExchange(self.market.clock, two_accounts(), markets(), ANY_PRICE)
        self.exchange = self.market.exchange
        for factory in (self.alice, self.bob):
            self.market.connect(factory)  # the old session is refused: a new one starts
            self.market.flush()
            self.market.connect(factory)
            self.market.flush()
            self.successResultOf(factory.whenLoggedIn())

    def trade(self) -> tuple[int, int, int]:
        """Alice's orders: one filled by bob, one cancelled, one live."""
        filled = self.settle(self.alice.order(MARKET, HOME, BUY, 10_000, 4000)).order_id
        self.settle(self.bob.order(MARKET, HOME, SELL, 10_000, 4000))
        cancelled = self.settle(self.alice.order(MARKET, AWAY, BUY, 10_000, 3000)).order_id
        self.settle(self.alice.cancel(cancelled))
        live = self.settle(self.alice.order(MARKET, AWAY, BUY, 10_000, 2000)).order_id
        return filled, cancelled, live

    def states(self, order_ids: tuple[int, ...]) -> list[OrderState | None]:
        return [getattr(self.alice.orders.get(order_id), "state", None) for order_id in order_ids]

    def test_no_order_of_the_earlier_run_is_confused_with_a_new_one(self) -> None:
        before = self.trade()
        with capturedLogs() as events:
            self.restart()
            after = self.trade()
            # The live order died with the exchange: a cancel refused as not found settles it.
            self.refused(self.alice.cancel(before[2]), errors.CancelRejected)
        self.assertGreater(min(after), max(before))
        self.assertEqual(self.states(before), [OrderState.FILLED, OrderState.CANCELLED, OrderState.GONE])
        self.assertEqual(self.states(after), [OrderState.FILLED, OrderState.CANCELLED, OrderState.LIVE])
        # No phantom: the client's open orders are the exchange's.
        self.assertEqual([order.order_id for order in self.alice.orders.open()], [after[2]])
        self.assertEqual([order.order_id for order in self.exchange.open_orders("alice")], [after[2]])
        warnings = [str(formatEvent(e)) for e in events if e.get("log_level", LogLevel.info) >= LogLevel.warn]
        self.assertEqual([w for w in warnings if "does not fit" in w or "replaced by" in w or "afresh" in w], [])


class InMemoryDropTests(SynchronousTestCase):
    """testing.InMemoryConnection.drop: what was written and not yet read is delivered, or lost."""

    def test_a_drop_delivers_what_was_written_first(self) -> None:
        market = InMemoryExchange()
        client, connection = market.client()
        d = client.order(100, 1001, seto_pb2.SIDE_BUY, 20_000, 3333)
        connection.drop()
        self.assertEqual(len(market.exchange.open_orders("demo")), 1)  # the exchange read it
        market.connect(client)
        market.flush()
        self.assertEqual(self.successResultOf(d).price, 3333)

    def test_a_drop_that_loses_what_was_unread_makes_the_resume_resend_it(self) -> None:
        market = InMemoryExchange()
        client, connection = market.client()
        d = client.order(100, 1001, seto_pb2.SIDE_BUY, 20_000, 3333)
        connection.drop(lose_unread=True)
        self.assertEqual(market.exchange.open_orders("demo"), [])  # lost on the way
        self.assertNoResult(d)
        market.connect(client)
        market.flush()
        accepted = self.successResultOf(d)
        self.assertEqual([order.order_id for order in market.exchange.open_orders("demo")], [accepted.order_id])
        self.assertEqual(client.orders.get(accepted.order_id).state, OrderState.LIVE)  # type: ignore[union-attr]


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
        """Exchange → client: a fill while the connection is down arrives once on resume.
        Client → exchange: an order written as the connection died, never delivered, is
        resent from the client's log and executed once; a request made meanwhile is sent then."""
        fills = Recorder(self.alice, "seto.order_executed")
        bob_fills = Recorder(self.bob, "seto.order_executed")
        self.settle(self.alice.order(MARKET, HOME, SELL, 20_000, 4000))
        self.settle(self.bob.order(MARKET, AWAY, SELL, 10_000, 6000))
        dying = self.alice.order(MARKET, AWAY, BUY, 10_000, 6000)
        lost = self.alice_connection.pump.clientIO.getOutBuffer()  # written, never delivered
        self.assertTrue(lost)
        self.alice_connection.drop()
        self.assertEqual(self.exchange.open_orders("bob", MARKET)[0].available_quantity, 10_000)
        self.settle(self.bob.order(MARKET, HOME, BUY, 10_000, 4000))
        pending = self.alice.order(MARKET, AWAY, BUY, 10_000, 3000)
        self.assertNoResult(dying)
        self.assertNoResult(pending)
        self.market.connect(self.alice)
        self.assertEqual(self.settle(dying).price, 6000)
        accepted = self.settle(pending)
        self.assertEqual(accepted.price, 3000)
        alice_fills = fills["seto.order_executed"]
        self.assertEqual(sorted((m.contract_id, m.quantity, m.available_quantity) for m in alice_fills),
                         [(HOME, 10_000, 10_000), (AWAY, 10_000, 0)])
        # The lost order reached the exchange only on resume: after bob's buy, once.
        self.assertEqual([(m.contract_id, m.quantity) for m in bob_fills["seto.order_executed"]],
                         [(HOME, 10_000), (AWAY, 10_000)])
        self.assertEqual(len(self.exchange.open_orders("alice")), 2)
        self.assertEqual(self.exchange.open_orders("bob"), [])
        self.assertEqual(len(self.exchange.registry), 2)

    def test_fill_while_detached_survives_market_data(self) -> None:
        """Book deltas are not logged for a detached session, so they cannot push a fill out of its log."""
        market = InMemoryExchange(accounts=two_accounts(), catalogue=markets(),
                                  settings=ExchangeSettings(sent_log_size=20, any_price=True))
        alice, connection = market.client("alice", "alice-pw")
        bob, _ = market.client("bob", "bob-pw")
        market.flush()
        fills = Recorder(alice, "seto.order_executed")
        snapshots = Recorder(alice, "seto.market_quotes")
        for d in (alice.subscribe(MARKET), alice.order(MARKET, HOME, SELL, 20_000, 4000)):
            market.flush()
            self.successResultOf(d)
        connection.drop()
        for price in [4000, *range(1000, 1030)]:
            d = bob.order(MARKET, HOME if price == 4000 else AWAY, BUY, 10_000, price)
            market.flush()
            self.successResultOf(d)
        market.connect(alice)
        market.flush()
        self.assertEqual([m.quantity for m in fills["seto.order_executed"]], [10_000])
        # The snapshot on resume shows every order made meanwhile.
        away = {q.contract_id: q for q in snapshots["seto.market_quotes"][-1].contract_quotes}[AWAY]
        self.assertEqual(len(away.bids), ExchangeSettings().depth)

    def test_resume_after_more_account_events_than_the_sent_log_holds(self) -> None:
        """Many account events while detached: the resume is accepted, and the fill arrives once."""
        market = InMemoryExchange(accounts=two_accounts(), catalogue=markets(),
                                  settings=ExchangeSettings(sent_log_size=10, any_price=True))
        alice, connection = market.client("alice", "alice-pw")
        market.flush()
        fills = Recorder(alice, "seto.order_executed")
        d = alice.order(MARKET, HOME, SELL, 20_000, 4000)
        market.flush()
        self.successResultOf(d)
        old_session = alice.state.session_id
        connection.drop()
        market.exchange.place_order("bob", MARKET, HOME, BUY, 10_000, 4000)
        for price in range(2000, 2010):
            market.exchange.place_order("alice", HALTABLE, OVER, BUY, 1000, price)
        resumed = market.connect(alice)
        market.flush()
        self.assertTrue(resumed.connected)
        self.assertEqual(alice.state.session_id, old_session)
        self.assertEqual([m.quantity for m in fills["seto.order_executed"]], [10_000])

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


class ManyAtOnceTests(SynchronousTestCase):
    """Work the exchange leaves for its next turn (a flood of payloads, a long replay) is done by a flush."""

    def test_more_payloads_than_one_turn_and_a_long_replay(self) -> None:
        market = InMemoryExchange(accounts=two_accounts(), catalogue=markets(),
                                  settings=ExchangeSettings(events_per_turn=3, burst_size=2000),
                                  connection_settings=ConnectionSettings(frames_per_turn=5))
        alice, _ = market.client("alice", "alice-pw")
        market.flush()
        pongs = [alice.ping() for _ in range(12)]
        market.flush()
        for pong in pongs:
            self.successResultOf(pong)
        for price in (2000, 2500, 4000, 5000):
            market.exchange.place_order("bob", MARKET, HOME, BUY, 1000, price)
        bob = SmarketsClientFactory(ClientSettings(username="bob", password="bob-pw", account_sequence=0), market.clock)
        accepted = Recorder(bob, "seto.order_accepted")
        market.connect(bob)
        market.flush()
        self.assertEqual([m.price for m in accepted["seto.order_accepted"]], [2000, 2500, 4000, 5000])
