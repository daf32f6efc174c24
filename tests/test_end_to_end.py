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
from smarkets_twisted.exchange.service import _REQUEST_ANSWERS, ExchangeSettings
from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.payloads import SETO_FIELDS
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.service import SmarketsClientService
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


def run(seed, steps, wide=False, service=False):
    """One random session of ``steps`` actions; returns (findings, stats).

    ``wide`` draws, from a generator of its own (so that the plain seeds run
    as before), the limits the plain runs leave at their defaults: a throttle
    of a few tokens, tiny sent logs on both sides, detached sessions that
    expire within seconds, few sessions per account, account events a few per
    turn, an exchange acting on a few frames per turn and timing out a silent
    client, an account history of a few events (a generator of its own);
    and a second client of the same account (its own sessions, drops and
    logouts), more pings, and the second market settled or voided late.
    Events the history no longer held when a session asked for them are
    not owed (the exchange's bounded history, a design limit).
    ``service`` (with ``wide``) runs the second client under the library's
    SmarketsClientService, which stays out after a logout: from a third
    generator it connects again, or is stopped and started again later.
    """
    collector = ErrorCollector()
    globalLogPublisher.addObserver(collector)
    try:
        return _run(seed, steps, collector, wide, service)
    finally:
        globalLogPublisher.removeObserver(collector)


class Client:
    """One factory of alice's under a ClientService (or ours), and what reached its handlers."""

    def __init__(self, m, name, settings, first_ref, retry, ours=False):
        self.name = name
        self.factory = SmarketsClientFactory(settings, m.clock)
        self.refs = Refs()
        self.refs.n = self.first_ref = first_ref
        self.factory._references = self.refs
        self.labels = itertools.count()
        self.delivered = collections.Counter()
        self.accepted_by_handler = collections.Counter()
        self.factory.add_global_handler(self._seen)
        #: The account's last sequence when the exchange started a new session of this client that
        #: asked for no events (none seen yet: a design limit the client warns of): not owed those.
        self.unaskable = 0
        self.unheld = set()
        self.ep = MemEndpoint(m)
        if ours:
            self.svc = SmarketsClientService(self.ep, self.factory, clock=m.clock, retry=retry)
        else:
            self.svc = ClientService(self.ep, self.factory, retryPolicy=retry, clock=m.clock)
        self.svc.startService()

    def _seen(self, name, msg):
        if hasattr(msg, "account_sequence_64") and msg.account_sequence_64:
            self.delivered[msg.account_sequence_64] += 1
        if name == "seto.order_accepted" and msg.HasField("label"):
            self.accepted_by_handler[msg.label] += 1

    def answered_elsewhere(self, event):
        """An answer to another client's request: the exchange sends it only to that client's session."""
        reference = getattr(event, "reference", None)
        return (isinstance(event, _REQUEST_ANSWERS) and reference is not None
                and not self.first_ref < reference < self.first_ref + 10**12)

    def label(self):
        return f"{self.name}{next(self.labels)}"

    def live_conn(self):
        for c in reversed(self.ep.conns):
            if c.connected:
                return c
        return None

    @property
    def connected(self):
        return self.live_conn() is not None and self.factory.current is not None


def _run(seed, steps, collector, wide=False, service=False):
    rng = random.Random(seed)
    wrng = random.Random(f"wide {seed}")
    srng = random.Random(f"service {seed}")
    log_size = rng.choice([12, 40, 100_000])
    csize = rng.choice([8, 30, 100_000])
    rate, burst, replay_interval = rng.choice([10, 500]), rng.choice([5, 1000]), rng.choice([0.0, 5.0])
    limits, connection_limits = {}, {}
    if wide:
        log_size, csize = wrng.choice([4, 8, 12, 40]), wrng.choice([2, 4, 8, 30])
        rate, burst = wrng.choice([2, 5, 10]), wrng.choice([1, 2, 3, 5])
        limits = {"tick_ms": wrng.choice([100, 200]), "retention": wrng.choice([0.5, 2.0, 5.0, 600.0]),
                  "sessions_per_account": wrng.choice([2, 3, 10]), "events_per_turn": wrng.choice([1, 3, 100]),
                  "detached_budget": wrng.choice([200, 2000, 8 << 20])}
        # An exchange that heartbeats less often than it times a client out, or a
        # throttle that its heartbeats (answered) use up, serves no client at all.
        heartbeat = wrng.choice([2.0, 5.0])
        connection_limits = {"frames_per_turn": wrng.choice([1, 3, 500]), "heartbeat_interval": heartbeat,
                             "peer_timeout": wrng.choice([2.5 * heartbeat, 30.0])}
    hrng = random.Random(f"history {seed}")
    m = InMemoryExchange(accounts=two_accounts(hrng.choice([8, 30, 10_000]) if wide else 10_000), catalogue=markets(),
                         settings=ExchangeSettings(sent_log_size=log_size, average_rate_ps=rate, burst_size=burst,
                                                   **{"tick_ms": 200, **limits}),
                         connection_settings=ConnectionSettings(replay_interval=replay_interval, **connection_limits))
    ex = m.exchange
    acted = collections.Counter()          # label/ref -> times the exchange handled it
    orig_handle = ex.handle

    def handle(session, payload):
        field = SETO_FIELDS[payload.type]
        body = getattr(payload, field)
        if session.account.username == "alice":
            key = None
            if field == "order_create":
                key = ("order", body.label)
            elif body.HasField("reference") if hasattr(body, "reference") else False:
                key = ("ref", body.reference)
            if key is not None:
                acted[key] += 1
        return orig_handle(session, payload)

    ex.handle = handle
    settings = ClientSettings(username="alice", password="alice-pw", sent_log_size=csize,
                              heartbeat_interval=rng.choice([2.0, 10.0]), peer_timeout=15.0, login_timeout=5.0)
    alice = Client(m, "L", settings, 10**12, lambda n: 0.2 + rng.random())
    clients = [alice]
    if wide:
        clients.append(Client(m, "M", settings, 2 * 10**12, lambda n: 0.2 + wrng.random(), ours=service))
    started = ex.session_started

    def session_started(session, login):
        if (session.detached_at_account_sequence is None and not login.HasField("account_sequence_64")
                and not login.HasField("account_sequence")):
            for client in clients:
                if any(c.server is session.connection for c in client.ep.conns):
                    client.unaskable = session.account.account_sequence
        return started(session, login)

    ex.session_started = session_started
    replay_account = ex._replay_account

    def _replay_account(session, after):
        held = session.account.events_after(after)
        if held.truncated:
            first = held.events[0].account_sequence if held.events else session.account.account_sequence + 1
            for client in clients:
                if any(c.server is session.connection for c in client.ep.conns):
                    client.unheld.update(range(after + 1, first))
        return replay_account(session, after)

    ex._replay_account = _replay_account
    cbook = MarketBook(MARKET)
    alice.factory.add_handler("seto.market_quotes", lambda q: cbook.snapshot(q) if q.market_id == MARKET else None)
    alice.factory.add_handler("seto.contract_quotes",
                              lambda q: cbook.update(q) if q.contract_id in (HOME, AWAY) else None)

    reqs = []  # dicts: kind, key, results
    order_ids = []

    def track(kind, key, d):
        r = {"kind": kind, "key": key, "results": [], "t": m.clock.seconds()}
        def cb(x):
            r["results"].append(x)
            return None
        d.addBoth(cb)
        reqs.append(r)
        return r

    def drop(client, g):
        c = client.live_conn()
        if c is None:
            return
        how = g.choice(["clean", "lose_c2s", "lose_s2c", "lose_both", "partial"])
        stats["drop_" + how] += 1
        cio, sio = c.pump.clientIO, c.pump.serverIO
        if how in ("lose_c2s", "lose_both"):
            cio.getOutBuffer()
        if how in ("lose_s2c", "lose_both"):
            sio.getOutBuffer()
        if how == "partial":
            cd, sd = cio.getOutBuffer(), sio.getOutBuffer()
            if cd:
                sio.bufferReceived(cd[:g.randint(0, len(cd))])
            if sd:
                cio.bufferReceived(sd[:g.randint(0, len(sd))])
            cio.getOutBuffer()
            sio.getOutBuffer()
        c.drop()

    def act(client, g, a):
        """One action by ``client``, ``a`` in [0, 1) choosing which."""
        f, refs = client.factory, client.refs
        if a < 0.30:
            label = client.label()
            tif = g.choice([seto_pb2.GOOD_TIL_CANCELLED] * 4 + [seto_pb2.IMMEDIATE_OR_CANCEL])
            mk, ct = g.choice([(MARKET, HOME), (MARKET, AWAY), (HALTABLE, OVER)])
            d = f.order(mk, ct, g.choice([BUY, SELL]), g.choice([1000, 5000, 10_000]),
                        g.randint(2000, 8000), tif=tif, label=label, timeout=g.choice([None, None, 3.0]))
            track("order", ("order", label), d)
        elif a < 0.40 and order_ids:
            key = ("ref", refs.n + 1)
            track("cancel", key, f.cancel(g.choice(order_ids)))
        elif a < 0.43:
            key = ("ref", refs.n + 1)
            track("cancel_all", key, f.cancel_all(g.choice([None, MARKET, HALTABLE])))
        elif a < 0.48 and order_ids:
            key = ("ref", refs.n + 1)
            track("replace", key, f.replace(g.choice(order_ids), g.randint(2000, 8000), 5000))
        elif a < 0.50 and order_ids:
            key = ("ref", refs.n + 1)
            track("reduce", key, f.reduce(g.choice(order_ids), 500))
        elif a < 0.53:
            track("ping", None, f.ping(timeout=g.choice([None, 2.0])))
        elif a < 0.56:
            track("subscribe", None, f.subscribe(g.choice([MARKET, HALTABLE, 999])))
        elif a < 0.62:
            # bob trades against the book: fills for alice
            mk, ct = g.choice([(MARKET, HOME), (MARKET, AWAY), (HALTABLE, OVER)])
            try:
                ex.place_order("bob", mk, ct, g.choice([BUY, SELL]), g.choice([1000, 5000]),
                               g.randint(2000, 8000), tif=seto_pb2.IMMEDIATE_OR_CANCEL)
            except Exception:
                pass
        elif a < 0.64:
            try:
                g.choice([ex.halt, ex.open])(HALTABLE)
            except Exception:
                pass
        elif a < 0.72:
            drop(client, g)
        elif a < 0.725:
            stats["logout"] += 1
            track("logout", None, f.logout(timeout=g.choice([None, 2.0])))
        else:
            # time passes in small steps, but sometimes without flushing first
            if g.random() < 0.5:
                m.flush()
            m.advance(g.choice([0.05, 0.1, 0.3, 1.0]), step=0.05)

    def act_wide(step):
        """What only wide runs do: the second client acts, pings, the second market ends."""
        b = wrng.random()
        if b < 0.6:
            act(clients[1], wrng, wrng.random())
        elif b < 0.65:
            act(clients[1], wrng, 0.71)  # a drop of the second client
        elif b < 0.7:
            act(clients[1], wrng, 0.724)  # a logout of the second client
        elif b < 0.9:
            track("ping", None, wrng.choice(clients).factory.ping(timeout=wrng.choice([None, 0.5, 2.0])))
        elif b < 0.93 and step > steps * 0.6:
            try:
                wrng.choice([lambda: ex.settle(HALTABLE, OVER), lambda: ex.void(HALTABLE)])()
                stats["market_ended"] += 1
            except Exception:
                pass
        else:
            act(alice, wrng, wrng.random())

    def act_service():
        """The second client's SmarketsClientService: in again after a logout, or stopped and started."""
        svc = clients[1].svc
        if srng.random() < 0.7:
            svc.connect()
            return
        stats["service_restart"] += 1
        stopped = svc.stopService()
        later = srng.choice([0.0, 0.1, 1.0, 5.0])
        stopped.addBoth(lambda _: m.clock.callLater(later, svc.startService))

    stats = collections.Counter()
    for step in range(steps):
        try:
            if service and srng.random() < 0.03:
                act_service()
            elif wide and wrng.random() < 0.3:
                act_wide(step)
            else:
                act(alice, rng, rng.random())
        except Exception:
            collector.problems.append("driver: " + traceback.format_exc())
        # keep order ids we know of (from the exchange's truth)
        order_ids = [o.order_id for o in ex.open_orders("alice")] or order_ids[-5:]

    # quiesce: no more drops; let the service reconnect and everything settle
    if service:
        m.advance(10, step=0.05)  # a restart under way finishes
        clients[1].svc.connect()
    if wide:
        # What the last action wrote arrives now, not a 0.25 s step later: more than the
        # two ticks (of 100 ms) the client allows a payload to be on the way.
        m.flush()
    m.advance(120, step=0.25)
    # A throttle of a few tokens drains a long queue slowly: give it the time it needs.
    while any(client.factory.requests.unsent for client in clients) and m.clock.seconds() < 3600:
        m.advance(30, step=0.25)
    findings = []
    hist = [e for e in ex.account("alice").events_after(0).events if not isinstance(e, events.BalanceChanged)]
    for client in clients:
        if not client.connected:
            findings.append(f"{client.name}: not logged in after quiescing")
        for lbl, n in client.accepted_by_handler.items():
            if n > 1:
                findings.append(f"{client.name}: order_accepted delivered {n} times to handlers: {lbl}")
        for seq, n in client.delivered.items():
            if n > 1:
                findings.append(f"{client.name}: account event {seq} delivered {n} times")
        due = {e.account_sequence for e in hist
               if not client.answered_elsewhere(e) and e.account_sequence > client.unaskable
               and e.account_sequence not in client.unheld}
        missing = sorted(due - set(client.delivered))
        if missing and client.connected:
            findings.append(f"{client.name}: account events never delivered: {missing[:10]} ({len(missing)})")
    for key, n in acted.items():
        if n > 1:
            findings.append(f"acted on {n} times: {key}")
    if alice.connected and MARKET in alice.factory.subscriptions:
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

    def test_wide_limits_lose_nothing_and_double_nothing(self) -> None:
        """Tight throttles, tiny logs, short-lived detached sessions, two clients of one account."""
        for seed in (1, 2, 3, 4, 6):
            findings, stats = run(seed, 300, wide=True)
            self.assertEqual(findings, [], f"seed {seed}: {dict(stats)}")

    def test_wide_runs_with_the_second_client_under_our_service(self) -> None:
        """251: a login answered after the service stopped raised AlreadyCalledError, then NoTransition."""
        for seed in (1, 2, 251):
            findings, stats = run(seed, 300, wide=True, service=True)
            self.assertEqual(findings, [], f"seed {seed}: {dict(stats)}")

    def test_wide_seeds_that_found_bugs_stay_clean(self) -> None:
        """THROTTLE_EXCEEDED: 5 and 15, a request let out on tokens a resume's resends had used;
        0 and 12, two payloads a tick apart reaching a burst of 1 together; 181, refills of a fifth of a
        token lost to the exchange's full bucket while a payload was on the way."""
        for seed in (5, 15, 0, 12, 181):
            findings, stats = run(seed, 300, wide=True)
            self.assertEqual(findings, [], f"seed {seed}: {dict(stats)}")
