"""Exchange accounts: credentials, money and the account-sequenced event history.

Money is held as integers in 1/10000 of the account currency, the unit of
the protocol's quantities (PROTOCOL.md section 7): ``"1000.00"`` is
``10_000_000``.  Amounts are parsed with :class:`decimal.Decimal`, never with
floats.

Every account event gets the next account sequence number; the account keeps
the last few thousand events so that a client logging in again with
``account_sequence_64 = N`` can be sent everything after ``N``.  A run of the
exchange numbers from a base it is given (`Account.number_from`), so that a
restarted exchange never repeats a sequence an earlier run sent.
"""

from __future__ import annotations

import hmac
import json
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import islice
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from smarkets_twisted.errors import ConfigurationError

#: Money and quantity units per unit of currency.
UNITS_PER_CURRENCY = 10_000

#: How many account events an account remembers for replay by default.
DEFAULT_HISTORY_LIMIT = 10_000

_ACCOUNT_KEYS = frozenset({"username", "password", "balance", "email", "id"})
_MAX_ID = 2**64 - 1
_NOBODY_PASSWORD = b"\x00" * 16


class Sequenced(Protocol):
    """Anything recorded in an account's history: it knows its account sequence."""

    @property
    def account_sequence(self) -> int:
        """The account sequence number assigned to this event."""


_E = TypeVar("_E", bound=Sequenced)
_P = ParamSpec("_P")


@dataclass(frozen=True)
class AccountReplay:
    """The account events after a given account sequence.

    :ivar events: the remembered events after that sequence, oldest first.
    :ivar truncated: True when some events of this run after that sequence
        have already been dropped from the bounded history (``events`` then
        starts later).  Events of an earlier run were never held: asking from
        one of their sequences is not truncation.
    """

    events: tuple[Sequenced, ...]
    truncated: bool


class Account:
    """One exchange account.

    ``balance`` is the settled cash; ``exposure`` is what open orders and
    matched positions could still lose, reserved by the matching engine.  The
    password is kept only to be checked, never shown by ``repr`` or ``str``.
    """

    def __init__(
        self,
        username: str,
        password: str,
        account_id: int,
        email: str,
        balance: int,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
    ) -> None:
        if history_limit < 0:
            raise ValueError("history_limit must not be negative")
        self.username = username
        self.account_id = account_id
        self.email = email
        self.balance = balance
        self.exposure = 0
        self._password = password.encode("utf-8")
        self._first_sequence = 0
        self._sequence = 0
        self._history: deque[Sequenced] = deque(maxlen=history_limit)

    def __repr__(self) -> str:
        return f"<Account {self.username!r} id={self.account_id}>"

    __str__ = __repr__

    @property
    def available_balance(self) -> int:
        """Balance less exposure: what a new order may put at risk."""
        return self.balance - self.exposure

    @property
    def account_sequence(self) -> int:
        """The sequence number of the latest account event (the base before any)."""
        return self._sequence

    def number_from(self, base: int) -> None:
        """Give this run's first account event the sequence ``base + 1``.

        :raises ValueError: when events are numbered already, or ``base`` is negative.
        """
        if self._sequence != self._first_sequence:
            raise ValueError(f"{self} has numbered account events already")
        if base < 0:
            raise ValueError("an account sequence base must not be negative")
        self._first_sequence = self._sequence = base

    def check_password(self, candidate: str) -> bool:
        """Compare ``candidate`` with the password in constant time."""
        return hmac.compare_digest(self._password, candidate.encode("utf-8"))

    def record(self, build: Callable[Concatenate[int, _P], _E], *args: _P.args, **kwargs: _P.kwargs) -> _E:
        """Build the next account event with its sequence number and remember it.

        :param build: called with the new account sequence and ``args``; returns the event.
        """
        event = build(self._sequence + 1, *args, **kwargs)
        self._sequence += 1
        self._history.append(event)
        return event

    def holds_events_after(self, account_sequence: int) -> bool:
        """Whether every event of this run after ``account_sequence`` is still remembered."""
        return max(account_sequence, self._first_sequence) + len(self._history) >= self._sequence

    def events_after(self, account_sequence: int) -> AccountReplay:
        """The remembered events whose account sequence is above ``account_sequence``."""
        if account_sequence >= self._sequence:
            return AccountReplay((), False)
        after = max(account_sequence, self._first_sequence)
        oldest_kept = self._sequence - len(self._history) + 1
        start = max(0, after + 1 - oldest_kept)
        return AccountReplay(tuple(islice(self._history, start, None)), after + 1 < oldest_kept)


class Accounts:
    """Every account of the exchange, by username and by numeric id."""

    def __init__(self, accounts: list[Account]) -> None:
        self._by_username: dict[str, Account] = {}
        self._by_id: dict[int, Account] = {}
        for account in accounts:
            if account.username in self._by_username:
                raise ValueError(f"duplicate username {account.username!r}")
            if account.account_id in self._by_id:
                raise ValueError(f"duplicate account id {account.account_id}")
            self._by_username[account.username] = account
            self._by_id[account.account_id] = account

    def __iter__(self) -> Iterator[Account]:
        return iter(self._by_username.values())

    def __len__(self) -> int:
        return len(self._by_username)

    def get(self, username: str) -> Account | None:
        """The account named ``username``, or None."""
        return self._by_username.get(username)

    def by_id(self, account_id: int) -> Account | None:
        """The account with numeric id ``account_id``, or None."""
        return self._by_id.get(account_id)

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account if ``password`` is right for ``username``, else None."""
        account = self._by_username.get(username)
        if account is None:
            # Spend the same comparison, so that timing does not tell which
            # usernames exist.
            hmac.compare_digest(_NOBODY_PASSWORD, password.encode("utf-8"))
            return None
        return account if account.check_password(password) else None


def parse_amount(text: object) -> int:
    """Turn a currency amount (``"1000.00"``, or an integer) into 1/10000 units.

    :raises ValueError: for anything else: floats, negative amounts, more than
        four decimal places, text that is not a number.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, Decimal)):
        raise ValueError(f'amount must be a string such as "1000.00", not {type(text).__name__}')
    try:
        amount = Decimal(text.strip() if isinstance(text, str) else text)
    except InvalidOperation:
        raise ValueError(f"amount {text!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"amount {text!r} is not a finite number")
    units = amount * UNITS_PER_CURRENCY
    if units != units.to_integral_value():
        raise ValueError(f"amount {text!r} has more than four decimal places")
    if units < 0:
        raise ValueError(f"amount {text!r} is negative")
    return int(units)


def default_accounts(history_limit: int = DEFAULT_HISTORY_LIMIT) -> Accounts:
    """The built-in accounts: ``demo`` / ``demo`` with a balance of 1000.00."""
    return Accounts([Account("demo", "demo", 1, "demo@example.invalid", parse_amount("1000.00"), history_limit)])


def load_accounts(path: str | os.PathLike[str], history_limit: int = DEFAULT_HISTORY_LIMIT) -> Accounts:
    """Read an accounts file.

    The format is ``{"accounts": [{"username": "demo", "password": "demo",
    "balance": "1000.00"}]}`` with optional ``"email"`` and ``"id"`` per
    account; accounts without an id are numbered after the highest given one.

    :raises ConfigurationError: naming the file and the problem.
    """
    document = read_json_file(path)
    where = os.fspath(path)
    if not isinstance(document, dict) or set(document) != {"accounts"}:
        raise ConfigurationError(f'{where}: expected an object with one key, "accounts"')
    entries = document["accounts"]
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(f'{where}: "accounts" must be a non-empty list')
    fields = [_account_fields(where, index, entry) for index, entry in enumerate(entries)]
    given_ids = [account_id for _, _, account_id, _, _ in fields if account_id is not None]
    next_id = max(given_ids, default=0) + 1
    seen_usernames: set[str] = set()
    seen_ids: set[int] = set()
    accounts = []
    for index, (username, password, account_id, email, balance) in enumerate(fields):
        if username in seen_usernames:
            raise ConfigurationError(f"{where}: accounts[{index}]: duplicate username {username!r}")
        if account_id is None:
            account_id, next_id = next_id, next_id + 1
        if account_id in seen_ids:
            raise ConfigurationError(f"{where}: accounts[{index}]: duplicate id {account_id}")
        seen_usernames.add(username)
        seen_ids.add(account_id)
        email = email if email is not None else f"{username}@example.invalid"
        accounts.append(Account(username, password, account_id, email, balance, history_limit))
    return Accounts(accounts)


def _account_fields(where: str, index: int, entry: object) -> tuple[str, str, int | None, str | None, int]:
    """Check one account entry; return (username, password, id, email, balance)."""
    place = f"{where}: accounts[{index}]"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{place}: expected an object")
    unknown = sorted(set(entry) - _ACCOUNT_KEYS)
    if unknown:
        raise ConfigurationError(f"{place}: unknown key {unknown[0]!r}")
    for key in ("username", "password", "balance"):
        if key not in entry:
            raise ConfigurationError(f"{place}: missing key {key!r}")
    username, password, email = entry["username"], entry["password"], entry.get("email")
    if not isinstance(username, str) or not username:
        raise ConfigurationError(f'{place}: "username" must be a non-empty string')
    if not isinstance(password, str) or not password:
        raise ConfigurationError(f'{place}: "password" must be a non-empty string')
    if email is not None and not isinstance(email, str):
        raise ConfigurationError(f'{place}: "email" must be a string')
    account_id = entry.get("id")
    if account_id is not None and not _is_id(account_id):
        raise ConfigurationError(f'{place}: "id" must be an integer from 1 to {_MAX_ID}')
    try:
        balance = parse_amount(entry["balance"])
    except ValueError as error:
        raise ConfigurationError(f'{place}: bad "balance": {error}') from None
    return username, password, account_id, email, balance


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _MAX_ID


def read_json_file(path: str | os.PathLike[str]) -> object:
    """Read a JSON configuration file; numbers with a fraction become Decimal.

    :raises ConfigurationError: naming the file, when it cannot be read, is not
        JSON, or repeats a key within one object.
    """
    where = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        raise ConfigurationError(f"{where}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{where}: not UTF-8 text") from None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{where}: not valid JSON: {error}") from None
    except _DuplicateKey as error:
        raise ConfigurationError(f"{where}: key {error.args[0]!r} appears twice in one object") from None
    except _BadConstant as error:
        raise ConfigurationError(f"{where}: {error.args[0]} is not allowed") from None


class _DuplicateKey(ValueError):
    """Raised inside json.loads when an object repeats a key."""


class _BadConstant(ValueError):
    """Raised inside json.loads for NaN and Infinity, which are not JSON."""


def _no_constant(name: str) -> object:
    raise _BadConstant(name)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result
