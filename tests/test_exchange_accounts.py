"""Tests for smarkets_twisted.exchange.accounts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.errors import ConfigurationError
from smarkets_twisted.exchange.accounts import (
    Account,
    AccountReplay,
    Accounts,
    default_accounts,
    load_accounts,
    parse_amount,
)


@dataclass(frozen=True)
class _Note:
    account_sequence: int
    text: str


class ParseAmountTests(SynchronousTestCase):
    """Currency amounts become integers of 1/10000 units, exactly."""

    def test_strings(self) -> None:
        self.assertEqual(parse_amount("1000.00"), 10_000_000)
        self.assertEqual(parse_amount("0.0001"), 1)
        self.assertEqual(parse_amount(" 12.5 "), 125_000)
        self.assertEqual(parse_amount("0"), 0)

    def test_integers_and_decimals(self) -> None:
        self.assertEqual(parse_amount(25), 250_000)
        self.assertEqual(parse_amount(Decimal("0.1")), 1_000)

    def test_refused(self) -> None:
        for bad in ["abc", "", "1.00001", "-1", "NaN", "Infinity", 1.5, True, None, [1]]:
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                parse_amount(bad)


class AccountTests(SynchronousTestCase):
    """Credentials, money and the account-sequenced history."""

    def make(self, history_limit: int = 5) -> Account:
        return Account("alice", "s3cret-pw", 7, "alice@example.com", 10_000_000, history_limit)

    def test_password_never_shown(self) -> None:
        account = self.make()
        for text in (repr(account), str(account), f"{account}", repr([account])):
            self.assertNotIn("s3cret-pw", text)
            self.assertIn("alice", text)

    def test_check_password(self) -> None:
        account = self.make()
        self.assertTrue(account.check_password("s3cret-pw"))
        self.assertFalse(account.check_password("s3cret-p"))
        self.assertFalse(account.check_password(""))
        self.assertFalse(account.check_password("s3cret-pw\u00e9"))

    def test_available_balance(self) -> None:
        account = self.make()
        account.exposure = 2_500_000
        self.assertEqual(account.available_balance, 7_500_000)

    def test_sequence_increases(self) -> None:
        account = self.make()
        self.assertEqual(account.account_sequence, 0)
        first = account.record(lambda sequence: _Note(sequence, "one"))
        second = account.record(lambda sequence: _Note(sequence, "two"))
        self.assertEqual((first.account_sequence, second.account_sequence), (1, 2))
        self.assertEqual(account.account_sequence, 2)

    def test_a_failed_build_takes_no_sequence(self) -> None:
        """The events a client sees stay numbered without a gap, even after one that could not be made."""
        account = self.make()
        account.record(lambda sequence: _Note(sequence, "one"))

        def broken(sequence: int) -> _Note:
            raise RuntimeError("cannot build")

        self.assertRaises(RuntimeError, account.record, broken)
        second = account.record(lambda sequence: _Note(sequence, "two"))
        self.assertEqual(second.account_sequence, 2)
        self.assertEqual([note.account_sequence for note in account.events_after(0).events], [1, 2])

    def test_events_after(self) -> None:
        account = self.make()
        notes = [account.record(lambda sequence: _Note(sequence, "x")) for _ in range(3)]
        self.assertEqual(account.events_after(0), AccountReplay(tuple(notes), False))
        self.assertEqual(account.events_after(1), AccountReplay(tuple(notes[1:]), False))
        self.assertEqual(account.events_after(3), AccountReplay((), False))
        self.assertEqual(account.events_after(99), AccountReplay((), False))

    def test_history_bounded(self) -> None:
        """Only the last history_limit events are kept; asking for older ones says so."""
        account = self.make(history_limit=5)
        notes = [account.record(lambda sequence: _Note(sequence, "x")) for _ in range(12)]
        self.assertEqual(account.events_after(0), AccountReplay(tuple(notes[7:]), True))
        self.assertEqual(account.events_after(6), AccountReplay(tuple(notes[7:]), True))
        self.assertEqual(account.events_after(7), AccountReplay(tuple(notes[7:]), False))
        self.assertEqual(account.events_after(10), AccountReplay(tuple(notes[10:]), False))

    def test_numbered_from_a_base(self) -> None:
        """A run's events follow its base; the earlier run's sequences below it were never held, not lost."""
        account = self.make(history_limit=5)
        account.number_from(1_000)
        self.assertEqual(account.account_sequence, 1_000)
        notes = [account.record(lambda sequence: _Note(sequence, "x")) for _ in range(3)]
        self.assertEqual([note.account_sequence for note in notes], [1_001, 1_002, 1_003])
        self.assertEqual(account.events_after(500), AccountReplay(tuple(notes), False))
        self.assertTrue(account.holds_events_after(500))
        notes += [account.record(lambda sequence: _Note(sequence, "x")) for _ in range(3)]
        self.assertEqual(account.events_after(500), AccountReplay(tuple(notes[1:]), True))
        self.assertFalse(account.holds_events_after(500))
        self.assertRaises(ValueError, account.number_from, 2_000)  # its events are numbered already

    def test_no_history(self) -> None:
        account = self.make(history_limit=0)
        account.record(lambda sequence: _Note(sequence, "x"))
        self.assertEqual(account.events_after(0), AccountReplay((), True))
        self.assertEqual(account.events_after(1), AccountReplay((), False))

    def test_negative_history_limit(self) -> None:
        self.assertRaises(ValueError, self.make, -1)


class AccountsTests(SynchronousTestCase):
    """The registry of accounts."""

    def test_default(self) -> None:
        accounts = default_accounts()
        demo = accounts.get("demo")
        assert demo is not None
        self.assertEqual(demo.balance, 10_000_000)
        self.assertEqual(demo.exposure, 0)
        self.assertIs(accounts.authenticate("demo", "demo"), demo)
        self.assertIs(accounts.by_id(demo.account_id), demo)
        self.assertEqual(list(accounts), [demo])
        self.assertEqual(len(accounts), 1)

    def test_authenticate(self) -> None:
        accounts = default_accounts()
        self.assertIsNone(accounts.authenticate("demo", "wrong"))
        self.assertIsNone(accounts.authenticate("nobody", "demo"))
        self.assertIsNone(accounts.get("nobody"))

    def test_duplicates_refused(self) -> None:
        one = Account("a", "p", 1, "a@x", 0)
        self.assertRaises(ValueError, Accounts, [one, Account("a", "p", 2, "a@x", 0)])
        self.assertRaises(ValueError, Accounts, [one, Account("b", "p", 1, "b@x", 0)])


class LoadAccountsTests(SynchronousTestCase):
    """Accounts files: the documented format, and a clear error for each problem."""

    def write(self, content: str) -> str:
        path = FilePath(self.mktemp())
        path.setContent(content.encode("utf-8"))
        return path.path

    def write_json(self, document: object) -> str:
        return self.write(json.dumps(document))

    def assertBadFile(self, path: str, *fragments: str) -> None:
        error = self.assertRaises(ConfigurationError, load_accounts, path)
        message = str(error)
        self.assertIn(path, message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_minimal(self) -> None:
        path = self.write_json({"accounts": [{"username": "demo", "password": "demo", "balance": "1000.00"}]})
        accounts = load_accounts(path)
        demo = accounts.get("demo")
        assert demo is not None
        self.assertEqual(demo.balance, 10_000_000)
        self.assertEqual(demo.account_id, 1)
        self.assertEqual(demo.email, "demo@example.invalid")
        self.assertTrue(demo.check_password("demo"))

    def test_full(self) -> None:
        path = self.write(
            '{"accounts": ['
            '{"username": "a", "password": "pa", "balance": "12.3456", "email": "a@example.com", "id": 40},'
            '{"username": "b", "password": "pb", "balance": 5},'
            '{"username": "c", "password": "pc", "balance": 0.25}'
            "]}"
        )
        accounts = load_accounts(path, history_limit=3)
        a, b, c = accounts.get("a"), accounts.get("b"), accounts.get("c")
        assert a is not None and b is not None and c is not None
        self.assertEqual((a.account_id, a.email, a.balance), (40, "a@example.com", 123_456))
        self.assertEqual((b.account_id, b.balance), (41, 50_000))
        self.assertEqual((c.account_id, c.balance), (42, 2_500))
        self.assertIs(accounts.authenticate("b", "pb"), b)

    def test_history_limit_applies(self) -> None:
        path = self.write_json({"accounts": [{"username": "a", "password": "p", "balance": "1"}]})
        account = load_accounts(path, history_limit=2).get("a")
        assert account is not None
        for _ in range(3):
            account.record(lambda sequence: _Note(sequence, "x"))
        self.assertTrue(account.events_after(0).truncated)

    def test_missing_file(self) -> None:
        self.assertBadFile(self.mktemp(), "cannot read")

    def test_not_json(self) -> None:
        self.assertBadFile(self.write("{accounts: ["), "not valid JSON")

    def test_not_utf8(self) -> None:
        path = FilePath(self.mktemp())
        path.setContent(b'{"accounts": "\xff"}')
        self.assertBadFile(path.path, "UTF-8")

    def test_nan_refused(self) -> None:
        self.assertBadFile(self.write('{"accounts": [{"username": "a", "password": "p", "balance": NaN}]}'), "NaN")

    def test_duplicate_key(self) -> None:
        self.assertBadFile(self.write('{"accounts": [], "accounts": []}'), "'accounts' appears twice")

    def test_wrong_top_level(self) -> None:
        self.assertBadFile(self.write_json([]), '"accounts"')
        self.assertBadFile(self.write_json({"users": []}), '"accounts"')
        self.assertBadFile(self.write_json({"accounts": []}), "non-empty list")
        self.assertBadFile(self.write_json({"accounts": {}}), "non-empty list")

    def test_entry_problems(self) -> None:
        good = {"username": "a", "password": "p", "balance": "1.00"}
        cases: list[tuple[object, str]] = [
            ("text", "expected an object"),
            ({"password": "p", "balance": "1"}, "missing key 'username'"),
            ({"username": "a", "balance": "1"}, "missing key 'password'"),
            ({"username": "a", "password": "p"}, "missing key 'balance'"),
            ({**good, "balanse": "1"}, "unknown key 'balanse'"),
            ({**good, "username": ""}, '"username"'),
            ({**good, "username": 3}, '"username"'),
            ({**good, "password": ""}, '"password"'),
            ({**good, "email": 5}, '"email"'),
            ({**good, "id": 0}, '"id"'),
            ({**good, "id": "7"}, '"id"'),
            ({**good, "id": True}, '"id"'),
            ({**good, "balance": "lots"}, 'bad "balance"'),
            ({**good, "balance": "-5"}, "negative"),
            ({**good, "balance": "1.000001"}, "four decimal places"),
            ({**good, "balance": None}, 'bad "balance"'),
        ]
        for entry, fragment in cases:
            with self.subTest(entry=entry):
                self.assertBadFile(
                    self.write_json({"accounts": [good | {"username": "z"}, entry]}), "accounts[1]", fragment
                )

    def test_secret_not_in_error(self) -> None:
        path = self.write_json({"accounts": [{"username": "a", "password": "hunter2", "balance": "x"}]})
        self.assertNotIn("hunter2", str(self.assertRaises(ConfigurationError, load_accounts, path)))

    def test_duplicate_username(self) -> None:
        entry = {"username": "a", "password": "p", "balance": "1"}
        self.assertBadFile(self.write_json({"accounts": [entry, entry]}), "accounts[1]", "duplicate username 'a'")

    def test_duplicate_id(self) -> None:
        path = self.write_json(
            {
                "accounts": [
                    {"username": "a", "password": "p", "balance": "1", "id": 3},
                    {"username": "b", "password": "p", "balance": "1", "id": 3},
                ]
            }
        )
        self.assertBadFile(path, "accounts[1]", "duplicate id 3")
