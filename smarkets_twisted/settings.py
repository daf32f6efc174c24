"""Client settings, in the spirit of the reference client's SessionSettings."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field

from smarkets_twisted.errors import ConfigurationError
from smarkets_twisted.framing import DEFAULT_MAX_FRAME_SIZE
from smarkets_twisted.session import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_PEER_TIMEOUT, DEFAULT_SENT_LOG_SIZE

#: The production endpoint of the reference client.
DEFAULT_ENDPOINT = "tls:stream.smarkets.com:3801"

#: Fields that are a number of seconds, and whether None (wait forever) is allowed.
_DURATIONS = {
    "heartbeat_interval": False,
    "peer_timeout": False,
    "login_timeout": False,
    "logout_timeout": False,
    "request_timeout": True,
    "ping_timeout": True,
}


@dataclass(frozen=True)
class ClientSettings:
    """Who to log in as and how to behave on the wire.

    Immutable and checked when made, so that a misspelt or mistyped setting
    fails at once with a ConfigurationError (a ValueError) naming it, not
    later inside a callback.
    ``password`` and ``cookie`` are excluded from the repr, so that a settings
    object can be logged.  ``token`` (the reference client's name) is taken
    as the cookie; a cookie may be ``str`` or ``bytes``.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cookie: bytes | None = field(default=None, repr=False)
    #: Send a heartbeat after this many idle seconds.
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    #: Drop the connection after this many silent seconds (then resume).
    peer_timeout: float = DEFAULT_PEER_TIMEOUT
    #: Fail a login that has no answer after this many seconds.
    login_timeout: float = 30.0
    #: Drop the connection and end the session when a logout is not confirmed in this many seconds.
    logout_timeout: float = 10.0
    #: Default timeout for request Deferreds, in seconds; None waits forever.
    request_timeout: float | None = None
    #: Default timeout for ping Deferreds, in seconds; None waits forever.
    ping_timeout: float | None = 30.0
    #: Largest payload accepted from the exchange, in bytes.
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    #: How many sent payloads are kept to answer the exchange's replay requests.
    sent_log_size: int = DEFAULT_SENT_LOG_SIZE
    #: The last account sequence already processed (from a state file): a new
    #: session's login asks the exchange for the account events after it.
    account_sequence: int | None = None
    token: InitVar[str | bytes | None] = None

    def __post_init__(self, token: str | bytes | None) -> None:
        if token is not None:
            if self.cookie is not None:
                raise ConfigurationError("ClientSettings: give token or cookie, not both")
            object.__setattr__(self, "cookie", token)
        if isinstance(self.cookie, str):
            object.__setattr__(self, "cookie", self.cookie.encode("utf-8"))
        for name in ("username", "password"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"ClientSettings.{name} must be a str, not {type(value).__name__}")
        if self.cookie is not None and not isinstance(self.cookie, bytes):
            raise ConfigurationError(f"ClientSettings.cookie must be str or bytes, not {type(self.cookie).__name__}")
        if self.username is None and self.cookie is None:
            raise ConfigurationError("ClientSettings needs a username (and password) or a cookie (token)")
        for name, optional in _DURATIONS.items():
            _check_positive(name, getattr(self, name), optional, number=(int, float))
        for name in ("max_frame_size", "sent_log_size"):
            _check_positive(name, getattr(self, name), False, number=(int,))
        sequence = self.account_sequence
        if sequence is not None and (isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0):
            raise ConfigurationError(
                f"ClientSettings.account_sequence must be an integer from 0, or None, not {sequence!r}"
            )


def _check_positive(name: str, value: object, optional: bool, number: tuple[type, ...]) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, number) or not value > 0:  # type: ignore[operator]
        kind = "an integer" if number == (int,) else "a number of seconds"
        allowed = " or None" if optional else ""
        raise ConfigurationError(f"ClientSettings.{name} must be {kind} above 0{allowed}, not {value!r}")


#: The reference client's name.
SessionSettings = ClientSettings
