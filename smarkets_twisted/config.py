"""Configuration files: ini files that inherit from others, as smk-python-sdk reads them.

A file names the file it inherits from::

    [inherit]
    from = base.conf

    [smarkets]
    username = me
    market = 100, 200

A name is looked up in every search directory.  As the reference client's
``ConfigurationReader`` does, the files of one name are read in the reverse
order of the directories, after the files their ``[inherit]`` names, so that
what is read later overrides: a file in the first directory has the last
word.  With the directories ``(".", "/etc/smarkets")`` and ``b.conf``
inheriting ``a.conf``, the order is ``/etc/smarkets/a.conf``, ``./a.conf``,
``/etc/smarkets/b.conf``, ``./b.conf``.
"""

from __future__ import annotations

import configparser
import math
import os
from collections.abc import Callable, Sequence

from twisted.python import usage

from smarkets_twisted.errors import ConfigurationError

#: The section holding `twistd smarkets` options, by their command-line names.
SECTION = "smarkets"

#: Where a configuration name is looked up, the first having the last word.
DEFAULT_DIRECTORIES = (".", "~/.config/smarkets_twisted", "/etc/smarkets_twisted")

#: Options naming files: a relative path in a file is relative to that file's directory.
PATH_OPTIONS = frozenset({"password-file", "journal", "state-file"})

#: Inheritance deeper than this is taken for a loop.
_MAX_DEPTH = 32


class ConfigurationReader:
    """Reads a configuration from a series of inheriting ini files."""

    def __init__(self, directories: Sequence[str] = DEFAULT_DIRECTORIES) -> None:
        self.directories = [os.path.expanduser(d) for d in directories]

    def files(self, name: str) -> list[str]:
        """Every file read for ``name``, in the order read (the last one wins)."""
        return list(self._collect(name, {}, []))

    def read(self, name: str, path: str | None = None) -> configparser.ConfigParser:
        """The configuration ``name`` and the files it inherits from, merged.

        With ``path``, that file is ``name``, as it is: only its parents are looked up.
        A relative path in a `PATH_OPTIONS` option is made relative to the directory of the file giving it.
        """
        merged = _parser()
        for found, parser in self._collect(name, {}, [], path).items():
            _anchor_paths(parser, os.path.dirname(found))
            merged.read_dict(parser)
        merged.remove_section("inherit")
        return merged

    def _collect(
        self, name: str, order: dict[str, configparser.ConfigParser], chain: list[str], path: str | None = None
    ) -> dict[str, configparser.ConfigParser]:
        """Add the files of ``name`` (or the one at ``path``) to ``order`` (path → its contents), parents first."""
        if name in chain or len(chain) > _MAX_DEPTH:
            raise ConfigurationError(f"configuration {name} inherits from itself: {' -> '.join([*chain, name])}")
        if path is not None:
            if not os.path.isfile(path):
                raise ConfigurationError(f"configuration {path} not found")
            found = {path: _load(path)}
        else:
            found = {p: _load(p) for p in (os.path.join(d, name) for d in reversed(self.directories))
                     if os.path.isfile(p)}
        if not found:
            where = ", ".join(self.directories)
            raise ConfigurationError(
                f"configuration {name} not found in {where}" + (f" (inherited by {chain[-1]})" if chain else "")
            )
        parents = dict.fromkeys(p.get("inherit", "from") for p in found.values() if p.has_option("inherit", "from"))
        for parent in parents:
            self._collect(parent, order, [*chain, name])
        for path, parser in found.items():
            order.setdefault(path, parser)
        return order


def number_option(
    name: str, kind: type[int] | type[float], least: float, above: bool = False
) -> Callable[[str], float]:
    """The coercion of option ``--name``: a finite ``kind`` of at least (or ``above``) ``least``, or a UsageError
    naming the option (twistd's own says only 'Parameter type enforcement failed')."""
    what = f"{'a whole number' if kind is int else 'a number'} {'above' if above else 'of at least'} {least:g}"

    def coerce(text: str) -> float:
        try:
            value = kind(text)
        except (TypeError, ValueError):
            value = None
        if value is None or not math.isfinite(value) or value < least or (above and value == least):
            raise usage.UsageError(f"--{name} takes {what}, not {text!r}")
        return value

    coerce.coerceDoc = f"({what})"  # type: ignore[attr-defined]
    return coerce

#: ``--strategy none``: trade nothing, only subscribe to the markets (a recorder, with --journal).
RECORDER = "none"


def read_options(path: str, directories: Sequence[str] = DEFAULT_DIRECTORIES) -> dict[str, str]:
    """The ``[smarkets]`` options of a configuration file, by command-line name.

    ``path`` is a name looked up in ``directories``; one with a directory part
    (``/etc/live.conf``, ``conf/live.conf``) is that file, as it is, and the
    files it inherits from are looked up in its directory first.
    """
    directory, name = os.path.split(path)
    search = [directory, *directories] if directory else list(directories)
    parser = ConfigurationReader(search).read(name, path if directory else None)
    if not parser.has_section(SECTION):
        return {}
    return {key.replace("_", "-"): value for key, value in parser.items(SECTION)}


def _anchor_paths(parser: configparser.ConfigParser, directory: str) -> None:
    """Join the relative paths of `PATH_OPTIONS` to ``directory``: ``password_file = ../pw`` means next to the file,
    wherever twistd was started."""
    if not parser.has_section(SECTION):
        return
    for key, value in parser.items(SECTION):
        if key.replace("_", "-") in PATH_OPTIONS and value and not os.path.isabs(os.path.expanduser(value)):
            parser.set(SECTION, key, os.path.join(directory, value))


def _load(path: str) -> configparser.ConfigParser:
    parser = _parser()
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f, path)
    except OSError as e:
        raise ConfigurationError(f"cannot read configuration {path}: {e.strerror}") from None
    except (configparser.Error, UnicodeDecodeError) as e:
        raise ConfigurationError(f"bad configuration {path}: {_problem(e)}") from None
    return parser


def _parser() -> configparser.ConfigParser:
    # No interpolation: a '%' in a value is a '%'.
    return configparser.ConfigParser(interpolation=None)


def _problem(error: Exception) -> str:
    """What is wrong, by line number: configparser's own messages quote the line, which may hold a password."""
    if isinstance(error, configparser.MissingSectionHeaderError):
        return f"line {error.lineno}: an option before any [section]"
    if isinstance(error, configparser.ParsingError):
        return "; ".join(f"line {lineno}: not 'name = value'" for lineno, _ in error.errors)
    if isinstance(error, configparser.DuplicateOptionError):
        return f"line {error.lineno}: option {error.option!r} given twice in [{error.section}]"
    if isinstance(error, configparser.DuplicateSectionError):
        return f"line {error.lineno}: section [{error.section}] given twice"
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 (byte {error.start})"
    return type(error).__name__
