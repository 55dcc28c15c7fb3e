"""Every shell command in README.md works as printed: the ```bash blocks run in order, in one bash session, in a
fresh directory, against the real simulators, from the quick start to a comparison report of two runs.

Only the size of the runs is changed, never the commands: the make variables EPISODES, TASKS and MAX_STEPS come
from the environment (a command line's own variables win), and an `evalkit eval` line without its own
`--episodes-per-task`, `--tasks` or `--max-steps` gets them appended. A command that cannot run here (network,
checkpoints, a server that runs until Ctrl-C, this test suite itself) carries a visible `# untested: <reason>`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.report.chromium import Browser
from tests.system import need_chromium

REPO = Path(__file__).resolve().parents[1]
UNTESTED = "# untested:"
LIMITS = {"EPISODES": "1", "TASKS": "0 3", "MAX_STEPS": "150"}  # droid_demo: pick up a block, close a drawer
EVAL_LIMITS = {"--episodes-per-task": "1", "--tasks": "0 3", "--max-steps": "150"}


def readme_blocks(text: str) -> list[list[str]]:
    """The command lines of each ```bash block (blank and comment-only lines dropped)."""
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
    return [
        [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
        for block in blocks
    ]


def sized(command: str) -> str:
    """An `evalkit eval` line gets the test's run size for the flags it does not set itself."""
    if not command.startswith("evalkit eval "):
        return command
    words = shlex.split(command.split(" #")[0])
    extra = [f"{flag} {value}" for flag, value in EVAL_LIMITS.items() if flag not in words]
    return " ".join([command.split(" #")[0].rstrip(), *extra])


def test_readme_commands_follow_one_convention():
    blocks = readme_blocks((REPO / "README.md").read_text())
    lines = [line for block in blocks for line in block]
    assert len(lines) >= 15
    for line in lines:
        assert ".venv/bin/" not in line or line.startswith("source "), line
        assert line.split()[0] in {"git", "make", "source", "evalkit"}, line
        if UNTESTED in line:
            assert line.split(UNTESTED, 1)[1].strip(), f"no reason given: {line}"


@pytest.mark.slow
def test_readme_commands_run_as_printed(tmp_path):
    if not (Path(sys.prefix) / ".installed").is_file():
        pytest.skip("needs the environment `make setup` creates (.venv/.installed)")
    clone = tmp_path / "evalkit"
    clone.mkdir()
    (clone / "Makefile").symlink_to(REPO / "Makefile")
    (clone / ".venv").symlink_to(Path(sys.prefix))
    shutil.copy(REPO / "pyproject.toml", clone / "pyproject.toml")
    os.utime(clone / "pyproject.toml", (0, 0))  # older than .venv/.installed: make never reinstalls here
    env = {**os.environ, **LIMITS, "PYTHONPATH": str(REPO)}
    env.pop("VIRTUAL_ENV", None)
    dry = subprocess.run(["make", "-n", "setup"], cwd=clone, env=env, capture_output=True, text=True)
    assert "pip" not in dry.stdout, dry.stdout

    lines = [line for block in readme_blocks((REPO / "README.md").read_text()) for line in block]
    run = [sized(line) for line in lines if UNTESTED not in line]
    script = ["cd " + shlex.quote(str(clone))]
    for command in run:
        script += [
            f"echo {shlex.quote('$ ' + command)}",
            command,
            f"rc=$?; if [ $rc -ne 0 ]; then echo {shlex.quote('README command failed: ' + command)} "
            '"(exit $rc)" >&2; exit 1; fi',
        ]
    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)], env=env, capture_output=True, text=True, timeout=900
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert "Traceback" not in output

    results = clone / "results"
    oracle, zero = results / "droid_demo__oracle", results / "droid_demo__zero"
    assert (oracle / "report" / "report.html").is_file() and (zero / "report" / "report.html").is_file()
    assert f"report: {(oracle / 'report' / 'report.html').resolve().as_uri()}" in output
    compare = results / "compare" / "droid_demo__oracle__vs__droid_demo__zero" / "compare.html"
    assert f"report: {compare.resolve().as_uri()}" in output
    assert "evalkit: oracle on 1 suite, 2 tasks: 2 episodes to run" in output  # the plan, said up front
    assert "exit code 1" in output or "exit code 3" in output  # regress: oracle -> zero is a drop

    need_chromium()
    browser = Browser(tmp_path / "chromium-profile")
    try:
        session = browser.open(compare.as_uri())
        pairs = browser.evaluate(
            session,
            "[...document.querySelectorAll('.pair')].map(p => [p.querySelector('.instruction').textContent, "
            "p.querySelectorAll('video[poster]').length])",
        )
        assert browser.console_errors() == []
    finally:
        browser.close()
    # The oracle solves both episodes, the zero policy neither: each is shown from both runs, side by side.
    assert sorted(p[0].split(" (")[0] for p in pairs) == [
        "close the top drawer of the cabinet",
        "pick up the blue block",
    ]
    assert all(p[1] == 2 for p in pairs)


def test_readme_python_api_example_runs(tmp_path):
    """The README's `evaluate` example runs as printed (a fresh directory, the real simulator) and prints its
    tables; the other ```python blocks are fragments around the reader's own policy."""
    blocks = re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(), flags=re.S | re.M)
    (example,) = [block for block in blocks if "from evalkit import evaluate" in block]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "droid_demo" in proc.stdout and "success_pct" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # the temporary run directory is gone, nothing written here
