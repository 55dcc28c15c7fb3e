"""Completeness: a checkpoint being written is never taken as complete. The clock is a counter the test advances,
so "settled" is decided by what the directory looked like at each poll, not by sleeping."""

from __future__ import annotations

import pytest

from evalkit.watch.complete import Completeness, safetensors_problem
from evalkit.watch.discover import discover
from tests.watch.training import TrainingRun, remove_last_link, tiny_checkpoint


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


def poll(completeness, root):
    return {c.step: completeness.check(c)[0] for c in discover(root)}


def test_half_written_weights_are_not_whole(tmp_path, tiny):
    run = TrainingRun(tmp_path, tiny)
    run.write_weights(tmp_path / "w", "first")
    assert "header describes" in safetensors_problem(tmp_path / "w" / "model.safetensors")
    run.write_weights(tmp_path / "w", "rest")
    assert safetensors_problem(tmp_path / "w" / "model.safetensors") is None
    (tmp_path / "w" / "model.safetensors").write_bytes(b"\x10\x00")
    assert "no header yet" in safetensors_problem(tmp_path / "w" / "model.safetensors")


def test_lerobot_checkpoints_written_in_steps_with_a_partial_one(tmp_path, tiny):
    """Three checkpoints, the second caught half-written: the first is complete by lerobot's `last` link at once;
    the half-written one never counts, whatever the time; once whole it must also settle; the third comes with its
    link."""
    run, clock = TrainingRun(tmp_path, tiny), Clock()
    completeness = Completeness(settle_s=30, clock=clock)
    run.lerobot(1000)
    assert poll(completeness, tmp_path) == {1000: True}

    run.lerobot(2000, part="first")
    for _ in range(3):
        clock.now += 100
        assert poll(completeness, tmp_path) == {1000: True, 2000: False}

    run.lerobot(2000, part="rest", link=False)
    assert poll(completeness, tmp_path)[2000] is False  # whole, first seen so
    clock.now += 10
    assert poll(completeness, tmp_path)[2000] is False  # unchanged for 10 s of 30
    clock.now += 25
    assert poll(completeness, tmp_path)[2000] is True

    run.lerobot(3000)
    assert poll(completeness, tmp_path) == {1000: True, 2000: True, 3000: True}
    remove_last_link(tmp_path)  # without the marker, a finished checkpoint still has to settle
    assert poll(Completeness(settle_s=30, clock=clock), tmp_path) == {1000: False, 2000: False, 3000: False}


def test_a_change_restarts_the_settle_time(tmp_path, tiny):
    run, clock = TrainingRun(tmp_path, tiny), Clock()
    completeness = Completeness(settle_s=30, clock=clock)
    checkpoint = run.evalkit("step_500")
    assert poll(completeness, tmp_path) == {500: False}
    clock.now += 20
    (checkpoint / "assets" / "droid" / "norm_stats.json").write_text("{}")  # still being written
    clock.now += 20
    assert poll(completeness, tmp_path) == {500: False}
    clock.now += 31
    assert poll(completeness, tmp_path) == {500: True}


def test_openpi_markers_and_temporary_names(tmp_path, tiny):
    run, clock = TrainingRun(tmp_path, tiny), Clock()
    completeness = Completeness(settle_s=30, clock=clock)
    run.openpi_jax(1000)
    run.openpi_jax(2000, marker=False)
    run.openpi_pytorch(3000)
    run.write_weights(run.openpi_dir() / "tmp_4000")
    clock.now += 1000
    assert poll(completeness, tmp_path) == {1000: True, 2000: False, 3000: False, 4000: False}
    clock.now += 1000
    # a temporary name never counts; an openpi PyTorch step directory (renamed when done) settles like any other
    assert poll(completeness, tmp_path) == {1000: True, 2000: False, 3000: True, 4000: False}
