"""One real droid_demo run, logged to every tracker installed here through `evalkit eval --log ...`, offline: W&B
in offline mode, MLflow to a local file store, TensorBoard event files. The scripted oracle needs 116 steps for task
0 and 83 for task 3, so under a 100-step budget it solves one of the two: a 50% run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import read_rows

TRACKER_MODULES = {"tensorboard": "tensorboardX", "wandb": "wandb", "mlflow": "mlflow"}


@dataclass
class LoggedRun:
    run_dir: Path
    log_dir: Path
    mlflow_uri: str
    output: str
    trackers: list[str]

    def store_success_pct(self, task_id: int | None = None) -> float:
        """The success rate as the episode store holds it (error rows excluded), read with plain SQLite."""
        rows = [r for r in read_rows(self.run_dir) if r["termination"] != "error"]
        rows = [r for r in rows if task_id is None or r["task_id"] == task_id]
        return 100.0 * sum(r["success"] for r in rows) / len(rows)


def tracker_env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HOME": str(tmp / "home")}
    env |= {"MLFLOW_TRACKING_URI": (tmp / "mlruns").as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"}
    env.pop("WANDB_API_KEY", None)
    return env


def evalkit(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def logged_run(tmp_path_factory) -> LoggedRun:
    tmp = tmp_path_factory.mktemp("tracked")
    (tmp / "home").mkdir()
    trackers = [name for name, module in TRACKER_MODULES.items() if importlib.util.find_spec(module)]
    env = tracker_env(tmp)
    run_dir, log_dir = tmp / "droid_demo__oracle", tmp / "logs"
    proc = evalkit(
        "eval", "--suite", "droid_demo", "--policy", "oracle", "--tasks", "0", "3", "--episodes-per-task", "1",
        "--max-steps", "100", "--video", "all", "--workers", "2", "--quiet", "--out", str(run_dir),
        "--log-dir", str(log_dir), *[arg for name in trackers for arg in ("--log", name)],
        env=env, cwd=tmp,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = LoggedRun(run_dir, log_dir, env["MLFLOW_TRACKING_URI"], proc.stdout + proc.stderr, trackers)
    assert run.store_success_pct() == 50.0  # the fixture's premise: one of two tasks solved
    return run
