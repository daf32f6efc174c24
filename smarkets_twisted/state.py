"""The state file: what a restarted client needs to lose nothing.

It holds the account sequence of the last account event processed (its
handlers ran), saved once per read of the connection that carried account
events (a synced write per event would block the reactor through a long
replay), atomically: written to a temporary file, synced, then renamed over
the old one, so that a crash leaves either the old state or the new, never
half of one.  Read at start, it makes the first login ask the exchange for
every account event after it (the fills and cancels that happened while the
client was down), each delivered once.
"""

from __future__ import annotations

import json
import os

from twisted.logger import Logger

from smarkets_twisted.errors import SmarketsError
from smarkets_twisted.factory import SmarketsClientFactory


class StateFileError(SmarketsError):
    """A state file cannot be read, or belongs to another account; the message names it."""


class StateFile:
    """Saves and reads the last account sequence processed, for one username."""

    log = Logger()

    def __init__(self, path: str, username: str | None) -> None:
        self.path = path
        self.username = username
        self._failing = False
        #: What `load` found: the account sequence saved, or None (no state file yet, or not read).
        self.loaded: int | None = None

    def load(self) -> int | None:
        """The account sequence saved, or None when there is no state file yet."""
        try:
            with open(self.path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateFileError(f"cannot read state file {self.path}: {e.strerror}") from None
        except ValueError:
            raise StateFileError(f"state file {self.path} is not JSON") from None
        sequence = state.get("account_sequence") if isinstance(state, dict) else None
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
            raise StateFileError(f"state file {self.path} has no account_sequence")
        if state.get("username") != self.username:
            raise StateFileError(f"state file {self.path} is for {state.get('username')!r}, not {self.username!r}")
        self.loaded = sequence
        return sequence

    def save(self, account_sequence: int) -> None:
        """Replace the state file with this sequence; a failure is logged, not raised."""
        temporary = f"{self.path}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as f:
                json.dump({"username": self.username, "account_sequence": account_sequence}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        except OSError as e:
            if not self._failing:
                self.log.error("cannot save state file {path}: {error}", path=self.path, error=e.strerror)
            self._failing = True
            return
        if self._failing:
            self.log.info("state file {path} saved again", path=self.path)
        self._failing = False

    def attach(self, factory: SmarketsClientFactory) -> None:
        """Save after each read in which ``factory`` processed account events; say where the client resumes from."""
        if self.loaded is None:
            self.log.info("state file {path}: none yet; it is written after the first account event", path=self.path)
        else:
            self.log.info("state file {path}: account sequence {sequence}; the exchange is asked for every account"
                          " event after it", path=self.path, sequence=self.loaded)
        factory.on_account_event = self.save
