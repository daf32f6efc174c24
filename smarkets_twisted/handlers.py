"""Handlers by message name, as in the reference client, and listeners of the client's life.

``add_handler('seto.order_accepted', f)`` calls ``f(message)`` with the
message's body (``message.order_id``); a global handler is called as
``f(name, message)`` for every one.  Code written for the reference client
expects its shape instead: a named handler called with ``message=`` the whole
``seto.Payload`` (``message.order_accepted.order_id``,
``message.eto_payload.seq``, ``message.eto_payload.is_replay``), and a global
one with ``name=`` and ``message=`` a `Frame` of the payload's bytes and
protobuf.  ``whole_payload=True`` opts a handler into that shape.

A `ClientListener` hears what no message says: logged in, connection lost,
session ended, a gap in the exchange's seqs and its replay.  The trading
layer listens through both.

A handler or listener that raises is logged and disturbs neither the
connection nor the others: the first time with its traceback, then at the
10th, 100th, 1000th... time it raises the same error at the same place, so
that a hook failing on every quote does not drown the log.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from twisted.logger import Logger

from smarkets_twisted.errors import InvalidCallbackError
from smarkets_twisted.payloads import HANDLER_NAMES

Handler = Callable[..., object]
GlobalHandler = Callable[..., object]


class Frame(NamedTuple):
    """What the reference client gives a global handler: the payload's bytes and the payload."""

    bytes: bytes
    protobuf: Any


class ClientListener:
    """Hooks for the client's life; override the ones you need."""

    def logged_in(self, resumed: bool) -> None:
        """A connection logged in: ``resumed`` when it carried on the same session."""

    def connection_lost(self, reason: Exception) -> None:
        """The connection dropped; the session may still resume on the next one."""

    def session_ended(self, reason: Exception) -> None:
        """The session is over (logout, refusal, or it could not resume)."""

    def gap_opened(self) -> None:
        """The exchange's seqs jumped: a replay was asked for; nothing is delivered until it fills the gap."""

    def gapfilled(self) -> None:
        """The replay gapfilled a seq instead of resending it: what was there (a heartbeat, or data the
        exchange no longer held) is unknown."""

    def gap_closed(self) -> None:
        """The replay filled the gap: payloads are delivered in order again."""


class CallbackFailures:
    """How often each callback raised each error at each place, to log the first in full and then only counts."""

    log = Logger()

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, type[BaseException] | None], int] = {}

    def caught(self, callback: object, place: str) -> None:
        """Log the exception being handled (call in an ``except`` block) or, if it repeats, count it."""
        name = callback_name(callback)
        key = (name, place, sys.exc_info()[0])
        count = self._counts[key] = self._counts.get(key, 0) + 1
        if count == 1:
            self.log.failure("{callback} raised ({place})", callback=name, place=place)
        elif _is_power_of_ten(count):
            self.log.warn("{callback} has raised {count} times ({place}); the first time's traceback is above",
                          callback=name, count=count, place=place)


#: Every callback failure of the process.
failures = CallbackFailures()


def callback_name(callback: object) -> str:
    """What a log line calls a callback: ``Quoter.book_changed``, ``on_fill`` (a repr would show addresses)."""
    owner = getattr(callback, "__self__", None)
    function = getattr(callback, "__func__", callback)
    name = getattr(function, "__name__", None)
    if owner is not None and name is not None:
        return f"{type(owner).__qualname__}.{name}"
    return str(getattr(function, "__qualname__", None) or type(callback).__qualname__)


def _is_power_of_ten(count: int) -> bool:
    while count % 10 == 0:
        count //= 10
    return count == 1


class HandlerRegistry:
    """Named and global handlers, called in the order they were added, and listeners."""

    def __init__(self) -> None:
        # Tuples, replaced on each change: a handler that adds or removes
        # handlers while being called changes the next dispatch, not this one,
        # and dispatching copies nothing.
        self._handlers: dict[str, tuple[tuple[Handler, bool], ...]] = {}
        self._global: tuple[tuple[GlobalHandler, bool], ...] = ()
        self._listeners: list[ClientListener] = []

    def add_handler(self, name: str, handler: Handler, whole_payload: bool = False) -> None:
        if name not in HANDLER_NAMES:
            raise InvalidCallbackError(f"no message is named {name!r}")
        if not callable(handler):
            raise InvalidCallbackError(f"handler for {name!r} is not callable")
        self._handlers[name] = (*self._handlers.get(name, ()), (handler, whole_payload))

    def del_handler(self, name: str, handler: Handler) -> None:
        if name not in HANDLER_NAMES:
            raise InvalidCallbackError(f"no message is named {name!r}")
        self._handlers[name] = _without(self._handlers.get(name, ()), handler, f"handler not registered for {name!r}")

    def add_global_handler(self, handler: GlobalHandler, whole_payload: bool = False) -> None:
        if not callable(handler):
            raise InvalidCallbackError("global handler is not callable")
        self._global = (*self._global, (handler, whole_payload))

    def del_global_handler(self, handler: GlobalHandler) -> None:
        self._global = _without(self._global, handler, "global handler not registered")

    def add_listener(self, listener: ClientListener) -> None:
        self._listeners.append(listener)

    def del_listener(self, listener: ClientListener) -> None:
        if listener not in self._listeners:
            raise InvalidCallbackError("listener not registered")
        self._listeners.remove(listener)

    def dispatch(self, name: str, payload: Any, message: Any) -> None:
        """Call every handler for ``name``, then every global handler.

        ``message`` is the body of ``payload`` (see `payloads.name_and_body`).
        """
        for handler, whole in self._handlers.get(name, ()):
            try:
                if whole:
                    handler(message=payload)
                else:
                    handler(message)
            except Exception:
                failures.caught(handler, f"{name} handler")
        frame = None
        for global_handler, whole in self._global:
            try:
                if whole:
                    if frame is None:
                        frame = Frame(payload.SerializeToString(), payload)
                    global_handler(name=name, message=frame)
                else:
                    global_handler(name, message)
            except Exception:
                failures.caught(global_handler, f"global handler, on {name}")

    def notify(self, hook: str, *args: object) -> None:
        """Call ``hook`` (a `ClientListener` method name) on every listener."""
        notify(self._listeners, hook, *args)


def notify(listeners: Iterable[object], hook: str, *args: object) -> None:
    """Call the method ``hook`` of each listener; one that raises is logged."""
    for listener in tuple(listeners):
        try:
            getattr(listener, hook)(*args)
        except Exception:
            failures.caught(getattr(listener, hook, listener), f"{hook} hook")


def _without(entries: tuple[tuple[Any, bool], ...], handler: object, missing: str) -> tuple[tuple[Any, bool], ...]:
    """``entries`` less the first one for ``handler``; InvalidCallbackError if there is none."""
    for index, (registered, _) in enumerate(entries):
        if registered == handler:
            return entries[:index] + entries[index + 1 :]
    raise InvalidCallbackError(missing)
