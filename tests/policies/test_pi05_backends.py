"""Tiny random pi05 on a real LIBERO task gives bit-identical actions through the local runner and `--ray local`.

The local run has one env worker (every policy call is a batch of one); the Ray run has two env actors sharing a
replica (batches of two, whenever their requests meet), in a process where Ray sets OMP_NUM_THREADS=1. Before the
time conditioning was computed once per batch, a batch of one rounded differently from a batch of two, and the
actions of the two backends differed by up to ~1e-5.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from evalkit.models.pi05.cli import make_tiny_checkpoint
from tests.helpers import read_rows
from tests.system import import_or_skip

# slow: evalkit eval in subprocesses, with Ray
pytestmark = pytest.mark.slow

import_or_skip("ray", "make setup installs the [ray] extra")
STEPS = 30


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny", "libero", seed=0)


def run_eval(checkpoint, out, *flags: str) -> None:
    cmd = [sys.executable, "-m", "evalkit.cli", "eval", "--suite", "libero_object", "--tasks", "1"]
    cmd += ["--episodes-per-task", "2", "--max-steps", str(STEPS), "--policy", "pi05"]
    cmd += ["--checkpoint", str(checkpoint), "--save-actions", "--quiet", "--out", str(out), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def test_local_and_ray_store_bit_identical_actions(checkpoint, tmp_path):
    run_eval(checkpoint, tmp_path / "local", "--workers", "1")
    run_eval(checkpoint, tmp_path / "ray", "--workers", "2", "--ray", "local")
    local, ray = read_rows(tmp_path / "local"), read_rows(tmp_path / "ray")
    assert len(local) == len(ray) == 2
    assert all(row["termination"] != "error" for row in local + ray)
    names = sorted(p.name for p in (tmp_path / "local" / "actions").iterdir())
    assert len(names) == 2
    for name in names:
        a, b = (np.load(tmp_path / run / "actions" / name)["actions"] for run in ("local", "ray"))
        assert a.shape == (STEPS, 7)
        assert np.array_equal(a, b), f"{name}: max |local - ray| = {np.abs(a - b).max():.3g}"
