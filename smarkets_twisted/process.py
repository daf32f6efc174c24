"""The exit status of ``twistd smarkets`` and ``twistd smarkets-exchange``.

twistd runs until its reactor stops, then exits 0, or re-raises the signal
that stopped it (130 in a shell after Ctrl-C, 143 after SIGTERM).  A process
that cannot do its job (a login refused for good, a port it cannot listen
on) must say why in one line and exit non-zero, so that a supervisor sees it
fail: the caller logs the line, then `exit_after_stop` stops the reactor (the
services stop cleanly: logout, journal closed) and has the process exit 1
once twistd is done with it.

What stops twistd before its reactor runs must be said in one line too:
twistd prints its whole usage text before an option's error, and a
traceback for an exception raised while starting.  Daemonised (without
``-n``), twistd's first process exits 0 once the daemon has started its
services, unless starting them raised: a service that cannot start logs its
line, then raises `said` (the first process prints it and exits 1; the
daemon logs no traceback under the line).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any, TypeVar

from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python import usage

#: The status of a process that could not do its job.
EXIT_FAILURE = 1

#: Registers the last thing the interpreter does (replaced in tests).
at_exit = atexit.register

_status: list[int] = []

_log = Logger()

#: The exceptions `said` marked, to be ended on without a traceback.
_said: list[BaseException] = []

#: The reactors `quiet_while_stopping` was set up for.
_quieted: set[int] = set()


def exit_after_stop(reactor: Any, status: int = EXIT_FAILURE) -> None:
    """Stop the reactor; the process then exits with ``status`` instead of twistd's 0."""
    if not _status:
        at_exit(_exit)
    _status[:] = [status]
    if reactor.running:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping
    else:
        # Failing in startService: twistd starts the reactor next.
        reactor.callWhenRunning(reactor.stop)


def _exit() -> None:
    """Runs after twistd returned: flush what was printed, then leave with the status."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_status[0])


_Error = TypeVar("_Error", bound=BaseException)


def said(error: _Error) -> _Error:
    """``error``, already logged in one line: should it end the process, Python prints no traceback of it."""
    if not _said:
        previous = sys.excepthook

        def quiet(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
            if value not in _said:
                previous(kind, value, traceback)

        sys.excepthook = quiet
    _said.append(error)
    return error


def daemonised(options: usage.Options) -> bool:
    """Whether twistd runs the service of these options without ``-n``."""
    twistd = getattr(options, "parent", None)
    return twistd is not None and not twistd.get("nodaemon", True)


@contextmanager
def usage_error_in_one_line(options: usage.Options) -> Iterator[None]:
    """Under twistd, a UsageError raised in the block is one line on stderr (``twistd smarkets: ...``) and exit 1.

    twistd would print the whole usage text first, burying the reason (``--help``
    still prints it).  Options parsed by themselves, not as twistd's subcommand
    (tests, other programs), still raise.
    """
    try:
        yield
    except usage.UsageError as error:
        twistd = getattr(options, "parent", None)
        if twistd is None:
            raise
        print(f"twistd {twistd.subCommand}: {error}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None


def quiet_while_stopping(reactor: Any) -> None:
    """Once the reactor is stopping, a further SIGINT or SIGTERM is said in one line, and changes nothing.

    Twisted's handlers would call ``reactor.stop()`` again, which raises
    ReactorNotRunning, logged as a critical traceback, while the services are
    still logging out and flushing the journal (a second Ctrl-C, or a
    supervisor's TERM after an INT).  The first signal still decides the exit
    status.
    """
    if id(reactor) in _quieted:
        return
    _quieted.add(id(reactor))
    reactor.addSystemEventTrigger("before", "shutdown", _quiet_signals)


def _quiet_signals() -> None:
    for number in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, _already_stopping)


def _already_stopping(number: int, frame: FrameType | None) -> None:
    _log.info("{signal}: already stopping (cancelling, logging out, flushing the journal)",
              signal=signal.Signals(number).name)
