"""Handlers by message name, as in the reference client.

``add_handler('seto.order_accepted', f)`` calls ``f(message)`` for each such
message; a global handler is called as ``f(name, message)`` for every one.  A
handler that raises is logged and disturbs neither the connection nor the
other handlers.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger

from smarkets_twisted.errors import InvalidCallbackError
from smarkets_twisted.payloads import HANDLER_NAMES

Handler = Callable[[object], object]
GlobalHandler = Callable[[str, object], object]


class HandlerRegistry:
    """Named and global handlers, called in the order they were added."""

    log = Logger()

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._global: list[GlobalHandler] = []

    def add_handler(self, name: str, handler: Handler) -> None:
        if name not in HANDLER_NAMES:
            raise InvalidCallbackError(f"no message is named {name!r}")
        if not callable(handler):
            raise InvalidCallbackError(f"handler for {name!r} is not callable")
        self._handlers.setdefault(name, []).append(handler)

    def del_handler(self, name: str, handler: Handler) -> None:
        if name not in HANDLER_NAMES:
            raise InvalidCallbackError(f"no message is named {name!r}")
        handlers = self._handlers.get(name, [])
        if handler not in handlers:
            raise InvalidCallbackError(f"handler not registered for {name!r}")
        handlers.remove(handler)

    def add_global_handler(self, handler: GlobalHandler) -> None:
        if not callable(handler):
            raise InvalidCallbackError("global handler is not callable")
        self._global.append(handler)

    def del_global_handler(self, handler: GlobalHandler) -> None:
        if handler not in self._global:
            raise InvalidCallbackError("global handler not registered")
        self._global.remove(handler)

    def dispatch(self, name: str, message: object) -> None:
        """Call every handler for ``name``, then every global handler."""
        for handler in tuple(self._handlers.get(name, ())):
            try:
                handler(message)
            except Exception:
                self.log.failure("handler {handler!r} for {name} raised", handler=handler, name=name)
        for global_handler in tuple(self._global):
            try:
                global_handler(name, message)
            except Exception:
                self.log.failure("global handler {handler!r} raised on {name}", handler=global_handler, name=name)
