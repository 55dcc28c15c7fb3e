"""A watch's tracker runs: a tracker that fails to log (here TensorBoard, whose log directory cannot be created) is
one line and leaves the checkpoint unlogged for that tracker only, so the next attempt logs it; the per-checkpoint
keys of a run's config are told apart from the watch's."""

from __future__ import annotations

from dataclasses import replace

import pytest

from evalkit.trackers.base import make_tracker
from evalkit.trackers.config import TrackerOptions
from evalkit.trackers.record import run_record
from evalkit.watch.state import WatchState
from evalkit.watch.tracking import WatchTrackers, split_config
from tests.report.runs import grid, write_run
from tests.system import import_or_skip


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path / "step_000001000", {k: k[2] == 0 for k in grid("droid_demo", 2, 2)})


def test_a_failing_tracker_is_one_line_and_retried(tmp_path, run_dir):
    import_or_skip("tensorboardX", "pip install -e '.[tensorboard]'")
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    options = TrackerOptions(log=("tensorboard",), log_dir=blocker)
    state = WatchState(str(tmp_path / "train"), "droid_demo")
    trackers = WatchTrackers([make_tracker("tensorboard")], options, tmp_path / "watch", state)
    logged, errors = trackers.log(run_dir, 1000, {}, [])
    assert logged == [] and len(errors) == 1
    assert errors[0].startswith("logging step 1,000 to tensorboard failed: ") and "\n" not in errors[0]

    trackers.options = replace(options, log_dir=tmp_path / "logs")
    logged, errors = trackers.log(run_dir, 1000, {}, logged)
    assert (logged, errors) == (["tensorboard"], [])
    assert list((tmp_path / "logs" / "watch").glob("events.out.tfevents.*"))
    assert trackers.log(run_dir, 1000, {}, logged) == (["tensorboard"], [])  # nothing logged twice
    trackers.close()


def test_per_checkpoint_keys_are_not_the_watch_config(run_dir):
    shared, own = split_config(run_record(run_dir))
    assert {"run_id", "run_dir", "checkpoint", "policy_fingerprint", "option/out"} <= set(own)
    assert "protocol_fingerprint" in shared and "option/max_steps" in shared
    assert not set(shared) & set(own)
