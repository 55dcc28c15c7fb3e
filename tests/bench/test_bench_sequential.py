"""bench/bench_sequential.py runs end to end (few simulated runs) and ends with its summary line."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

# slow: runs the bench in a subprocess
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_sequential.py"


def test_bench_prints_the_grid_and_ends_with_the_summary_line():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", "40", "--pairs", "200"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    rows = [line for line in lines if re.match(r"\| (97|80)\.0% \|", line)]
    assert len(rows) == 12
    last = re.fullmatch(r"type1_max=([0-9.]+) savings_broken=([0-9.-]+) savings_equal=([0-9.-]+)", lines[-1])
    assert last, lines[-1]
    # a candidate 30 points worse than a 97% baseline is caught long before 200 pairs
    assert float(last.group(2)) > 0.5
