"""`from evalkit import evaluate`: a function, a torch module or a checkpoint path evaluated from Python gives the same
episode rows as `evalkit eval` on the same episodes; the temporary run directory is removed unless kept."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit import evaluate
from evalkit.models.pi05.cli import make_tiny_checkpoint
from tests.helpers import OUTCOME_COLUMNS as OUTCOME
from tests.helpers import evalkit, read_rows

# slow: DROID-style scenes, spawned env workers, the evalkit command
pytestmark = pytest.mark.slow

RUN = {"suite": "droid_demo", "episodes_per_task": 1, "workers": 1, "tasks": [0, 3], "max_steps": 30}
CLI_RUN = ["--suite", "droid_demo", "--episodes-per-task", "1", "--workers", "1", "--tasks", "0", "3"]
CLI_RUN += ["--max-steps", "30", "--quiet"]


def outcomes(rows: list[dict]) -> list[dict]:
    return [{key: row[key] for key in OUTCOME} for row in rows]


def test_function_gives_the_rows_of_the_zero_policy(tmp_path):
    """A function returning zero chunks of the zero policy's horizon is the zero policy: same episodes, same
    outcomes, same number of policy calls; it receives batches in the documented wire format."""
    seen = []

    def zeros(batch):
        seen.append(batch)
        return np.zeros((len(batch["prompt"]), 10, 8), np.float32)

    result = evaluate(zeros, out=tmp_path / "api", **RUN)
    cli = evalkit("eval", "--policy", "zero", "--out", str(tmp_path / "cli"), *CLI_RUN)
    assert cli.returncode == 0, cli.stderr
    api_rows, cli_rows = read_rows(tmp_path / "api"), read_rows(tmp_path / "cli")
    assert outcomes(api_rows) == outcomes(cli_rows) and len(api_rows) == 2
    assert result.episodes[OUTCOME].to_dict("records") == outcomes(api_rows)
    assert sum(len(b["prompt"]) for b in seen) == sum(row["policy_calls"] for row in api_rows)
    batch = seen[0]
    assert batch["observation/exterior_image_1_left"].dtype == np.uint8
    assert batch["observation/exterior_image_1_left"].shape[1:] == (224, 224, 3)
    assert batch["observation/joint_position"].shape == (len(batch["prompt"]), 7)
    assert set(batch["prompt"]) <= {"pick up the blue block", "close the top drawer of the cabinet"}
    assert (tmp_path / "api" / "report" / "report.html").is_file()
    row = result.summary.iloc[0]
    assert (row["suite"], row["episodes"], row["successes"]) == ("droid_demo", 2, 0)
    assert row["ci95_low_pct"] == 0.0 and 0 < row["ci95_high_pct"] < 100


def test_tiny_checkpoint_gives_the_rows_and_actions_of_the_cli(tmp_path):
    """The same tiny pi0.5 checkpoint through evaluate(path) and through `evalkit eval --policy pi05`: the same rows
    (policy identity included) and the same executed actions, step by step."""
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny_droid", "droid", seed=0)
    run = {**RUN, "tasks": [3], "max_steps": 12}
    evaluate(checkpoint, out=tmp_path / "api", save_actions=True, **run)
    cli_run = [*CLI_RUN[:7], "3", "--max-steps", "12", "--quiet", "--save-actions"]
    cli = evalkit(
        "eval", "--policy", "pi05", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "cli"), *cli_run
    )
    assert cli.returncode == 0, cli.stderr
    api_rows, cli_rows = read_rows(tmp_path / "api"), read_rows(tmp_path / "cli")
    assert outcomes(api_rows) == outcomes(cli_rows)
    assert [r["policy"] for r in api_rows] == [r["policy"] for r in cli_rows]
    (api_actions,) = (tmp_path / "api" / "actions").glob("*.npz")
    cli_actions = tmp_path / "cli" / "actions" / api_actions.name
    np.testing.assert_array_equal(np.load(api_actions)["actions"], np.load(cli_actions)["actions"])


def test_torch_module_and_temporary_directory(tmp_path, monkeypatch):
    """A torch module gets tensors; without `out` the run directory is temporary and removed afterwards."""
    import tempfile

    import torch

    class Still(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.zeros(()))

        def forward(self, batch):
            assert isinstance(batch["observation/joint_position"], torch.Tensor)
            return self.scale * torch.zeros(len(batch["prompt"]), 10, 8)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = evaluate(Still(), cameras=(), **{**RUN, "tasks": [0], "max_steps": 10})
    assert result.run_dir is None and not list(tmp_path.glob("evalkit-*"))
    assert result.episodes["termination"].tolist() == ["max_steps"]
    kept = evaluate(Still(), cameras=(), keep=True, **{**RUN, "tasks": [0], "max_steps": 10})
    assert kept.run_dir is not None and (kept.run_dir / "episodes.sqlite").is_file()
    assert (kept.run_dir / "report" / "report.md").is_file()


def test_bad_arguments():
    with pytest.raises(TypeError, match="max_step"):
        evaluate("zero", suite="droid_demo", max_step=10)
    with pytest.raises(TypeError, match="policy must be"):
        evaluate(42, suite="droid_demo")
