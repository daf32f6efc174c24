"""Every error this library raises, in one hierarchy rooted at SmarketsError.

The names of the reference client (smk-python-sdk 9.4) are kept, so that code
moving from it can catch the same things.  No message built here contains a
password, a cookie or a session token.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence

from twisted.internet.defer import CancelledError


class SmarketsError(Exception):
    """Base class for every Smarkets error."""


# Connections and the wire


class ConnectionError(SmarketsError, builtins.ConnectionError):  # noqa: A001
    """A connection-level failure (TCP or TLS)."""


class SocketDisconnected(ConnectionError):
    """The connection was lost."""


class SessionLost(ConnectionError):
    """The session ended and cannot be resumed; its pending requests fail with this.

    ``sent`` is True when the request had gone out: the exchange may have
    acted on it (its answer, if any, reaches the handlers of a later session
    through the account-sequence replay).  False: it never left this process.
    """

    def __init__(self, message: str = "session lost", sent: bool | None = None) -> None:
        super().__init__(message)
        self.sent = sent


class LogoutUnconfirmed(SocketDisconnected):
    """The exchange did not confirm a logout: the connection was closed and the session ended here anyway."""


class TLSVerificationFailed(ConnectionError):
    """The exchange's certificate did not verify; ``reason`` says why (hostname mismatch, unknown CA...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"TLS verification failed: {reason}")
        self.reason = reason


class PeerTimeout(ConnectionError):
    """The peer sent nothing for several heartbeat periods."""


class ProtocolError(SmarketsError):
    """The peer broke the protocol; the connection is dropped."""


class DecodeError(ProtocolError):
    """A frame header could not be decoded."""


class FrameTooLarge(DecodeError):
    """A frame announced a payload larger than the configured limit."""

    def __init__(self, announced: int, limit: int) -> None:
        super().__init__(f"frame of {announced} bytes exceeds the limit of {limit} bytes")
        self.announced = announced
        self.limit = limit


class ParseError(ProtocolError):
    """A payload did not parse, or lacks a field the protocol requires."""


class UnknownMessageType(ParseError):
    """A payload's type is not one this library knows."""


class SequenceError(ProtocolError):
    """The peer's sequence numbers cannot be reconciled."""


class BadLoginResponse(SequenceError):
    """A login_response the client cannot use (no session id, a reset or seq out of range).

    The connection is dropped and the session abandoned: the next connection
    starts a new one.
    """


# Login and logout


#: The eto LogoutReason names, in words a person reads in a log line.
_LOGOUT_WORDS = {
    "LOGOUT_NONE": "no reason given",
    "LOGOUT_HEARTBEAT_TIMEOUT": "no heartbeat in time",
    "LOGOUT_CONFIRMATION": "logout confirmed",
    "LOGOUT_LOGIN_TIMEOUT": "no login in time",
    "LOGOUT_LOGIN_NOT_FIRST_SEQ": "the login was not the first payload",
    "LOGOUT_UNKNOWN_SESSION": "the exchange does not know the session",
    "LOGOUT_UNAUTHORISED": "bad username or password",
    "LOGOUT_SERVICE_TEMPORARILY_UNAVAILABLE": "service temporarily unavailable",
    "LOGOUT_DOWNTIME": "the exchange is down for maintenance",
    "LOGOUT_UNVERIFIED": "the account is not verified",
}


def logout_words(reason_name: str) -> str:
    """'LOGOUT_UNAUTHORISED' -> 'bad username or password'; a name not in the schema as it is."""
    return _LOGOUT_WORDS.get(reason_name, reason_name)


def reason_words(reason_name: str) -> str:
    """'ORDER_CANCELLED_MEMBER_REQUESTED' -> 'member requested'; 'ORDER_INVALID_INVALID_PRICE' -> 'invalid price';
    'ORDER_CANCEL_REPLACE_REJECTED_TOO_LATE' -> 'too late' (a ``reason_name`` of these errors, or of an order)."""
    return ", ".join(_REASON_PREFIX.sub("", name.strip()).replace("_", " ").lower()
                     for name in reason_name.split(","))


#: What the schema's order reason names start with: the request, then how it ended.
_REASON_PREFIX = re.compile(r"^ORDER_(?:[A-Z]+_)*?(?:REJECTED|CANCELLED|INVALID)_")


class LoginError(SmarketsError):
    """A login was refused; ``reason`` is the eto LogoutReason value (or None)."""

    def __init__(self, reason: int | None, reason_name: str | None = None) -> None:
        super().__init__(f"login refused: {logout_words(reason_name if reason_name is not None else str(reason))}")
        self.reason = reason
        self.reason_name = reason_name


class LoginTimeout(LoginError):
    """No login response arrived in time."""

    def __init__(self) -> None:
        SmarketsError.__init__(self, "no login response in time")
        self.reason = None
        self.reason_name = None


class LoggedOut(SmarketsError):
    """The exchange ended the session; ``reason`` is the eto LogoutReason value."""

    def __init__(self, reason: int | None, reason_name: str | None = None) -> None:
        super().__init__(f"logged out: {logout_words(reason_name if reason_name is not None else str(reason))}")
        self.reason = reason
        self.reason_name = reason_name


class NotLoggedIn(SmarketsError):
    """A request was made with no session to send it on."""


# Application API


class InvalidCallbackError(SmarketsError, ValueError):
    """An unknown handler name was given."""


class InvalidRequest(SmarketsError, ValueError):
    """A request with a value its field cannot carry: nothing was queued or sent.

    ``field`` names the field ('price'); the message says what was wrong with it.
    """

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class RequestTimeout(SmarketsError, TimeoutError):
    """The exchange did not answer a request in the time allowed.

    A timeout stops the waiting, not the request: when ``sent`` is True it
    went out (or will be resent on resume) and may still be acted on.
    """

    def __init__(self, message: str = "no answer from the exchange in time", sent: bool | None = None) -> None:
        super().__init__(message)
        self.sent = sent


class RequestCancelled(SmarketsError, CancelledError):
    """The caller cancelled a request's Deferred.

    Cancelling stops the waiting; ``sent`` says whether the request had gone
    out (the exchange may still act on it) or was dropped from the queue
    before it did (it never will).
    """

    def __init__(self, sent: bool) -> None:
        super().__init__("cancelled after it was sent" if sent else "cancelled before it was sent")
        self.sent = sent


class RequestRejected(SmarketsError):
    """The exchange refused a request; ``reason`` is the schema enum value."""

    def __init__(self, reason: int | None, reason_name: str | None = None, message: object = None) -> None:
        super().__init__(f"{type(self).__name__}: {reason_name if reason_name is not None else reason}")
        self.reason = reason
        self.reason_name = reason_name
        self.message = message


class OrderRejected(RequestRejected):
    """order_rejected: the order was refused (funds, market state, throttle...)."""


class OrderInvalid(RequestRejected):
    """order_invalid: the order was malformed; ``reasons`` lists every problem."""

    def __init__(self, reasons: Sequence[int], reason_names: Sequence[str] = (), message: object = None) -> None:
        SmarketsError.__init__(self, f"OrderInvalid: {', '.join(reason_names) or list(reasons)}")
        self.reasons = list(reasons)
        self.reason_names = list(reason_names)
        self.reason = self.reasons[0] if self.reasons else None
        self.reason_name = self.reason_names[0] if self.reason_names else None
        self.message = message


class CancelRejected(RequestRejected):
    """order_cancel_rejected."""


class CancelAllRejected(RequestRejected):
    """order_cancel_all_rejected."""


class ReduceRejected(RequestRejected):
    """order_quantity_reduce_rejected."""


class ReplaceRejected(RequestRejected):
    """order_cancel_replace_rejected."""


# Configuration


class ConfigurationError(SmarketsError, ValueError):
    """A configuration file or option is invalid; the message names it."""


# Trading


class InvalidPrice(SmarketsError, ValueError):
    """A price or odds that the exchange cannot take; the message names it."""


class InvalidQuantity(SmarketsError, ValueError):
    """A quantity or an amount of money that is negative or not a number."""


class InvalidId(SmarketsError, ValueError):
    """A uuid, slug or id number that does not parse; the message names it."""


class InvalidSide(SmarketsError, ValueError):
    """A side that is neither SIDE_BUY nor SIDE_SELL."""
