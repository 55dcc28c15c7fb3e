"""`evalkit eval`'s exit codes and its last line, through the real command (evalkit.runner.outcome documents them):
0 every episode has an outcome, 2 usage error or refusal, 4 incomplete (episodes in error or not run)."""

import pytest

from tests.helpers import assert_one_line_error, evalkit, read_manifest, read_rows

# slow: the evalkit command in subprocesses
pytestmark = pytest.mark.slow


def test_a_policy_that_raises_on_every_call_exits_4_with_the_count_and_first_error(tmp_path):
    run = tmp_path / "run"
    proc = evalkit(
        "eval", "--policy", "raising", "--suite", "droid_demo", "--tasks", "0", "--episodes-per-task", "3",
        "--workers", "1", "--max-steps", "5", "--out", str(run), fakes=True, timeout=600,
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
