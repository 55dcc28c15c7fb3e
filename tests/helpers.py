"""Small helpers shared by tests: read a run directory as the reporter would, run the `evalkit` command, wait on
observable state. Test policies are in tests/fakes.py."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# generous bound on every wait for observable state: no test relies on how fast this machine is
CEILING_S = 60.0
# what an enclosing `make test` exports to its children: a `make` run by a test would print "Entering directory"
# lines and inherit its flags, unlike the same command typed in a user's shell
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def shell_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell for a `make` command: this process's, without an enclosing make's."""
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARIABLES}
    return {**env, **extra}


def read_rows(run_dir: Path) -> list[dict]:
    db = sqlite3.connect(run_dir / "episodes.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [
            dict(r) for r in db.execute("SELECT * FROM episodes ORDER BY suite, task_id, init_state, seed")
        ]
    finally:
        db.close()


def count_rows(run_dir: Path) -> int:
    """Episodes stored so far in a run directory being written (0 before its store exists or has its table)."""
    if not (run_dir / "episodes.sqlite").exists():  # (connecting would create an empty database)
        return 0
    try:
        return len(read_rows(run_dir))
    except sqlite3.Error:
        return 0


def read_manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


# what makes two runs of the same episodes the same: identity and outcome (not wall time, latency or run id)
OUTCOME_COLUMNS = [
    "suite",
    "task_id",
    "init_state",
    "seed",
    "task",
    "success",
    "steps",
    "termination",
    "policy_calls",
]


def evalkit(
    *args: str, env: dict[str, str] | None = None, cwd=None, timeout: float = 300, fakes: bool = False
) -> subprocess.CompletedProcess:
    """`evalkit ARGS` as a user runs it (a subprocess, `env` added to this environment), its output captured;
    `fakes`: with the test policies of tests/fakes.py registered by name (`--policy raising`, ...)."""
    module = "tests.fakes" if fakes else "evalkit.cli"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        cwd=cwd,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """A refusal: exit 2, the last stderr line `evalkit: error: ...` holding every needle, no traceback."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("evalkit: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[-1]


def wait_until(
    condition: Callable[[], object], what: str = "the condition", timeout: float = CEILING_S
) -> None:
    """Polls `condition` until it holds; fails naming `what` after `timeout` seconds. Tests wait on observable
    state with a generous ceiling, never on the order `sleep`s happen to give."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.01)
