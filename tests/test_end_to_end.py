"""End to end, at random: ClientService + SmarketsClientFactory against the simulated exchange.

Random orders, cancels, cancel-alls, replaces, reduces, pings, subscriptions
and logouts; fills from another account; market halts; connections dropped
at awkward moments (mid-login, with bytes in flight lost either way, half a
frame delivered); time in small steps; small sent logs on both sides so that
resumes get refused and sessions lost.  Then quiet, and the checks:

- every order and referenced request acted on by the exchange at most once;
- an answer (success or exchange rejection) means acted on exactly once;
- ``SessionLost(sent=False)`` means never acted on;
- every Deferred fired exactly once; no throttle rejection;
- every account event reached the handlers exactly once;
- the client's book equals the exchange's; nothing logged as an error.
"""

import collections
import itertools
import random
import traceback

from twisted.application.internet import ClientService
from twisted.internet.defer import succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import globalLogPublisher
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from smarkets_twisted import errors
from smarkets_twisted.exchange import events
from smarkets_twisted.exchange.server import ConnectionSettings
from smarkets_twisted.exchange.service import ExchangeSettings
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.payloads import SETO_FIELDS
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.testing import _EXCHANGE_ADDRESS, InMemoryConnection, InMemoryExchange
from smarkets_twisted.trading.books import MarketBook
from tests.exchange_helpers import AWAY, HALTABLE, HOME, MARKET, OVER, markets, two_accounts

BUY, SELL = seto_pb2.SIDE_BUY, seto_pb2.SIDE_SELL

class ErrorCollector:
    """Collects every error logged while it is installed."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def __call__(self, event: dict) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            failure = event.get("log_failure")
            self.problems.append(failure.getTraceback() if failure is not None else str(event))


@implementer(IStreamClientEndpoint)
class MemEndpoint:
    def __init__(self, m):
        self.m = m
        self.conns = []

    def connect(self, pf):
        client, server, pump = connectedServerAndClient(
            lambda: self.m.factory.buildProtocol(_EXCHANGE_ADDRESS), lambda: pf.buildProtocol(_EXCHANGE_ADDRESS),
            clock=self.m.clock, greet=False)
        c = InMemoryConnection(client, server, pump)
        self.m.connections.append(c)
        self.conns.append(c)
        return succeed(client)


class Refs:
    """Client references the test can predict, to know each request's key."""

    def __init__(self):
        self.n = 10**12

    def __iter__(self):
        return self

    def __next__(self):
        self.n += 1
        return self.n


def run(seed, steps):
    """One random session of ``steps`` actions; returns (findings, stats)."""
    collector = ErrorCollector()
    globalLogPublisher.addObserver(collector)
    try:
        return _run(seed, steps, collector)
    finally:
        globalLogPublisher.removeObserver(collector)


def _run(seed, steps, collector):
    rng = random.Random(seed)
    log_size = rng.choice([12, 40, 100_000])
    csize = rng.choice([8, 30, 100_000])
    m = InMemoryExchange(accounts=two_accounts(), catalogue=markets(),
                         settings=ExchangeSettings(sent_log_size=log_size, average_rate_ps=rng.choice([10, 500]),
                                                   burst_size=rng.choice([5, 1000]), tick_ms=200),
                         connection_settings=ConnectionSettings(replay_interval=rng.choice([0.0, 5.0])))
    ex = m.exchange
    acted = collections.Counter()          # label/ref -> times the exchange handled it
    orig_handle = ex.handle

    def handle(session, payload):
        field = SETO_FIELDS[payload.type]
        body = getattr(payload, field)
        if session.account.username == "alice":
            if field == "order_create":
                acted[("order", body.label)] += 1
            elif body.HasField("reference") if hasattr(body, "reference") else False:
                acted[("ref", body.reference)] += 1
        return orig_handle(session, payload)

    ex.handle = handle
    alice = SmarketsClientFactory(ClientSettings(username="alice", password="alice-pw", sent_log_size=csize,
                                                 heartbeat_interval=rng.choice([2.0, 10.0]), peer_timeout=15.0,
                                                 login_timeout=5.0), m.clock)
    refs = Refs()
    alice._references = refs
    delivered = collections.Counter()
    accepted_by_handler = collections.Counter()

    def gh(name, msg):
        if hasattr(msg, "account_sequence_64") and msg.account_sequence_64:
            delivered[msg.account_sequence_64] += 1
        if name == "seto.order_accepted" and msg.HasField("label"):
            accepted_by_handler[msg.label] += 1

    alice.add_global_handler(gh)
    cbook = MarketBook(MARKET)
    alice.add_handler("seto.market_quotes", lambda q: cbook.snapshot(q) if q.market_id == MARKET else None)
    alice.add_handler("seto.contract_quotes", lambda q: cbook.update(q) if q.contract_id in (HOME, AWAY) else None)
    ep = MemEndpoint(m)
    svc = ClientService(ep, alice, retryPolicy=lambda n: 0.2 + rng.random(), clock=m.clock)
    svc.startService()

    reqs = []  # dicts: kind, key, results
    order_ids = []
    nlabel = itertools.count()

    def track(kind, key, d):
        r = {"kind": kind, "key": key, "results": [], "t": m.clock.seconds()}
        def cb(x):
            r["results"].append(x)
            return None
        d.addBoth(cb)
        reqs.append(r)
        return r

    def live_conn():
        for c in reversed(ep.conns):
            if c.connected:
                return c
        return None

    stats = collections.Counter()
    for _ in range(steps):
        a = rng.random()
        try:
            if a < 0.30:
                label = f"L{next(nlabel)}"
                tif = rng.choice([seto_pb2.GOOD_TIL_CANCELLED] * 4 + [seto_pb2.IMMEDIATE_OR_CANCEL])
                mk, ct = rng.choice([(MARKET, HOME), (MARKET, AWAY), (HALTABLE, OVER)])
                d = alice.order(mk, ct, rng.choice([BUY, SELL]), rng.choice([1000, 5000, 10_000]),
                                rng.randint(2000, 8000), tif=tif, label=label,
                                timeout=rng.choice([None, None, 3.0]))
                track("order", ("order", label), d)
            elif a < 0.40 and order_ids:
                key = ("ref", refs.n + 1)
                track("cancel", key, alice.cancel(rng.choice(order_ids)))
            elif a < 0.43:
                key = ("ref", refs.n + 1)
                track("cancel_all", key, alice.cancel_all(rng.choice([None, MARKET, HALTABLE])))
            elif a < 0.48 and order_ids:
                key = ("ref", refs.n + 1)
                track("replace", key, alice.replace(rng.choice(order_ids), rng.randint(2000, 8000), 5000))
            elif a < 0.50 and order_ids:
                key = ("ref", refs.n + 1)
                track("reduce", key, alice.reduce(rng.choice(order_ids), 500))
            elif a < 0.53:
                track("ping", None, alice.ping(timeout=rng.choice([None, 2.0])))
            elif a < 0.56:
                track("subscribe", None, alice.subscribe(rng.choice([MARKET, HALTABLE, 999])))
            elif a < 0.62:
                # bob trades against the book: fills for alice
                mk, ct = rng.choice([(MARKET, HOME), (MARKET, AWAY), (HALTABLE, OVER)])
                try:
                    ex.place_order("bob", mk, ct, rng.choice([BUY, SELL]), rng.choice([1000, 5000]),
                                   rng.randint(2000, 8000), tif=seto_pb2.IMMEDIATE_OR_CANCEL)
                except Exception:
                    pass
            elif a < 0.64:
                try:
                    rng.choice([ex.halt, ex.open])(HALTABLE)
                except Exception:
                    pass
            elif a < 0.72:
                c = live_conn()
                if c is not None:
                    how = rng.choice(["clean", "lose_c2s", "lose_s2c", "lose_both", "partial"])
                    stats["drop_" + how] += 1
                    cio, sio = c.pump.clientIO, c.pump.serverIO
                    if how in ("lose_c2s", "lose_both"):
                        cio.getOutBuffer()
                    if how in ("lose_s2c", "lose_both"):
                        sio.getOutBuffer()
                    if how == "partial":
                        cd, sd = cio.getOutBuffer(), sio.getOutBuffer()
                        if cd:
                            sio.bufferReceived(cd[:rng.randint(0, len(cd))])
                        if sd:
                            cio.bufferReceived(sd[:rng.randint(0, len(sd))])
                        cio.getOutBuffer()
                        sio.getOutBuffer()
                    c.drop()
            elif a < 0.725:
                stats["logout"] += 1
                track("logout", None, alice.logout(timeout=rng.choice([None, 2.0])))
            else:
                # time passes in small steps, but sometimes without flushing first
                if rng.random() < 0.5:
                    m.flush()
                m.advance(rng.choice([0.05, 0.1, 0.3, 1.0]), step=0.05)
        except Exception:
            collector.problems.append("driver: " + traceback.format_exc())
        # keep order ids we know of (from the exchange's truth)
        order_ids = [o.order_id for o in ex.open_orders("alice")] or order_ids[-5:]

    # quiesce: no more drops; let the service reconnect and everything settle
    m.advance(120, step=0.25)
    c = live_conn()
    connected = c is not None and alice.current is not None
    findings = []
    if not connected:
        findings.append("not logged in after quiescing")
    for key, n in acted.items():
        if n > 1:
            findings.append(f"acted on {n} times: {key}")
    for lbl, n in accepted_by_handler.items():
        if n > 1:
            findings.append(f"order_accepted delivered {n} times to handlers: {lbl}")
    for seq, n in delivered.items():
        if n > 1:
            findings.append(f"account event {seq} delivered {n} times")
    hist = [e.account_sequence for e in ex.account("alice").events_after(0).events
            if not isinstance(e, events.BalanceChanged)]
    missing = sorted(set(hist) - set(delivered))
    if missing and connected:
        findings.append(f"account events never delivered: {missing[:10]} ({len(missing)})")
    if connected and MARKET in alice.subscriptions:
        eb = ex.book(MARKET)
        for contract in eb.contracts:
            mine = cbook.contracts.get(contract.contract_id)
            want_b = {level.price: level.quantity for level in contract.bids}
            want_o = {level.price: level.quantity for level in contract.offers}
            if mine is None or mine.bids != want_b or mine.offers != want_o:
                findings.append(f"client book differs from the exchange for {contract.contract_id}: "
                                f"{None if mine is None else (mine.bids, mine.offers)} vs {(want_b, want_o)}")
    for r in reqs:
        res = r["results"]
        if len(res) != 1:
            findings.append(f"{r['kind']} {r['key']} (made t={r['t']:.2f}) fired {len(res)} times")
            continue
        x = res[0]
        if r["key"] is None:
            continue
        n = acted[r["key"]]
        v = getattr(x, "value", None)
        if v is None:  # success: the exchange answered, so it acted exactly once
            if n != 1:
                findings.append(f"{r['kind']} {r['key']} succeeded but exchange acted {n} times")
        elif isinstance(v, (errors.OrderRejected, errors.OrderInvalid, errors.CancelRejected,
                            errors.ReduceRejected, errors.ReplaceRejected, errors.CancelAllRejected)):
            if n != 1:
                findings.append(f"{r['kind']} {r['key']} rejected by the exchange ({v}) but acted {n} times")
            if "THROTTLE" in str(v):
                findings.append(f"{r['kind']} {r['key']} THROTTLE rejected ({v})")
        elif isinstance(v, errors.SessionLost):
            stats[f"lost_sent={v.sent}"] += 1
            if v.sent is False and n != 0:
                findings.append(f"{r['kind']} {r['key']} SessionLost(sent=False) but exchange acted {n} times")
        elif isinstance(v, errors.RequestTimeout):
            stats["timeout"] += 1
        elif isinstance(v, errors.NotLoggedIn):
            stats["notloggedin"] += 1
        else:
            stats[type(v).__name__] += 1
    for p in collector.problems:
        findings.append("logged error: " + p.strip().splitlines()[-1][:200])
    return findings, stats


class RandomEndToEndTests(SynchronousTestCase):
    def test_random_sessions_lose_nothing_and_double_nothing(self) -> None:
        for seed in range(6):
            findings, stats = run(seed, 250)
            self.assertEqual(findings, [], f"seed {seed}: {dict(stats)}")

    def test_seeds_that_found_bugs_stay_clean(self) -> None:
        """41: a renewed subscription's SessionLost escaped; 377 and 496: pongs and resends spent no throttle tokens."""
        for seed in (41, 377, 496):
            findings, stats = run(seed, 300)
            self.assertEqual(findings, [], f"seed {seed}: {dict(stats)}")
