"""Checkpoint discovery in real training output directories: layouts, steps, order, temporary names."""

from __future__ import annotations

import pytest

from evalkit.watch.discover import discover
from tests.watch.training import TrainingRun, tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


def found(root):
    return [(c.step, c.layout, c.in_progress, c.path.relative_to(root).as_posix()) for c in discover(root)]


def test_openpi_layouts_in_step_order(tmp_path, tiny):
    run = TrainingRun(tmp_path, tiny)
    run.openpi_pytorch(20000)
    run.openpi_pytorch(5000)
    run.openpi_jax(10000)
    run.openpi_jax(30000, marker=False)
    run.write_weights(run.openpi_dir() / "tmp_40000", "first")
    exp = "checkpoints/pi05_droid/my_exp"
    assert found(tmp_path) == [
        (5000, "openpi_pytorch", False, f"{exp}/5000"),
        (10000, "openpi_jax", False, f"{exp}/10000"),
        (20000, "openpi_pytorch", False, f"{exp}/20000"),
        (30000, "openpi_jax", True, f"{exp}/30000.orbax-checkpoint-tmp-1733000000"),
        (40000, "openpi_pytorch", True, f"{exp}/tmp_40000"),
    ]


def test_lerobot_layout_and_its_last_link(tmp_path, tiny):
    run = TrainingRun(tmp_path, tiny)
    run.lerobot(2000)
    run.lerobot(10000)
    assert found(tmp_path) == [
        (2000, "lerobot", False, "checkpoints/002000/pretrained_model"),
        (10000, "lerobot", False, "checkpoints/010000/pretrained_model"),
    ]  # `checkpoints/last` (a link to 010000) is not a second copy


def test_evalkit_layout_takes_its_step_from_its_name(tmp_path, tiny):
    run = TrainingRun(tmp_path, tiny)
    run.evalkit("step_3000")
    run.evalkit("final")  # no step in its name: not a training checkpoint
    (tmp_path / "notes").mkdir()
    assert found(tmp_path) == [(3000, "evalkit", False, "step_3000")]
    assert found(tmp_path / "step_3000") == [(3000, "evalkit", False, ".")]
