"""One run directory, one writer, one protocol, one policy: through the real CLI."""

import subprocess
import sys
import time

from tests.helpers import read_rows
from tests.runner.test_cli_errors import assert_one_line_error, evalkit


def _eval(out, *extra):
    return [
        sys.executable, "-m", "evalkit.cli", "eval", "--suite", "droid_demo", "--policy", "zero",
        "--tasks", "0", "--episodes-per-task", "2", "--workers", "1", "--quiet", "--out", str(out), *extra,
    ]  # fmt: skip


def test_a_second_writer_is_refused_and_the_first_finishes_untouched(tmp_path):
    run = tmp_path / "run"
    # filming every step keeps the first run busy for tens of seconds
    first = subprocess.Popen(
        _eval(run, "--max-steps", "120", "--video", "all"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 180
        while not (run / "manifest.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = evalkit("eval", *_eval(run, "--max-steps", "5")[4:])
        assert_one_line_error(second, "being written by another evalkit process", f"pid {first.pid}")
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        first.kill()
    rows = read_rows(run)
    assert [r["init_state"] for r in rows] == [0, 1]
    assert all(
        r["steps"] == 120 and r["termination"] == "max_steps" for r in rows
    )  # the first writer's protocol


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
