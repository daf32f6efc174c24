"""The exchange's session registry: what a client can resume, and for how long.

A session outlives its connection: when the connection drops, the session
(its seqs, its log of sent payloads, its subscriptions and settings) is kept
for a retention window, so that the client can log in again with the session
id and carry on where it left off.  Account events sent to a session while
it has no connection are numbered and logged all the same, and reach the
client as a replay once it resumes; market data is not sent to a detached
session (the resume brings a fresh snapshot instead), so that it cannot push
account events out of the bounded log.  If account events did overflow the
log, the session cannot be resumed (see `ExchangeSession.lost_while_detached`).

Session ids are bearer secrets: they are made with :mod:`secrets`, and never
shown by a repr, a log line or an error.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from smarkets_twisted.exchange.accounts import Account
from smarkets_twisted.payloads import Payload
from smarkets_twisted.session import Role, Session, SessionState
from smarkets_twisted.throttle import TokenBucket

#: How long a session with no connection can still be resumed (seconds).
DEFAULT_RETENTION = 600.0

#: How many sent payloads each exchange session keeps to answer replays.
DEFAULT_SENT_LOG_SIZE = 10_000

#: Bytes of randomness in a session id (its text is longer: URL-safe base64).
SESSION_ID_BYTES = 24


class Connection(Protocol):
    """What the registry needs from the connection a session is attached to."""

    def send_payload(self, payload: Payload) -> int:
        """Number, log and write one payload; return its seq."""

    def drop(self) -> None:
        """Close the connection because another one took the session over."""


class ExchangeSession:
    """One client session on the exchange: an account, its seqs and its settings.

    :ivar account: the account that logged in.
    :ivar state: seqs and sent log, handed to each connection's `Session`.
    :ivar connection: the live connection, or None while the session waits
        for a resume.
    :ivar cancel_all_on_failure: set by the client's ``settings`` message.
    :ivar subscriptions: ids of the markets whose quotes this session receives.
    :ivar throttle: the token bucket its application payloads draw on.
    :ivar detached_at_seq: the next outgoing seq when the connection went
        away, or None while connected.
    """

    def __init__(self, account: Account, state: SessionState) -> None:
        self.account = account
        self.state = state
        self.connection: Connection | None = None
        self.cancel_all_on_failure = False
        self.subscriptions: set[int] = set()
        self.throttle = TokenBucket()
        self.expiry: IDelayedCall | None = None
        self.detached_at_seq: int | None = None

    @property
    def attached(self) -> bool:
        """True while a connection serves this session."""
        return self.connection is not None

    def lost_while_detached(self, more: int = 0) -> bool:
        """True when something sent since the connection went away has left the
        sent log, or will once ``more`` payloads are sent.

        A resume would then answer the client's replay with gapfills in place
        of what it missed, so the session must not be resumed.
        """
        since = self.detached_at_seq
        if since is None:
            return False
        state = self.state
        return state.sent.first_seq > since or state.next_outgoing_seq + more - since > state.sent.limit

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
    ) -> None:
        self.clock = clock
        self.retention = retention
        self.sent_log_size = sent_log_size
        self._sessions: dict[str, ExchangeSession] = {}

    def __iter__(self) -> Iterator[ExchangeSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, account: Account) -> ExchangeSession:
        """Open a new session for ``account``, with a fresh unguessable id."""
        state = SessionState(self.sent_log_size)
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        while session_id in self._sessions:  # pragma: no cover - 192 random bits
            session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        state.session_id = session_id
        session = ExchangeSession(account, state)
        self._sessions[session_id] = session
        return session

    def find(self, session_id: str) -> ExchangeSession | None:
        """The session with this id, if it exists and has not expired."""
        return self._sessions.get(session_id)

    def of_account(self, account: Account) -> list[ExchangeSession]:
        """Every session of one account, connected or waiting for a resume."""
        return [session for session in self._sessions.values() if session.account is account]

    def attach(self, session: ExchangeSession, connection: Connection) -> Connection | None:
        """Give the session a connection; return the one it replaces, if any."""
        if session.expiry is not None:
            if session.expiry.active():
                session.expiry.cancel()
            session.expiry = None
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
        if session.state.session_id in self._sessions:
            session.expiry = self.clock.callLater(self.retention, self._expire, session)

    def end(self, session: ExchangeSession) -> None:
        """Forget the session now (a clean logout): it can no longer be resumed."""
        if session.expiry is not None and session.expiry.active():
            session.expiry.cancel()
        session.expiry = None
        self._sessions.pop(session.session_id, None)

    def _expire(self, session: ExchangeSession) -> None:
        session.expiry = None
        if self._sessions.pop(session.session_id, None) is not None:
            self.log.info("session of {username} expired after {retention}s without a connection",
                          username=session.account.username, retention=self.retention)
