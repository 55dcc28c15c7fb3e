"""`make gpu-check` keeps working before a GPU is there: bench/gpu_check.py at tiny size on the CPU (parity, the
latency table, a LIBERO run through `--ray local`)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.system import import_or_skip

# slow: runs bench/gpu_check.py in a subprocess, with Ray
pytestmark = pytest.mark.slow

import_or_skip("ray", "make setup installs the [ray] extra")
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def test_gpu_check_runs_at_tiny_size_on_the_cpu():
    out = subprocess.run([sys.executable, str(SCRIPT), "--tiny"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert sum(line.startswith("parity cpu ") and line.endswith(" OK") for line in lines) == 2
    assert any(line.split()[:1] == ["4"] for line in lines)  # the batch-4 latency row
    run = next(line for line in lines if line.startswith("LIBERO through --ray local"))
    assert " 0 errors" in run and "obs/s" in run
    assert lines[-1].startswith("gpu-check passed on cpu")
