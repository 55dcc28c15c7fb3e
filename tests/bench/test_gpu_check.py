"""`make gpu-check` keeps working before a GPU is there: bench/gpu_check.py at tiny size on the CPU runs
bench/device_check.py (parity, latency, determinism; tested on its own in test_device_check.py) and then what only
the full venv can do, a LIBERO run through `--ray local`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system import import_or_skip

# slow: runs bench/gpu_check.py in a subprocess, with Ray
pytestmark = pytest.mark.slow

import_or_skip("ray", "make setup installs the [ray] extra")
pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def test_gpu_check_runs_the_device_check_then_a_libero_run_through_ray(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OUT": str(tmp_path)},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    lines = out.stdout.splitlines()
    # device_check's own output, in full: its four parity rows, its JSON in $OUT, its summary line
    assert sum(line.startswith("parity cpu ") and line.endswith(" OK") for line in lines) == 4
    assert (tmp_path / "device_check.json").is_file()
    summary = next(i for i, line in enumerate(lines) if line.startswith("device=cpu b1_ms="))
    run = next(i for i, line in enumerate(lines) if line.startswith("LIBERO through --ray local"))
    assert summary < run
    assert " 0 errors, exit 0" in lines[run] and "obs/s" in lines[run]
    assert lines[-1].startswith("gpu-check passed on cpu")
