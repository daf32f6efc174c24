"""The exchange's session registry: what a client can resume, and for how long.

A session outlives its connection: when the connection drops, the session
(its seqs, its log of sent payloads, its subscriptions and settings) is kept
for a retention window, so that the client can log in again with the session
id and carry on where it left off.  A detached session is not sent account
events nor market data: it remembers the account sequence it had reached,
and its resume sends it the account events after that from the account's own
history (one log per account, however many sessions it has) and a fresh
snapshot of its markets.  Only market states are still logged for it; if
they overflowed its log, or the account's history no longer reaches back to
where it left off, it cannot be resumed.

What detached sessions hold is bounded twice (a client that starts a new
session at every reconnect, as the reference client does, leaves one behind
each time): an account has at most ``sessions_per_account`` sessions, the
oldest detached one making way for a new one; and the sent logs of all
detached sessions together stay within ``detached_budget`` bytes, the
oldest detached sessions expiring early to keep them there.

Session ids are bearer secrets: they are made with :mod:`secrets`, and never
shown by a repr, a log line or an error.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from smarkets_twisted.exchange.accounts import Account
from smarkets_twisted.exchange.events import AccountEvent
from smarkets_twisted.payloads import Payload
from smarkets_twisted.session import Role, Session, SessionState
from smarkets_twisted.throttle import TokenBucket

#: How long a session with no connection can still be resumed (seconds).
DEFAULT_RETENTION = 600.0

#: How many sent payloads each exchange session keeps to answer replays.
DEFAULT_SENT_LOG_SIZE = 10_000

#: Bytes of randomness in a session id (its text is longer: URL-safe base64).
SESSION_ID_BYTES = 24

#: Sessions one account may hold, connected or waiting for a resume.
DEFAULT_SESSIONS_PER_ACCOUNT = 10

#: Bytes the sent logs of all detached sessions may hold together.
DEFAULT_DETACHED_BUDGET = 8 * 1024 * 1024

#: What a logged payload costs beyond its bytes: the bytes object, its seq and its dict slot.
_PER_PAYLOAD_OVERHEAD = 100


class Connection(Protocol):
    """What the registry needs from the connection a session is attached to."""

    def send_payload(self, payload: Payload) -> int:
        """Number, log and write one payload; return its seq."""

    def drop(self) -> None:
        """Close the connection because another one took the session over."""

    def close(self) -> None:
        """Close the connection; the session waits for a resume."""


class ExchangeSession:
    """One client session on the exchange: an account, its seqs and its settings.

    :ivar account: the account that logged in.
    :ivar state: seqs and sent log, handed to each connection's `Session`.
    :ivar connection: the live connection, or None while the session waits
        for a resume.
    :ivar cancel_all_on_failure: set by the client's ``settings`` message.
    :ivar subscriptions: ids of the markets whose quotes this session receives.
    :ivar throttle: the token bucket its application payloads draw on.
    :ivar refused: payloads the throttle refused since it last let one
        through (`Exchange.admit` logs a run of refusals, not each one).
    :ivar detached_at_seq: the next outgoing seq when the connection went
        away, or None while connected.
    :ivar detached_at_account_sequence: the account's sequence when the
        connection went away: the resume sends the events after it (None
        for a new session, and once they are sent).
    :ivar held: bytes its sent log held when it was detached (counted
        against the registry's budget).
    """

    def __init__(self, account: Account, state: SessionState) -> None:
        self.account = account
        self.state = state
        self.connection: Connection | None = None
        self.cancel_all_on_failure = False
        self.subscriptions: set[int] = set()
        self.throttle = TokenBucket()
        self.refused = 0
        self.expiry: IDelayedCall | None = None
        self.detached_at_seq: int | None = None
        self.detached_at_account_sequence: int | None = None
        self.held = 0
        #: Account events waiting to be sent, oldest first (see `Exchange._queue`).
        self.backlog: deque[AccountEvent] = deque()
        #: The next turn's sending of the backlog, if one is scheduled.
        self.draining: IDelayedCall | None = None
        #: Whether the backlog is being sent now.
        self.sending = False

    @property
    def attached(self) -> bool:
        """True while a connection serves this session."""
        return self.connection is not None

    def lost_while_detached(self, more: int = 0) -> bool:
        """True when what the session missed while detached can no longer all be sent:
        a payload logged since has left the sent log, or will once ``more``
        payloads are sent, or the account's history has dropped events after
        the session's last one.

        A resume would then answer the client's replay with gapfills in place
        of what it missed, so the session must not be resumed.
        """
        since = self.detached_at_seq
        if since is None:
            return False
        state = self.state
        missed_after = self.detached_at_account_sequence
        if missed_after is not None and not self.account.holds_events_after(missed_after):
            return True
        return state.sent.first_seq > since or state.next_outgoing_seq + more - since > state.sent.limit

    def logged_bytes(self) -> int:
        """An estimate of the memory its sent log holds."""
        sent = self.state.sent
        total = 0
        for seq in range(sent.first_seq, sent.next_seq):
            data = sent.get(seq)
            if data is not None:
                total += len(data) + _PER_PAYLOAD_OVERHEAD
        return total

    @property
    def session_id(self) -> str:
        assert self.state.session_id is not None, "an exchange session always has an id"
        return self.state.session_id

    def send(self, payload: Payload, now: float) -> int:
        """Send on the live connection, or log the payload for the resume's replay."""
        if self.connection is not None:
            return self.connection.send_payload(payload)
        offline = Session(self.state, Role.EXCHANGE, now=now)
        seq = offline.send(payload, now)
        offline.data_to_send()
        return seq

    def __repr__(self) -> str:
        connected = "connected" if self.connection is not None else "detached"
        return f"<ExchangeSession account={self.account.username!r} {connected} {self.state!r}>"


class SessionRegistry:
    """Every resumable session, by its secret id, each expiring when left alone."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        *,
        retention: float = DEFAULT_RETENTION,
        sent_log_size: int = DEFAULT_SENT_LOG_SIZE,
        sessions_per_account: int = DEFAULT_SESSIONS_PER_ACCOUNT,
        detached_budget: int = DEFAULT_DETACHED_BUDGET,
    ) -> None:
        if sessions_per_account < 1:
            raise ValueError("an account must be allowed at least one session")
        self.clock = clock
        self.retention = retention
        self.sent_log_size = sent_log_size
        self.sessions_per_account = sessions_per_account
        self.detached_budget = detached_budget
        self._sessions: dict[str, ExchangeSession] = {}
        self._by_account: dict[str, dict[str, ExchangeSession]] = {}
        #: Detached sessions, the longest detached first: all, and by account.
        self._detached: OrderedDict[str, ExchangeSession] = OrderedDict()
        self._detached_by_account: dict[str, dict[str, ExchangeSession]] = {}
        #: What the detached sessions' sent logs hold, in bytes (estimated).
        self.detached_bytes = 0

    def __iter__(self) -> Iterator[ExchangeSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, account: Account) -> ExchangeSession | None:
        """Open a new session for ``account``, with a fresh unguessable id.

        When the account already has ``sessions_per_account`` sessions, its
        longest detached one ends to make room; if all of them are connected,
        there is no room: None.
        """
        sessions = self._by_account.setdefault(account.username, {})
        if len(sessions) >= self.sessions_per_account:
            oldest = next(iter(self._detached_by_account.get(account.username, {}).values()), None)
            if oldest is None:
                return None
            self.log.info("{username} opened a session beyond {limit}: the longest detached one ends",
                          username=account.username, limit=self.sessions_per_account)
            self.end(oldest)
        state = SessionState(self.sent_log_size)
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        while session_id in self._sessions:  # pragma: no cover - 192 random bits
            session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        state.session_id = session_id
        session = ExchangeSession(account, state)
        self._sessions[session_id] = session
        sessions[session_id] = session
        return session

    def find(self, session_id: str) -> ExchangeSession | None:
        """The session with this id, if it exists and has not expired."""
        return self._sessions.get(session_id)

    def of_account(self, account: Account) -> list[ExchangeSession]:
        """Every session of one account, connected or waiting for a resume."""
        return list(self._by_account.get(account.username, {}).values())

    def attach(self, session: ExchangeSession, connection: Connection) -> Connection | None:
        """Give the session a connection; return the one it replaces, if any."""
        if session.expiry is not None:
            if session.expiry.active():
                session.expiry.cancel()
            session.expiry = None
        self._undetach(session)
        previous = session.connection
        session.connection = connection
        session.detached_at_seq = None
        return previous if previous is not connection else None

    def detach(self, session: ExchangeSession, connection: Connection) -> None:
        """The connection is gone: keep the session for the retention window.

        Does nothing when another connection has taken the session over.
        """
        if session.connection is not connection:
            return
        session.connection = None
        session.detached_at_seq = session.state.next_outgoing_seq
        if session.backlog:
            # What was still to be sent is caught up from the account's history on resume.
            session.detached_at_account_sequence = session.backlog[0].account_sequence - 1
            session.backlog.clear()
        else:
            session.detached_at_account_sequence = session.account.account_sequence
        if session.draining is not None and session.draining.active():
            session.draining.cancel()
        session.draining = None
        if session.state.session_id in self._sessions:
            session.expiry = self.clock.callLater(self.retention, self._expire, session)
            session.held = session.logged_bytes()
            self._detached[session.session_id] = session
            self._detached_by_account.setdefault(session.account.username, {})[session.session_id] = session
            self.detached_bytes += session.held
            while self.detached_bytes > self.detached_budget and self._detached:
                oldest = next(iter(self._detached.values()))
                self.log.info("detached sessions hold more than {budget} bytes: the session of {username} "
                              "detached longest ends", budget=self.detached_budget, username=oldest.account.username)
                self.end(oldest)

    def end(self, session: ExchangeSession) -> None:
        """Forget the session now (a clean logout): it can no longer be resumed."""
        if session.expiry is not None and session.expiry.active():
            session.expiry.cancel()
        session.expiry = None
        self._forget(session)

    def _expire(self, session: ExchangeSession) -> None:
        session.expiry = None
        if self._forget(session):
            self.log.info("session of {username} expired after {retention}s without a connection",
                          username=session.account.username, retention=self.retention)

    def _forget(self, session: ExchangeSession) -> bool:
        """Remove the session from every index; False if it was already gone."""
        self._undetach(session)
        if self._sessions.pop(session.session_id, None) is None:
            return False
        sessions = self._by_account.get(session.account.username)
        if sessions is not None:
            sessions.pop(session.session_id, None)
            if not sessions:
                del self._by_account[session.account.username]
        return True

    def _undetach(self, session: ExchangeSession) -> None:
        if self._detached.pop(session.session_id, None) is not None:
            self.detached_bytes -= session.held
            session.held = 0
            username = session.account.username
            of_account = self._detached_by_account[username]
            del of_account[session.session_id]
            if not of_account:
                del self._detached_by_account[username]
