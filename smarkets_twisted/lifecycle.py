"""The client's lifecycles as transition tables, to check against PROTOCOL.md sections 5 and 6.

Two machines, one per object whose state multiplies: a connection's `Phase`
(`protocol.SmarketsClientProtocol`), moved only by `NEXT`, and the
application's `Intent` for the session (`factory.SmarketsClientFactory`),
three states whose moves its docstring tabulates.  Whether a session is held,
to resume, is neither: it is the SessionState's session id.

Written by hand rather than with Automat: what an event does is nearly the
same in every phase it is legal in (a logout received is a refusal while the
login is unanswered, and that is all), so one method per event that reads the
phase it left is shorter than Automat's one output per transition; and an
event the table lacks is logged and ignored by the protocol, where Automat
raises NoTransition out of whatever Twisted callback delivered it.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    """Where a connection is in its life."""

    #: Built, no transport yet.
    CONNECTING = "connecting"
    #: The login waits for the TLS handshake: nothing goes out, nor counts as sent, to an unverified exchange.
    HANDSHAKING = "handshaking"
    #: A logout asked for during the handshake: it goes out right behind the login.
    LOGOUT_AFTER_HANDSHAKE = "handshaking, logout to follow the login"
    #: The login sent, unanswered.
    LOGGING_IN = "logging in"
    #: A logout sent behind a login still unanswered.
    LOGGING_IN_THEN_OUT = "logging in, logout sent"
    LOGGED_IN = "logged in"
    #: Our logout sent: the exchange is to confirm it and close.
    LOGGING_OUT = "logging out"
    #: The exchange confirmed our logout; it closes the connection.
    CONFIRMED = "logout confirmed"
    #: The exchange refused the login or logged us out; the connection closes.
    CLOSING = "closing"
    #: We closed the connection (bad data, silence, a timeout): nothing more is read or written.
    DROPPED = "dropped"
    CLOSED = "closed"


class Event(enum.Enum):
    """What moves a connection from one phase to another (LOGOUT: from the exchange, any other reason)."""

    CONNECTED = "connected"
    VERIFIED = "TLS handshake done"  # at once over plain TCP
    LOGIN_RESPONSE = "login_response"
    CONFIRMATION = "logout confirmation"
    LOGOUT = "logout"
    LOGOUT_ASKED = "logout asked for"
    DROP = "drop"
    LOST = "connection lost"


_P, _E = Phase, Event
#: The login is unanswered: `login` waits.
AWAITING_LOGIN = frozenset(
    {_P.CONNECTING, _P.HANDSHAKING, _P.LOGOUT_AFTER_HANDSHAKE, _P.LOGGING_IN, _P.LOGGING_IN_THEN_OUT}
)
#: We may drop the connection.
OPEN = frozenset({_P.HANDSHAKING, _P.LOGOUT_AFTER_HANDSHAKE, _P.LOGGING_IN, _P.LOGGING_IN_THEN_OUT, _P.LOGGED_IN,
                  _P.LOGGING_OUT})
#: Bytes go both ways.
CONNECTED = OPEN | {_P.CONFIRMED, _P.CLOSING}
#: Nothing more is read.
GONE = frozenset({_P.DROPPED, _P.CLOSED})

#: (phase, event) → the next phase.  An event missing here is logged and changes nothing.
NEXT: dict[tuple[Phase, Event], Phase] = {
    (_P.CONNECTING, _E.CONNECTED): _P.HANDSHAKING,
    # §5: the login (new session or resume) is the first payload, once the exchange is verified.
    (_P.HANDSHAKING, _E.VERIFIED): _P.LOGGING_IN,
    (_P.HANDSHAKING, _E.LOGOUT_ASKED): _P.LOGOUT_AFTER_HANDSHAKE,
    (_P.LOGOUT_AFTER_HANDSHAKE, _E.VERIFIED): _P.LOGGING_IN_THEN_OUT,
    (_P.LOGGING_IN, _E.LOGIN_RESPONSE): _P.LOGGED_IN,
    (_P.LOGGING_IN, _E.LOGOUT_ASKED): _P.LOGGING_IN_THEN_OUT,
    (_P.LOGGING_IN_THEN_OUT, _E.LOGIN_RESPONSE): _P.LOGGING_OUT,
    # §6: a clean logout is answered by a confirmation, then the exchange closes.
    (_P.LOGGED_IN, _E.LOGOUT_ASKED): _P.LOGGING_OUT,
    (_P.LOGGING_OUT, _E.CONFIRMATION): _P.CONFIRMED,
    # A confirmation unasked for ends the session all the same.
    (_P.LOGGED_IN, _E.CONFIRMATION): _P.CONFIRMED,
    # §6: the exchange ends a session with a reason (heartbeat timeout, downtime...), then closes.
    (_P.LOGGED_IN, _E.LOGOUT): _P.CLOSING,
    (_P.LOGGING_OUT, _E.LOGOUT): _P.CLOSING,
    # §5: a logout while the login is unanswered refuses it, whatever its reason.
    **{(phase, event): _P.CLOSING for phase in (_P.LOGGING_IN, _P.LOGGING_IN_THEN_OUT)
       for event in (_E.LOGOUT, _E.CONFIRMATION)},
    # A logout asked for again joins the first; one asked for as the exchange closes waits for the close.
    **{(phase, _E.LOGOUT_ASKED): phase
       for phase in (_P.LOGOUT_AFTER_HANDSHAKE, _P.LOGGING_IN_THEN_OUT, _P.LOGGING_OUT, _P.CONFIRMED, _P.CLOSING)},
    # We drop an open connection; one the exchange is closing closes sooner, for the reason it gave.
    **{(phase, _E.DROP): _P.DROPPED for phase in OPEN},
    (_P.CONFIRMED, _E.DROP): _P.CONFIRMED,
    (_P.CLOSING, _E.DROP): _P.CLOSING,
    **{(phase, _E.LOST): _P.CLOSED for phase in (*CONNECTED, _P.DROPPED)},
}


class Intent(enum.Enum):
    """Whether the application wants a session: the factory's side of the lifecycle.

    ===========  ==============================  ======================================
    intent       moved to by                     meaning
    ===========  ==============================  ======================================
    WANTED       `buildProtocol` (from any)      connecting, logged in, or to resume on
                                                 the next connection
    LOGGING_OUT  `logout` with a connection up   the session ends with that connection,
                 (from WANTED)                   its logout confirmed or not
    ENDED        a logout done, `stop`, a login  for good, once: nothing until the
                 refused for good (from WANTED   application connects again; a login
                 or LOGGING_OUT)                 answered late is closed
    ===========  ==============================  ======================================
    """

    WANTED = "wanted"
    LOGGING_OUT = "logging out"
    ENDED = "ended"
