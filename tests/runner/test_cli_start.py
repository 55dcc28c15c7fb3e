"""A run that cannot start says why in one line and leaves no run directory behind."""

import os
import signal
import subprocess
import sys

import pytest

from evalkit.models.pi05.cli import make_tiny_checkpoint
from tests.helpers import assert_one_line_error, evalkit, wait_until

# slow: the evalkit command in subprocesses
pytestmark = pytest.mark.slow


def test_incompatible_policy_is_refused_before_the_first_episode(tmp_path):
    """A joint-velocity checkpoint (pi05_droid) under the joint-position protocol: refused by the runner's
    compatibility check, before any env worker starts or any file is written."""
    checkpoint = make_tiny_checkpoint(tmp_path / "pi05_tiny_droid", "droid", seed=0)
    run = tmp_path / "run"
    proc = evalkit(
        "eval", "--suite", "droid_demo", "--policy", "pi05", "--checkpoint", str(checkpoint),
        "--protocol", "droid_jointpos", "--out", str(run),
    )  # fmt: skip
    assert_one_line_error(proc, "joint_velocity", "joint_position", "--protocol")
    assert "evaluating" not in proc.stdout + proc.stderr  # no progress bar was drawn
    assert not run.exists()


def test_interrupted_start_leaves_no_run_directory(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalkit.cli", "eval", "--suite", "droid_demo", "--policy", "zero"]
        + ["--out", str(run), "--tasks", "0", "--episodes-per-task", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )

    def started() -> bool:
        assert proc.poll() is None, proc.communicate()
        return (run / "manifest.json").exists()

    wait_until(started, "the run's manifest written", 120)
    proc.send_signal(signal.SIGINT)  # Ctrl-C while the env workers are still starting
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not run.exists()
