"""evalkit's environment reaches the Ray workers of a cluster started elsewhere: the driver's values travel in the
job's runtime_env (those a submitted job sets itself are left to it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import read_rows
from tests.suites.reach_kind import REGISTRATION, TASKS_DIR
from tests.system import import_or_skip

# slow: imports Ray (evalkit.runner.ray_cluster); starts a Ray cluster and evalkit eval in a subprocess
pytestmark = pytest.mark.slow

import_or_skip("ray", "make setup installs the [ray] extra")

from evalkit.runner.ray_cluster import JOB_CONFIG_ENV, WORKER_ENV, worker_env_vars  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_worker_env_vars_are_the_drivers_less_those_a_submitted_job_sets(monkeypatch):
    for name in WORKER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EVALKIT_SUITE_KINDS", REGISTRATION)
    monkeypatch.setenv("EVALKIT_CACHE", "/data/cache")
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.setenv("EVALKIT_API_KEY", "secret")
    monkeypatch.delenv(JOB_CONFIG_ENV, raising=False)
    assert worker_env_vars() == {
        "EVALKIT_SUITE_KINDS": REGISTRATION,
        "EVALKIT_CACHE": "/data/cache",
        "MUJOCO_GL": "egl",
    }
    monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps({"runtime_env": {"env_vars": {"MUJOCO_GL": "osmesa"}}}))
    assert worker_env_vars() == {"EVALKIT_SUITE_KINDS": REGISTRATION, "EVALKIT_CACHE": "/data/cache"}


def test_a_suite_kind_registered_in_the_drivers_environment_runs_on_a_cluster_started_without_it(
    monkeypatch, tmp_path
):
    """The cluster's processes (a `ray.cluster_utils.Cluster` head, standing in for `ray start` on another
    machine) have evalkit importable but neither $EVALKIT_SUITE_KINDS nor $EVALKIT_TASKS; only the driver
    (`evalkit eval --ray ADDRESS`) has them. Without the runtime_env, every env actor fails to find the kind."""
    from ray.cluster_utils import Cluster

    for name in WORKER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3})
    try:
        run = tmp_path / "run"
        done = subprocess.run(
            [sys.executable, "-m", "evalkit.cli", "eval", "--suite", "reach_demo", "--policy", "zero"]
            + ["--ray", cluster.address, "--workers", "2", "--quiet", "--out", str(run)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "EVALKIT_SUITE_KINDS": REGISTRATION, "EVALKIT_TASKS": str(TASKS_DIR)},
            cwd=tmp_path,
        )
    finally:
        cluster.shutdown()
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_rows(run)
    assert len(rows) == 6 and not any(r["termination"] == "error" for r in rows)
