"""Which Ray cluster `--ray` uses, and a driver that notices its cluster is gone. Each Ray instance here is started
by the test itself (a `--ray local` run in a subprocess), and only its own processes are signalled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, count_rows, evalkit, read_manifest, wait_until
from tests.system import import_or_skip

ray = import_or_skip("ray", "make setup installs the [ray] extra")
psutil = import_or_skip("psutil", "ray installs psutil")

# slow: Ray clusters and evalkit eval in subprocesses
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CEILING_S = 240.0


def _eval(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "evalkit.cli", "eval", "--suite", "droid_demo", "--policy", "zero", "--tasks", "0",
        "--episodes-per-task", "12", "--max-steps", "400", "--out", str(out), *extra,
    ]  # fmt: skip


def _wait(condition, proc, what: str) -> None:
    def holds() -> bool:
        assert proc.poll() is None, proc.communicate()
        return condition()

    wait_until(holds, what, CEILING_S)


def test_ray_client_addresses_are_refused_up_front(tmp_path):
    proc = evalkit(
        "eval", "--suite", "droid_demo", "--policy", "zero", "--ray", "ray://127.0.0.1:10001",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert_one_line_error(proc, "Ray Client addresses are not supported", "--ray auto")
    assert not (tmp_path / "run").exists()


def test_an_unreachable_cluster_is_reported_as_such(tmp_path):
    started = time.monotonic()
    proc = evalkit(
        "eval", "--suite", "droid_demo", "--policy", "zero", "--ray", "127.0.0.1:9",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert_one_line_error(proc, "cannot reach the Ray cluster at 127.0.0.1:9")
    assert time.monotonic() - started < 120  # Ray alone retries for minutes
    assert not (tmp_path / "run").exists()


def test_auto_ignores_a_local_instance_and_a_lost_node_ends_the_run_with_one_line(tmp_path):
    """A `--ray local` run (A) is not picked up by another process's `--ray auto`. Then A's raylet is killed:
    Ray marks A's node dead and A stops within a bounded time with one line and exit 4, keeping its episodes;
    the same command resumes."""
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _eval(run, "--ray", "local", "--workers", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait(lambda: count_rows(run) >= 1, proc, "a first episode stored")
        # no `ray start` cluster recorded (an empty Ray temp dir) and no RAY_ADDRESS: only A's Ray is running
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["RAY_TMPDIR"] = str(tmp_path / "no-ray-here")
        (tmp_path / "no-ray-here").mkdir()
        auto = subprocess.run(
            _eval(tmp_path / "other", "--ray", "auto", "--quiet"),
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert_one_line_error(auto, "--ray auto found no Ray cluster")

        (raylet,) = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "raylet"]
        raylet.kill()
        killed = time.monotonic()
        out, err = proc.communicate(timeout=CEILING_S)
        assert proc.returncode == 4, err
        assert time.monotonic() - killed < 120
        assert "Traceback" not in err, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("evalkit: incomplete: stopped: ") and "Ray" in last and "not run of 12" in last
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    kept = count_rows(run)
    assert kept >= 1 and read_manifest(run)["sessions"][-1]["status"].startswith("failed: ")
    resumed = subprocess.run(
        _eval(run, "--quiet", "--workers", "2"), capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr
    assert count_rows(run) == 12


@pytest.fixture(autouse=True)
def _no_ray_in_this_process():
    """These tests start Ray only in subprocesses."""
    assert not ray.is_initialized()
    yield
