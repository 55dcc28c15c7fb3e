"""`evalkit watch --once` twice over a growing training run (lerobot layout), with checkpoints that do not load and
every tracker installed here, offline: a checkpoint that fails to load is recorded as failed with one line and
skipped, the watch goes on (exit 4 says some failed); each tracker keeps ONE run for the whole watch, the numbers of
each checkpoint at its training step, continued by the second watch; read back with each tracker's own reader."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.report.stats import wilson
from tests.helpers import read_rows
from tests.trackers.wandb_records import records
from tests.watch.training import LoadableTraining, tiny_checkpoint

pytestmark = pytest.mark.slow

TRACKER_MODULES = {"tensorboard": "tensorboardX", "wandb": "wandb", "mlflow": "mlflow"}
EPISODES = 2


def env_for(tmp: Path) -> dict[str, str]:
    (tmp / "home").mkdir(exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HOME": str(tmp / "home")}
    env |= {"MLFLOW_TRACKING_URI": (tmp / "mlruns").as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"}
    env.pop("WANDB_API_KEY", None)
    return env


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("watched")
    trackers = [name for name, module in TRACKER_MODULES.items() if importlib.util.find_spec(module)]
    run = LoadableTraining(tmp / "train", tiny_checkpoint(tmp))
    run.lerobot(1000)
    jax = run.openpi_jax(1500)  # orbax params/: converted only with the `orbax` extra; this one is not real
    broken = run.lerobot(2000)
    (broken / "policy_preprocessor.json").unlink()  # lerobot's normalization stats are gone
    watch_dir, logs, env = tmp / "watch", tmp / "logs", env_for(tmp)
    command = [
        sys.executable, "-m", "evalkit.cli", "watch", str(run.root), "--suite", "droid_demo", "--out",
        str(watch_dir), "--once", "--config", "pi05_droid", "--tokenizer", str(run.tokenizer), "--tasks", "0",
        "--episodes-per-task", str(EPISODES), "--max-steps", "10", "--workers", "1",
        "--heldout-episodes-per-task", "0", "--quiet", "--log-dir", str(logs),
        *[arg for name in trackers for arg in ("--log", name)],
    ]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    run.lerobot(3000)  # training goes on; the watch is started again
    second = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    return watch_dir, logs, env, trackers, jax, broken, first, second


def test_checkpoints_that_do_not_load_are_recorded_and_skipped(watched):
    watch_dir, _, _, _, jax, broken, first, second = watched
    assert first.returncode == 4 and second.returncode == 4, first.stderr[-3000:] + second.stderr[-3000:]
    state = json.loads((watch_dir / "watch.json").read_text())["checkpoints"]
    assert {r["step"]: r["status"] for r in state.values()} == {
        1000: "done",
        1500: "failed",
        2000: "failed",
        3000: "done",
    }
    assert "orbax" in state[str(jax)]["error"]
    assert "policy_preprocessor.json" in state[str(broken)]["error"]
    failures = [line for line in first.stderr.splitlines() if " failed: " in line]
    assert failures == [
        f"evalkit watch: step 1,500 failed: {state[str(jax)]['error']}",
        f"evalkit watch: step 2,000 failed: {state[str(broken)]['error']}",
    ]
    assert " failed: " not in second.stderr  # not retried without --retry-failed
    assert "Traceback" not in first.stderr + second.stderr
    report = (watch_dir / "report" / "report.md").read_text()
    assert "## Failed and incomplete checkpoints" in report and "orbax" in report


def stored(watch_dir: Path, step: int) -> tuple[float, float, float]:
    """Success % and its Wilson interval, from the checkpoint's episode store."""
    rows = read_rows(watch_dir / f"step_{step:09d}")
    k, n = sum(r["success"] for r in rows), len(rows)
    r = wilson(k, n)
    return 100 * r.rate, 100 * r.low, 100 * r.high


def test_tensorboard_one_run_with_a_point_per_step(watched):
    watch_dir, logs, _, trackers, *_ = watched
    if "tensorboard" not in trackers:
        pytest.skip("tensorboardX not installed: pip install -e '.[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs / watch_dir.name), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()  # both watches' event files in one directory: one run
    points = {e.step: e.value for e in events.Scalars("success_pct/overall")}
    highs = {e.step: e.value for e in events.Scalars("success_pct/overall_ci95_high")}
    assert sorted(points) == [1000, 3000]
    for step in (1000, 3000):
        rate, _, high = stored(watch_dir, step)
        assert points[step] == pytest.approx(rate) and highs[step] == pytest.approx(high, abs=0.01)
    checkpoints = {
        e.step: e.tensor_proto.string_val[0].decode() for e in events.Tensors("checkpoint/text_summary")
    }
    assert sorted(checkpoints) == [1000, 3000] and "000003000" in checkpoints[3000]


def test_wandb_one_run_continued_with_training_step_as_x_axis(watched):
    watch_dir, logs, _, trackers, *_ = watched
    if "wandb" not in trackers:
        pytest.skip("wandb not installed: pip install -e '.[wandb]'")
    run_files = sorted((logs / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 2 and len({f.name for f in run_files}) == 1  # two watches, one W&B run id
    history = []
    for run_file in run_files:
        for record in records(run_file):
            if record.WhichOneof("record_type") == "history":
                items = record.history.item  # W&B writes a key as `key`, or as a one-part `nested_key`
                history.append(
                    {item.key or item.nested_key[0]: json.loads(item.value_json) for item in items}
                )
    points = [h for h in history if "success_pct/overall" in h]
    assert [h["training_step"] for h in points] == [1000, 3000]
    for point in points:
        assert point["success_pct/overall"] == pytest.approx(stored(watch_dir, point["training_step"])[0])
    described = [h for h in history if "checkpoint/checkpoint" in h]
    assert [h["checkpoint/checkpoint"].endswith("003000/pretrained_model") for h in described] == [
        False,
        True,
    ]


def test_mlflow_one_run_reopened_with_a_point_per_step(watched):
    watch_dir, _, env, trackers, *_ = watched
    if "mlflow" not in trackers:
        pytest.skip("mlflow not installed: pip install -e '.[mlflow]'")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("evalkit").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == watch_dir.name
    history = client.get_metric_history(run.info.run_id, "success_pct/overall")
    assert sorted(m.step for m in history) == [1000, 3000]
    for metric in history:
        assert metric.value == pytest.approx(stored(watch_dir, metric.step)[0])
    assert run.data.tags["step_000003000/checkpoint"].endswith("003000/pretrained_model")
    assert run.data.params["suite"] == "droid_demo"
