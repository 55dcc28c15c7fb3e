"""`make report` and `make regress` without their variables say which to set, and exit non-zero; `make test-fast`
runs the fast tier."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import shell_env

# slow: make in subprocesses
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clone(tmp_path):
    if not (Path(sys.prefix) / ".installed").is_file():
        pytest.skip("needs the environment `make setup` creates (.venv/.installed)")
    (tmp_path / "Makefile").symlink_to(REPO / "Makefile")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    os.utime(tmp_path / "pyproject.toml", (0, 0))  # older than .venv/.installed: make never reinstalls here
    return tmp_path


@pytest.mark.parametrize(
    "args,message",
    [
        (["report"], "make report: set RUN=<run directory>"),
        (["export"], "make export: set RUN=<run directory>"),
        (["regress"], "make regress: set BASE=<baseline run directory> NEW=<candidate run directory>"),
        (["regress", "BASE=results/a"], "make regress: set BASE="),
        (["watch", "SUITE=droid_demo"], "make watch: set CKPTS=<training output directory>"),
    ],
)
def test_targets_without_their_variables(clone, args, message):
    proc = subprocess.run(
        ["make", *args], cwd=clone, env=shell_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert message in proc.stderr and "usage:" not in proc.stderr and "pip" not in proc.stdout


def test_test_fast_runs_ruff_then_only_the_fast_tier(clone):
    proc = subprocess.run(
        ["make", "-n", "test-fast"], cwd=clone, env=shell_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    programs = [line.split()[0] for line in lines]
    assert programs == [".venv/bin/ruff", ".venv/bin/ruff", ".venv/bin/python"], proc.stdout
    assert '-m pytest -q -m "not slow"' in lines[-1]
