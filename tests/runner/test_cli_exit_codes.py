"""`evalkit eval`'s exit codes and its last line, through the real command (evalkit.runner.outcome documents them):
0 every episode has an outcome, 2 usage error or refusal, 4 incomplete (episodes in error or not run)."""

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.cli import build_parser
from tests.helpers import read_manifest, read_rows
from tests.runner.test_cli_errors import assert_one_line_error, evalkit

REPO = Path(__file__).resolve().parents[2]
RAISING = "tests.runner.policies:make_raising_policy"


def eval_with_test_policy(builder: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`evalkit eval` in a subprocess, with a test policy registered as "test"."""
    code = (
        "import sys; from evalkit.policies import registry; "
        f"registry.BUILDERS['test'] = {builder!r}; "
        "from evalkit.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "eval", "--policy", "test", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_a_policy_that_raises_on_every_call_exits_4_with_the_count_and_first_error(tmp_path):
    run = tmp_path / "run"
    proc = eval_with_test_policy(
        RAISING, "--suite", "droid_demo", "--tasks", "0", "--episodes-per-task", "3", "--workers", "1",
        "--max-steps", "5", "--out", str(run),
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("evalkit: incomplete: 1 episode in error (first: policy error: ValueError: ")
    assert "2 episodes not run of 3" in last and "re-run the same command" in last and "(exit 4)" in last
    (row,) = read_rows(run)
    assert row["termination"] == "error"  # recorded as an error, never as a failure
    assert read_manifest(run)["sessions"][-1]["status"].startswith("failed: policy error")
    # no terminal: status lines, not a carriage-return progress bar
    assert "\r" not in proc.stderr and "evalkit: 1/3 episodes, success 0/0 (-), 1 error" in proc.stderr
    assert not (run / ".evalkit.lock").exists()


def test_empty_out_is_refused_and_writes_nothing(tmp_path):
    proc = evalkit("eval", "--suite", "droid_demo", "--policy", "zero", "--out", "", "--quiet", cwd=tmp_path)
    assert_one_line_error(proc, "--out must not be empty")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("gpus", ["nan", "inf", "-1"])
def test_bad_gpus_per_replica_is_one_line(tmp_path, gpus):
    proc = evalkit(
        "eval", "--suite", "droid_demo", "--policy", "zero", "--ray", "local", "--gpus-per-replica", gpus,
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert_one_line_error(proc, "--gpus-per-replica must be a number >= 0")
    assert not (tmp_path / "run").exists()


def test_every_eval_flag_shows_its_default_and_protocol_lists_every_preset():
    parser = build_parser()
    eval_parser = parser._subparsers._group_actions[0].choices["eval"]
    for action in eval_parser._actions:
        if action.option_strings == ["-h", "--help"] or action.required:
            continue
        assert "default" in (action.help or ""), f"{action.option_strings[0]}: {action.help}"
    (protocol,) = [a for a in eval_parser._actions if "--protocol" in a.option_strings]
    presets = {Path(p).stem for p in glob.glob(str(REPO / "tasks" / "*" / "protocols" / "*.yaml"))}
    assert presets >= {"openpi", "lerobot", "droid", "droid_jointpos", "liberoplus", "liberoplus_clean"}
    for preset in presets:
        assert preset in protocol.help
