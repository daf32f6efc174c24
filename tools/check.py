"""The whole test suite: ruff, mypy, then trial (which must leave no file in the tree); ends with
'N passed, N failed, N skipped'.

Usage (from the repository root, with the ``test`` extra installed)::

    python tools/check.py            # everything
    python tools/check.py tests.test_framing   # some trial tests only, no linters
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_linters() -> list[str]:
    failed = []
    for name, command in (
        ("ruff", [sys.executable, "-m", "ruff", "check", "smarkets_twisted", "tests", "tools", "bench", "twisted"]),
        ("mypy", [sys.executable, "-m", "mypy"]),
    ):
        print(f"== {name}", flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            failed.append(name)
    return failed


def run_trial(names: list[str]) -> tuple[int, int, int]:
    from twisted.trial import reporter, runner

    suite = runner.TestLoader().loadByNames(names, recurse=True)
    trial = runner.TrialRunner(reporter.TreeReporter, workingDirectory=str(ROOT / "_trial_temp"))
    result = trial.run(suite)
    passed = result.successes + len(result.expectedFailures)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    return passed, failed, len(result.skips)


def untracked() -> set[str]:
    """Files git neither tracks nor ignores (none outside a git checkout)."""
    listed = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True)
    return set(listed.stdout.splitlines()) if listed.returncode == 0 else set()


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    names = argv or ["tests"]
    lint_failures = [] if argv else run_linters()
    before = untracked()
    print("== trial", flush=True)
    passed, failed, skipped = run_trial(names)
    # A test writes under _trial_temp (self.mktemp()), never into the tree, where it would be committed.
    for path in sorted(untracked() - before):
        print(f"left in the working tree by the tests: {path}")
        failed += 1
    for name in lint_failures:
        print(f"{name}: FAILED")
    failed += len(lint_failures)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
