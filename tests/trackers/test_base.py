"""A tracker that cannot log is refused in one line before anything runs: no env worker starts, no run directory
is written. Each case would otherwise fail only after the whole evaluation."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.helpers import assert_one_line_error
from tests.system import need

# slow: the evalkit command in subprocesses
pytestmark = pytest.mark.slow

RUN_ARGS = ["eval", "--suite", "droid_demo", "--policy", "zero", "--tasks", "0", "--episodes-per-task", "1"]


def evalkit_without(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`evalkit ARGS` in a Python where `module` cannot be imported (a None entry in sys.modules blocks it)."""
    code = f"import sys; sys.modules[{module!r}] = None; from evalkit.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def need_package(module: str, extra: str) -> None:
    need(
        importlib.util.find_spec(module) is not None,
        f"Python package {module!r}",
        f"pip install -e '.[{extra}]'",
    )


def test_unknown_tracker(tmp_path):
    proc = evalkit_without("nothing", *RUN_ARGS, "--out", str(tmp_path / "run"), "--log", "neptune")
    assert_one_line_error(proc, "unknown tracker 'neptune'", "tensorboard, wandb, mlflow")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "tracker,module", [("tensorboard", "tensorboardX"), ("wandb", "wandb"), ("mlflow", "mlflow")]
)
def test_missing_extra(tmp_path, tracker, module):
    proc = evalkit_without(module, *RUN_ARGS, "--out", str(tmp_path / "run"), "--log", tracker)
    assert_one_line_error(proc, f"--log {tracker}", f"pip install -e '.[{tracker}]'")
    assert not (tmp_path / "run").exists()


def test_wandb_without_credentials_or_offline_mode(tmp_path):
    need_package("wandb", "wandb")
    (tmp_path / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")} | {
        "HOME": str(tmp_path / "home")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *RUN_ARGS, "--out", str(tmp_path / "run"), "--log", "wandb"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert_one_line_error(proc, "wandb login", "WANDB_MODE=offline")
    assert not (tmp_path / "run").exists()


def test_mlflow_store_that_cannot_be_used(tmp_path):
    need_package("mlflow", "mlflow")
    env = {"MLFLOW_TRACKING_URI": "nosuchscheme://nowhere"}
    proc = evalkit_without("nothing", *RUN_ARGS, "--out", str(tmp_path / "run"), "--log", "mlflow", env=env)
    assert_one_line_error(proc, "--log mlflow", "tracking store cannot be used")
    assert not (tmp_path / "run").exists()
