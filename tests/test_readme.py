"""Every shell command in README.md works as printed: the ```bash blocks run in order, in one bash session, in a
fresh directory, against the real simulators, from the quick start to a comparison report of two runs.

Only the size of the runs is changed, never the commands: the make variables EPISODES, TASKS and MAX_STEPS come
from the environment (a command line's own variables win), and an `evalkit eval` line without its own
`--episodes-per-task`, `--tasks` or `--max-steps` gets them appended. A command that cannot run here (network,
checkpoints, a server that runs until Ctrl-C, this test suite itself) carries a visible `# untested: <reason>`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import OUTCOME_COLUMNS, read_manifest, read_rows, shell_env
from tests.report.chromium import Browser
from tests.system import need, need_chromium

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


# Every run directory the README's commands write, at the test's size: (episodes, successes). A README command that
# writes another run directory must be added here; a stored `error` episode fails the test whatever its command.
EXPECTED_RUNS = {
    "droid_demo__oracle": (2, 2),
    "libero_spatial__zero": (2, 0),
    "droid_demo__oracle_ray": (2, 2),
    "liberoplus_smoke": (2, 0),
    "libero_spatial__pi05_tiny_smoke": (1, 0),
    "droid_demo__zero": (2, 0),
    "droid_demo__zero_gated": (2, 0),
}
MARK = "README$ "


def outputs_by_command(output: str) -> list[tuple[str, str]]:
    """The script's output (stdout and stderr in order), cut into (command, what it printed)."""
    parts: list[tuple[str, str]] = []
    for line in output.splitlines():
        if line.startswith(MARK):
            parts.append((line[len(MARK) :], ""))
        elif parts:
            parts[-1] = (parts[-1][0], parts[-1][1] + line + "\n")
    return parts


def stored(results: Path, name: str) -> list[dict]:
    return read_rows(results / name)


def report_link(out: str, page: Path) -> None:
    assert page.is_file(), page
    assert out.rstrip().splitlines()[-1].endswith(page.resolve().as_uri()), out[-500:]


def check_make_eval(out: str, clone: Path) -> None:
    assert "evalkit: oracle on 1 suite, 2 tasks: 2 episodes to run" in out  # the plan, said up front
    rows = stored(clone / "results", "droid_demo__oracle")
    assert [(r["task_id"], r["termination"]) for r in rows] == [(0, "success"), (3, "success")]
    # VIDEO=all: every episode filmed, the file where the row says
    assert all((clone / "results" / "droid_demo__oracle" / r["video"]).is_file() for r in rows)
    report_link(out, clone / "results" / "droid_demo__oracle" / "report" / "report.html")


def check_eval_zero_droid(out: str, clone: Path) -> None:
    run = clone / "results" / "droid_demo__zero"
    rows = stored(clone / "results", run.name)
    assert [(r["task_id"], r["termination"], r["steps"]) for r in rows] == [
        (0, "max_steps", 150),
        (3, "max_steps", 150),
    ]
    assert all((run / r["video"]).is_file() for r in rows)


def check_suites(out: str, clone: Path) -> None:
    for suite, kind, tasks in (
        ("libero_spatial", "libero", 10),
        ("droid_demo", "droid", 4),
        ("libero", "group", 40),
    ):
        assert re.search(rf"^{suite}\s+{kind}\s+{tasks}\s", out, flags=re.M), (suite, out[:3000])
    assert re.search(r"^liberoplus_spatial\s+liberoplus\s+\d+", out, flags=re.M)


def task_table(out: str) -> list[list[str]]:
    """The task rows of `evalkit suites NAME` (id first)."""
    return [line.split() for line in out.splitlines() if re.match(r"\s*\d+\s", line)]


def check_suites_filtered(out: str, clone: Path) -> None:
    rows = task_table(out)
    shown = int(re.search(r"tasks: (\d+) shown", out).group(1))
    assert len(rows) == shown > 0
    assert all(row[1:3] == ["noise", "3"] for row in rows), rows[:3]


def check_suites_ids(out: str, clone: Path) -> None:
    from evalkit.suites import registry

    (ids,) = [line.split() for line in out.strip().splitlines()]
    (suite,) = registry.resolve("liberoplus_spatial")
    tasks = {task.task_id: task for task in suite.tasks}
    for task_id in map(int, ids):
        assert tasks[task_id].tags["dimension"] == "camera", task_id
    assert "608" in ids  # the camera variant the README's LIBERO-plus run uses


def check_eval_zero_libero(out: str, clone: Path) -> None:
    rows = stored(clone / "results", "libero_spatial__zero")
    assert [(r["task_id"], r["init_state"]) for r in rows] == [(0, 0), (0, 1)]
    assert all(r["termination"] == "max_steps" and r["steps"] == 150 for r in rows)
    report_link(out, clone / "results" / "libero_spatial__zero" / "report" / "report.html")


def check_eval_ray(out: str, clone: Path) -> None:
    results = clone / "results"
    # the same per-episode results as the local run of the quick start
    same = [{k: r[k] for k in OUTCOME_COLUMNS} for r in stored(results, "droid_demo__oracle_ray")]
    assert same == [{k: r[k] for k in OUTCOME_COLUMNS} for r in stored(results, "droid_demo__oracle")]
    assert read_manifest(results / "droid_demo__oracle_ray")["execution"]["backend"] == "ray"


def check_eval_liberoplus(out: str, clone: Path) -> None:
    rows = stored(clone / "results", "liberoplus_smoke")
    assert [(r["task_id"], r["termination"], r["steps"]) for r in rows] == [
        (258, "max_steps", 20),
        (608, "max_steps", 20),
    ]


def tiny_checkpoint(directory: str):
    """The check of `evalkit make-tiny-checkpoint DIRECTORY`."""

    def check(out: str, clone: Path) -> None:
        assert {"config.json", "model.safetensors"} <= {p.name for p in (clone / directory).iterdir()}

    return check


def check_watch(out: str, clone: Path) -> None:
    """Both tiny checkpoints evaluated in step order into their own run directories, the selected one re-evaluated
    on held-out episodes, the report linked."""
    watch = clone / "results" / "watch" / "demo"
    state = json.loads((watch / "watch.json").read_text())
    done = sorted((c["step"], c["status"]) for c in state["checkpoints"].values())
    assert done == [(1000, "done"), (2000, "done")]
    for step in (1000, 2000):
        run = watch / f"step_{step:09d}"
        rows = read_rows(run)
        assert [(r["task_id"], r["init_state"], r["steps"]) for r in rows] == [(0, 0, 20), (0, 1, 20)]
        assert read_manifest(run)["config"]["training_step"] == step
    (heldout,) = state["heldout"].values()
    (row,) = read_rows(clone / heldout["run_dir"])
    assert heldout["status"] == "done" and (row["task_id"], row["init_state"]) == (0, 2)
    report_link(out, watch / "report" / "report.html")


def check_eval_gated(out: str, clone: Path) -> None:
    # 2 pairs at the test's size decide nothing: the run uses its whole plan and records that
    assert "UNDECIDED after 2 of 2 planned pairs" in out
    stop = read_manifest(clone / "results" / "droid_demo__zero_gated")["stop"]
    assert (stop["test"], stop["pairs"], stop["verdict"]) == ("wsr-betting", 2, "undecided")


def check_regress_gated(out: str, clone: Path) -> None:
    last, code = out.strip().splitlines()[-2:]
    assert last.startswith("INCONCLUSIVE: ") and "judged by its stopping rule (wsr-betting)" in last, last
    assert code == "exit code 3"


def check_eval_pi05(out: str, clone: Path) -> None:
    run = clone / "results" / "libero_spatial__pi05_tiny_smoke"
    (row,) = stored(clone / "results", run.name)
    assert (row["termination"], row["steps"]) == ("max_steps", 20)
    assert read_manifest(run)["policy"]["name"] == "pi05"


def check_report(out: str, clone: Path) -> None:
    report = clone / "results" / "droid_demo__oracle" / "report"
    assert {"report.md", "report.html", "tasks.csv", "suites.parquet"} <= {p.name for p in report.iterdir()}
    assert "- policy: oracle (no checkpoint)" in out and "100.0% [34.2, 100.0] (2/2" in out
    report_link(out, report / "report.html")


def check_compare(out: str, clone: Path) -> None:
    assert re.search(r"^\| all .*\|\s+2 \|.*\|\s+-100\.0 \|", out, flags=re.M), out  # both pairs lost
    report_link(
        out, clone / "results" / "compare" / "droid_demo__oracle__vs__droid_demo__zero" / "compare.html"
    )


def check_leaderboard(out: str, clone: Path) -> None:
    board = clone / "results" / "leaderboard"
    assert {"leaderboard.md", "leaderboard.csv", "leaderboard.html"} <= {p.name for p in board.iterdir()}
    assert re.search(r"^\| oracle\s+\|.*100\.0 \[34\.2, 100\.0\] n=2", out, flags=re.M)
    report_link(out.replace("leaderboard: file://", "report: file://"), board / "leaderboard.html")


def check_regress(out: str, clone: Path) -> None:
    # 2 pairs at the test's size: fewer than --min-episodes, so it says it did not test, and exits 3
    last, code = out.strip().splitlines()[-2:]
    assert last.startswith("INCONCLUSIVE: not tested: overall (droid_demo) 100.0% (2/2) -> 0.0% (0/2)"), last
    assert code == "exit code 3"


def nothing_to_check(out: str, clone: Path) -> None:
    """`source .venv/bin/activate` prints nothing; the commands after it show that it worked."""


# What each README command must have done, by the command as run (at the test's size). A README command without an
# entry fails the test: add its check here.
CHECKS = [
    (r"make eval SUITE=droid_demo POLICY=oracle VIDEO=all\b", check_make_eval),
    (r"source \.venv/bin/activate$", nothing_to_check),
    (r"evalkit suites$", check_suites),
    (r"evalkit suites liberoplus_spatial --dimension noise --level 3$", check_suites_filtered),
    (r"evalkit suites liberoplus_spatial --dimension camera --ids$", check_suites_ids),
    (r"evalkit eval --suite libero_spatial --policy zero --tasks 0 --episodes-per-task 2\b", check_eval_zero_libero),
    (r"evalkit eval --suite droid_demo --policy oracle --ray local --out results/droid_demo__oracle_ray\b", check_eval_ray),
    (r"evalkit eval --suite liberoplus_spatial --policy zero --tasks 258 608 .*--out results/liberoplus_smoke\b", check_eval_liberoplus),
    (r"evalkit make-tiny-checkpoint checkpoints/pi05_tiny$", tiny_checkpoint("checkpoints/pi05_tiny")),
    (r"evalkit make-tiny-checkpoint results/train/step_1000 --embodiment droid$", tiny_checkpoint("results/train/step_1000")),
    (r"evalkit make-tiny-checkpoint results/train/step_2000 --embodiment droid --seed 1$", tiny_checkpoint("results/train/step_2000")),
    (r"evalkit watch results/train --suite droid_demo --once .*--out results/watch/demo$", check_watch),
    (r"evalkit eval --suite droid_demo --policy zero --against results/droid_demo__oracle --stop-when-decided\b", check_eval_gated),
    (r"evalkit regress --baseline results/droid_demo__oracle --candidate results/droid_demo__zero_gated;", check_regress_gated),
    (r"evalkit eval --suite libero_spatial --policy pi05 --checkpoint checkpoints/pi05_tiny\b", check_eval_pi05),
    (r"(evalkit report |make report RUN=)results/droid_demo__oracle$", check_report),
    (r"evalkit eval --suite droid_demo --policy zero --video all\b", check_eval_zero_droid),
    (r"evalkit report results/droid_demo__oracle results/droid_demo__zero$", check_compare),
    (r"make leaderboard$", check_leaderboard),
    (r"evalkit regress --baseline results/droid_demo__oracle --candidate results/droid_demo__zero;", check_regress),
]  # fmt: skip


def check_results(output: str, clone: Path) -> None:
    """Every README command's own check, then every run directory's store: the expected episodes, none in error."""
    for command, out in outputs_by_command(output):
        checks = [check for pattern, check in CHECKS if re.match(pattern, command)]
        assert len(checks) == 1, f"README command without a result check in tests/test_readme.py: {command}"
        checks[0](out, clone)
    results = clone / "results"
    runs = {p.parent.name: read_rows(p.parent) for p in results.glob("*/episodes.sqlite")}
    assert sorted(runs) == sorted(EXPECTED_RUNS)
    for name, rows in runs.items():
        errors = [r["error"] for r in rows if r["termination"] == "error"]
        assert not errors, f"{name}: {len(errors)} episode(s) in error, first: {errors[0]}"
        assert (len(rows), sum(r["success"] for r in rows)) == EXPECTED_RUNS[name], name


@pytest.mark.slow
def test_readme_commands_run_as_printed(tmp_path):
    need(
        (Path(sys.prefix) / ".installed").is_file(),
        "the environment `make setup` creates (.venv/.installed)",
        "make setup",
    )
    clone = tmp_path / "evalkit"
    clone.mkdir()
    (clone / "Makefile").symlink_to(REPO / "Makefile")
    (clone / ".venv").symlink_to(Path(sys.prefix))
    shutil.copy(REPO / "pyproject.toml", clone / "pyproject.toml")
    os.utime(clone / "pyproject.toml", (0, 0))  # older than .venv/.installed: make never reinstalls here
    env = shell_env(**LIMITS, PYTHONPATH=str(REPO))
    env.pop("VIRTUAL_ENV", None)
    dry = subprocess.run(["make", "-n", "setup"], cwd=clone, env=env, capture_output=True, text=True)
    assert "pip" not in dry.stdout, dry.stdout

    lines = [line for block in readme_blocks((REPO / "README.md").read_text()) for line in block]
    run = [sized(line) for line in lines if UNTESTED not in line]
    # one stream, stdout and stderr in the order printed, each command's output after its marker line
    script = ["cd " + shlex.quote(str(clone)), "exec 2>&1"]
    for command in run:
        script += [
            f"echo {shlex.quote(MARK + command)}",
            command,
            f"rc=$?; if [ $rc -ne 0 ]; then echo {shlex.quote('README command failed: ' + command)} "
            '"(exit $rc)"; exit 1; fi',
        ]
    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)], env=env, capture_output=True, text=True, timeout=900
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert "Traceback" not in output
    check_results(output, clone)

    need_chromium()
    compare = clone / "results" / "compare" / "droid_demo__oracle__vs__droid_demo__zero" / "compare.html"
    browser = Browser(tmp_path / "chromium-profile")
    try:
        session = browser.open(compare.as_uri())
        pairs = browser.evaluate(
            session,
            "[...document.querySelectorAll('.pair')].map(p => [p.querySelector('.instruction').textContent, "
            "p.querySelectorAll('img.thumb').length])",
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


@pytest.mark.slow
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
