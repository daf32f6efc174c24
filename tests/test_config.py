"""Configuration files: inheritance across directories, and `twistd smarkets --config`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import tap
from smarkets_twisted.config import ConfigurationReader, read_options
from smarkets_twisted.errors import ConfigurationError


class ReaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.etc = self.root / "etc"
        self.home = self.root / "home"
        self.etc.mkdir(parents=True)
        self.home.mkdir()

    def test_order_of_the_reference_client(self) -> None:
        # B inherits from A; files /etc/conf/B.conf, /home/conf/A.conf, /home/conf/B.conf.
        (self.etc / "B.conf").write_text("[inherit]\nfrom = A.conf\n[smarkets]\nusername = etc-b\n")
        (self.home / "A.conf").write_text("[smarkets]\nusername = home-a\ninterval = 2\n")
        (self.home / "B.conf").write_text("[smarkets]\nusername = home-b\nendpoint = tcp:h:1\n")
        reader = ConfigurationReader((str(self.etc), str(self.home)))
        self.assertEqual(reader.files("B.conf"),
                         [str(self.home / "A.conf"), str(self.home / "B.conf"), str(self.etc / "B.conf")])
        merged = reader.read("B.conf")
        self.assertEqual(dict(merged["smarkets"]), {"username": "etc-b", "interval": "2", "endpoint": "tcp:h:1"})
        self.assertFalse(merged.has_section("inherit"))

    def test_loops_missing_parents_and_bad_syntax_are_named(self) -> None:
        (self.home / "a.conf").write_text("[inherit]\nfrom = b.conf\n")
        (self.home / "b.conf").write_text("[inherit]\nfrom = a.conf\n")
        (self.home / "c.conf").write_text("[inherit]\nfrom = nowhere.conf\n")
        (self.home / "d.conf").write_text("username = no section\n")
        reader = ConfigurationReader((str(self.home),))
        for name, words in [("a.conf", "a.conf -> b.conf -> a.conf"), ("c.conf", "nowhere.conf not found"),
                            ("d.conf", "bad configuration"), ("e.conf", "e.conf not found")]:
            with self.assertRaises(ConfigurationError) as caught:
                reader.read(name)
            self.assertIn(words, str(caught.exception))

    def test_a_bad_line_is_named_by_number_never_quoted(self) -> None:
        """configparser quotes the line it cannot read, and a password is just what a user may have put there."""
        for text, words in [("password = hunter2\n[smarkets]\n", "line 1: an option before any [section]"),
                            ("[smarkets]\nusername = me\nhunter2\n", "line 3: not 'name = value'"),
                            ("[smarkets]\npassword = a\npassword = hunter2\n", "line 3: option 'password'")]:
            (self.home / "bad.conf").write_text(text)
            with self.assertRaises(ConfigurationError) as caught:
                ConfigurationReader((str(self.home),)).read("bad.conf")
            message = str(caught.exception)
            self.assertIn(f"bad configuration {self.home / 'bad.conf'}: {words}", message)
            self.assertNotIn("hunter2", message)

    def test_a_path_is_looked_up_in_its_directory_first(self) -> None:
        (self.home / "base.conf").write_text("[smarkets]\nrequest_timeout = 9\n")
        (self.etc / "live.conf").write_text("[inherit]\nfrom = base.conf\n[smarkets]\nusername = me\n")
        options = read_options(str(self.etc / "live.conf"), directories=(str(self.home),))
        self.assertEqual(options, {"request-timeout": "9", "username": "me"})

    def test_a_path_is_that_file_only(self) -> None:
        (self.etc / "live.conf").write_text("[smarkets]\nusername = me\n")
        (self.home / "live.conf").write_text("[smarkets]\nusername = someone else\ninterval = 1\n")
        options = read_options(str(self.etc / "live.conf"), directories=(str(self.home),))
        self.assertEqual(options, {"username": "me"})
        with self.assertRaises(ConfigurationError) as caught:
            read_options(str(self.etc / "other.conf"), directories=(str(self.home),))
        self.assertEqual(str(caught.exception), f"configuration {self.etc / 'other.conf'} not found")


class OptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        os.environ.pop(tap.PASSWORD_VARIABLE, None)
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        (self.directory / "password").write_text("from-file\n")

    def config(self, text: str, name: str = "live.conf") -> str:
        path = self.directory / name
        path.write_text(text)
        return str(path)

    def parse(self, *argv: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def test_every_option_from_the_file_and_the_command_line_overrides(self) -> None:
        self.config("[smarkets]\nendpoint = tcp:127.0.0.1:1\nusername = base\nmarket = 1\n", "base.conf")
        path = self.config(
            "[inherit]\nfrom = base.conf\n"
            f"[smarkets]\nusername = me\npassword_file = {self.directory / 'password'}\n"
            "market = 100, 200\ninterval = 2.5\nrequest-timeout = 7\n"
        )
        options = self.parse("--config", path)
        self.assertEqual((options["endpoint"], options["username"], options.password),
                         ("tcp:127.0.0.1:1", "me", "from-file"))
        self.assertEqual((options["markets"], options["interval"], options["request-timeout"]), ([100, 200], 2.5, 7.0))

        options = self.parse("--username", "other", f"--config={path}", "--market", "300", "-i", "1")
        self.assertEqual((options["username"], options["markets"], options["interval"]), ("other", [300], 1.0))

    def test_flags_and_the_operator_options(self) -> None:
        journal, state = str(self.directory / "j.jsonl"), str(self.directory / "state")
        path = self.config(f"[smarkets]\nverbose = yes\nstrategy = none\njournal = {journal}\n"
                           f"state_file = {state}\nstatus_interval = 30\nmarket = 7\nendpoint = tcp:127.0.0.1:1\n"
                           f"username = me\npassword_file = {self.directory / 'password'}\n")
        options = self.parse("--config", path)
        self.assertEqual((options["verbose"], options["strategy"], options["journal"], options["state-file"],
                          options["status-interval"], options["markets"]), (1, "none", journal, state, 30.0, [7]))
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--config", self.config("[smarkets]\nverbose = loud\n"))
        self.assertIn("verbose is yes or no, not 'loud'", str(caught.exception))

    def test_relative_paths_in_a_file_are_relative_to_that_file(self) -> None:
        conf = self.directory / "conf"
        (conf / "shared" / "journals").mkdir(parents=True)
        (conf / "shared" / "base.conf").write_text("[smarkets]\njournal = journals/j.jsonl\n")
        (conf / "live.conf").write_text("[inherit]\nfrom = shared/base.conf\n[smarkets]\nusername = me\n"
                                        "password_file = ../password\nstate-file = state\n")
        elsewhere = Path(self.mktemp()).resolve()
        elsewhere.mkdir()
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(elsewhere)
        options = self.parse("--config", str(conf / "live.conf"), "--endpoint", "tcp:127.0.0.1:1")
        self.assertEqual(options.password, "from-file")
        self.assertEqual((options["journal"], options["state-file"]),
                         (str(conf / "shared" / "journals" / "j.jsonl"), str(conf / "state")))
        # The command line's paths stay relative to the current directory.
        options = self.parse("--config", str(conf / "live.conf"), "--endpoint", "tcp:127.0.0.1:1",
                             "--journal", "here.jsonl", "--state-file", "state")
        self.assertEqual((options["journal"], options["state-file"]), ("here.jsonl", "state"))

    def test_bad_files_are_usage_errors_naming_the_problem(self) -> None:
        cases = [
            ("[smarkets]\npassword = hunter2\n", "never read from a file"),
            ("[smarkets]\nfavourite_colour = blue\n", "unknown option 'favourite-colour'"),
            ("[smarkets]\ninterval = soon\n", "live.conf: --interval takes a number above 0, not 'soon'"),
            ("[smarkets]\ninterval = -1\n", "--interval takes a number above 0, not '-1'"),
            ("[smarkets]\nmarket = 1, x\n", "not 'x'"),
        ]
        for text, words in cases:
            with self.assertRaises(usage.UsageError) as caught:
                self.parse("--config", self.config(text))
            self.assertIn(words, str(caught.exception))
            self.assertNotIn("hunter2", str(caught.exception))
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--config", str(self.directory / "missing.conf"))
        self.assertIn("missing.conf not found", str(caught.exception))


class StrategyFromTheCurrentDirectoryTests(SynchronousTestCase):
    def test_mystrat_py_next_to_the_user(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "mystrat_for_test.py").write_text("def start(factory):\n    return 'started'\n")
        # As under twistd: the current directory is not on sys.path.
        self.patch(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
        self.addCleanup(sys.modules.pop, "mystrat_for_test", None)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory)
        options = tap.Options()
        options.parseOptions(["--strategy", "mystrat_for_test:start"])
        assert options.strategy is not None
        self.assertEqual(options.strategy(None), "started")  # type: ignore[arg-type]
