"""The watch state survives a restart: finished checkpoints are skipped, an interrupted one resumes, a failed one
is not retried; a watch directory of another training run or suite is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.watch.discover import Checkpoint
from evalkit.watch.state import load_state, save_state, state_path


def checkpoints(root: Path) -> list[Checkpoint]:
    return [Checkpoint(step, root / str(step), "openpi_pytorch") for step in (1000, 2000, 3000, 4000)]


def test_restart_skips_finished_and_resumes_the_interrupted(tmp_path):
    root, watch = tmp_path / "train", tmp_path / "watch"
    first, second, third, fourth = checkpoints(root)
    state = load_state(watch, root, "droid_demo")
    assert state.todo([third, first, second]) == [first, second, third]
    for checkpoint, error in ((first, None), (second, "cannot load: missing norm stats")):
        state.start(checkpoint, state.run_dir(watch, checkpoint))
        state.finish(checkpoint, error)
    state.start(third, state.run_dir(watch, third))
    save_state(watch, state)  # killed here, while evaluating the third

    restarted = load_state(watch, root, "droid_demo")
    assert restarted.todo([first, second, third, fourth]) == [third, fourth]
    assert [r.step for r in restarted.by_status("done")] == [1000]
    (failed,) = restarted.by_status("failed")
    assert (failed.step, failed.error) == (2000, "cannot load: missing norm stats")
    assert restarted.record(third).run_dir == str(watch / "step_000003000")


def test_two_checkpoints_of_one_step_do_not_share_a_run_directory(tmp_path):
    watch = tmp_path / "watch"
    state = load_state(watch, tmp_path, "droid_demo")
    a = Checkpoint(1000, tmp_path / "a" / "1000", "openpi_pytorch")
    state.start(a, state.run_dir(watch, a))
    with pytest.raises(EvalkitError, match="step 1000 is already evaluated from"):
        state.run_dir(watch, Checkpoint(1000, tmp_path / "b" / "1000", "openpi_jax"))


def test_another_root_or_suite_is_refused(tmp_path):
    watch = tmp_path / "watch"
    save_state(watch, load_state(watch, tmp_path / "train", "droid_demo"))
    with pytest.raises(EvalkitError, match="choose another --out"):
        load_state(watch, tmp_path / "other", "droid_demo")
    with pytest.raises(EvalkitError, match="choose another --out"):
        load_state(watch, tmp_path / "train", "libero_spatial")
    state_path(watch).write_text("{")
    with pytest.raises(EvalkitError, match="unreadable watch state"):
        load_state(watch, tmp_path / "train", "droid_demo")
