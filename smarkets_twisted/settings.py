"""Client settings, in the spirit of the reference client's SessionSettings."""

from __future__ import annotations

from dataclasses import dataclass, field

from smarkets_twisted.framing import DEFAULT_MAX_FRAME_SIZE
from smarkets_twisted.session import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_PEER_TIMEOUT, DEFAULT_SENT_LOG_SIZE

#: The production endpoint of the reference client.
DEFAULT_ENDPOINT = "tls:stream.smarkets.com:3801"


@dataclass
class ClientSettings:
    """Who to log in as and how to behave on the wire.

    ``password`` and ``cookie`` are excluded from the repr, so that a settings
    object can be logged.
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
    #: Default timeout for request Deferreds, in seconds; None waits forever.
    request_timeout: float | None = None
    #: Largest payload accepted from the exchange, in bytes.
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    #: How many sent payloads are kept to answer the exchange's replay requests.
    sent_log_size: int = DEFAULT_SENT_LOG_SIZE

    def __post_init__(self) -> None:
        if self.username is None and self.cookie is None:
            raise ValueError("ClientSettings needs a username (and password) or a cookie")


#: The reference client's name.
SessionSettings = ClientSettings
