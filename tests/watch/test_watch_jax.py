"""An openpi JAX checkpoint (orbax `params/`, as openpi `scripts/train.py` writes it) under a watch: converted once
into the watch's cache and evaluated from there. Needs the optional `orbax` extra (without it the checkpoint is
recorded as failed with what to install: tests/watch/test_watch_failures_and_trackers.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from evalkit.models.pi05.cli import tiny_training_sentences
from evalkit.models.pi05.tokenizer import train_tiny_sentencepiece
from tests.fixtures import pi05_fixture
from tests.helpers import read_manifest
from tests.models.pi05.checkpoint.helpers import LIBERO, write_stats

pytestmark = pytest.mark.slow


def write_orbax_checkpoint(step_dir):
    """The golden fixture's JAX parameters as an orbax tree (nnx.State `value` leaves), written under orbax's
    temporary name, its completion marker, then renamed, as orbax does."""
    ocp = pytest.importorskip("orbax.checkpoint", reason="needs the orbax extra: pip install -e '.[orbax]'")
    tree: dict = {}
    with np.load(pi05_fixture() / "params_jax.npz") as flat:
        for key in flat.files:
            node = tree.setdefault("params", {})
            *parents, leaf = key.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = {"value": flat[key]}
    tmp = step_dir.with_name(f"{step_dir.name}.orbax-checkpoint-tmp-1733000000")
    tmp.mkdir(parents=True)
    ocp.PyTreeCheckpointer().save((tmp / "params").resolve(), tree)
    write_stats(tmp / "assets" / LIBERO / "norm_stats.json")
    (tmp / "_CHECKPOINT_METADATA").write_text("{}")
    tmp.rename(step_dir)
    return step_dir


def test_jax_checkpoint_is_converted_once_and_evaluated(tmp_path):
    checkpoint = write_orbax_checkpoint(tmp_path / "train" / "checkpoints" / "pi05_libero" / "exp" / "1000")
    tokenizer = train_tiny_sentencepiece(
        tmp_path / "tokenizer.model", tiny_training_sentences(), vocab_size=512
    )
    watch_dir = tmp_path / "watch"
    command = [
        sys.executable, "-m", "evalkit.cli", "watch", str(tmp_path / "train"), "--suite", "libero_spatial",
        "--once", "--config", "pi05_libero", "--tokenizer", str(tokenizer), "--tasks", "0",
        "--episodes-per-task", "1", "--max-steps", "5", "--workers", "1", "--heldout-episodes-per-task", "1",
        "--out", str(watch_dir), "--quiet",
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (record,) = json.loads((watch_dir / "watch.json").read_text())["checkpoints"].values()
    assert (record["path"], record["layout"], record["status"]) == (str(checkpoint), "openpi_jax", "done")
    converted = watch_dir / "converted" / "step_000001000"
    assert read_manifest(watch_dir / "step_000001000")["config"]["checkpoint"] == str(converted)
    # the held-out re-evaluation loads the same converted copy
    assert read_manifest(watch_dir / "heldout" / "step_000001000")["config"]["checkpoint"] == str(converted)
    assert not list((watch_dir / "converted").glob("*.partial"))
