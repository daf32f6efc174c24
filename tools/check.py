"""The whole test suite: ruff, mypy, then trial; ends with 'N passed, N failed'.

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


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    names = argv or ["tests"]
    lint_failures = [] if argv else run_linters()
    print("== trial", flush=True)
    passed, failed, skipped = run_trial(names)
    for name in lint_failures:
        print(f"{name}: FAILED")
    failed += len(lint_failures)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
