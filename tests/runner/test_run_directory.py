"""One run directory, one writer, one protocol, one policy: through the real CLI."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, assert_one_line_error, evalkit, read_rows, wait_until

# slow: the evalkit command in subprocesses
pytestmark = pytest.mark.slow


def _eval(out, *extra):
    return [
        sys.executable, "-m", "evalkit.cli", "eval", "--suite", "droid_demo", "--policy", "zero",
        "--tasks", "0", "--episodes-per-task", "2", "--workers", "1", "--quiet", "--out", str(out), *extra,
    ]  # fmt: skip


def test_a_second_writer_is_refused_and_the_first_finishes_untouched(tmp_path):
    run, gate = tmp_path / "run", tmp_path / "gate"
    gated = _eval(run, "--max-steps", "12")[4:]
    gated[gated.index("zero")] = "gated"
    # the first run's policy answers only once the gate file exists: the run stays in progress until we open it
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes", "eval", *gated],
        cwd=REPO,
        env={**os.environ, "EVALKIT_TEST_GATE": str(gate)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def started() -> bool:
            assert first.poll() is None, first.communicate()
            return (run / "manifest.json").exists()

        wait_until(started, "the first run's manifest written", 180)
        second = evalkit("eval", *gated, fakes=True, env={"EVALKIT_TEST_GATE": str(gate)})
        assert_one_line_error(second, "being written by another evalkit process", f"pid {first.pid}")
        gate.touch()
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        gate.touch()
        first.kill()
    rows = read_rows(run)
    assert [r["init_state"] for r in rows] == [0, 1]
    assert all(r["steps"] == 12 and r["termination"] == "max_steps" for r in rows)  # the first writer's run


def test_rows_of_another_protocol_are_refused_even_without_the_manifest(tmp_path):
    run = tmp_path / "run"
    subprocess.run(_eval(run, "--max-steps", "5"), check=True, capture_output=True, timeout=300)
    before = read_rows(run)
    (run / "manifest.json").unlink()
    proc = evalkit("eval", *_eval(run, "--max-steps", "6")[4:])
    assert_one_line_error(proc, "under protocol", "choose another --out")
    assert read_rows(run) == before  # nothing replaced, nothing added
    proc = evalkit("eval", *_eval(run, "--max-steps", "5", "--episodes-per-task", "3")[4:])
    assert proc.returncode == 0, proc.stderr  # the same protocol resumes: one more episode
    assert [r["init_state"] for r in read_rows(run)] == [0, 1, 2]


def test_another_policy_is_refused_in_the_same_directory(tmp_path):
    run = tmp_path / "run"
    subprocess.run(_eval(run, "--max-steps", "5"), check=True, capture_output=True, timeout=300)
    cmd = _eval(run, "--max-steps", "5")[4:]
    cmd[cmd.index("zero")] = "random"
    assert_one_line_error(evalkit("eval", *cmd), "policy zero@none", "random@none")
