"""Paths written in a checkpoint's own files (the safetensors index, the norm-stats file in evalkit's config.json,
a lerobot processor's state file) never leave the checkpoint directory: `..`, absolute paths and symlinks that
resolve outside are refused before anything is opened."""

import json
import shutil

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.checkpoint import load_checkpoint
from evalkit.models.pi05.cli import make_tiny_checkpoint
from tests.models.pi05.checkpoint.helpers import FIXTURE, FIXTURE_CONFIG, lerobot_dir, openpi_dir


def sharded(tmp_path, shard: str):
    """An openpi checkpoint whose index names `shard`; the real weights are placed where that name points."""
    d = openpi_dir(tmp_path)
    (d / "model.safetensors").unlink()
    target = (d / shard).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE / "model.safetensors", target)
    from safetensors import safe_open

    with safe_open(str(target), framework="pt") as f:
        keys = list(f.keys())
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: shard for k in keys}}))
    return d


def test_a_shard_inside_the_checkpoint_loads(tmp_path):
    d = sharded(tmp_path, "shards/part-0.safetensors")
    assert load_checkpoint(d, "pi05_libero", model_config_file=FIXTURE_CONFIG).weights == (
        (d / "shards" / "part-0.safetensors").resolve(),
    )


@pytest.mark.parametrize("shard", ["../outside.safetensors", "shards/../../outside.safetensors"])
def test_a_shard_outside_the_checkpoint_is_refused(tmp_path, shard):
    d = sharded(tmp_path, shard)
    assert (tmp_path / "outside.safetensors").is_file()  # it is there and readable: only the check refuses it
    with pytest.raises(
        EvalkitError, match=r"index.json: refusing to read .*outside.safetensors: it is outside"
    ):
        load_checkpoint(d, "pi05_libero", model_config_file=FIXTURE_CONFIG)


def test_an_absolute_or_symlinked_shard_is_refused(tmp_path):
    d = sharded(tmp_path, "part.safetensors")
    index = d / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"]
    elsewhere = tmp_path / "elsewhere.safetensors"
    shutil.move(d / "part.safetensors", elsewhere)
    index.write_text(json.dumps({"weight_map": {k: str(elsewhere) for k in weight_map}}))
    with pytest.raises(EvalkitError, match="it is outside"):
        load_checkpoint(d, "pi05_libero", model_config_file=FIXTURE_CONFIG)
    (d / "part.safetensors").symlink_to(elsewhere)
    index.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(EvalkitError, match="it is outside"):
        load_checkpoint(d, "pi05_libero", model_config_file=FIXTURE_CONFIG)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny")


@pytest.mark.parametrize("where", ["../../../../etc/passwd", "/etc/passwd", "link/norm_stats.json"])
def test_norm_stats_named_in_config_json_stay_inside(tiny, tmp_path, where):
    d = tmp_path / "ckpt"
    shutil.copytree(tiny, d)
    info = json.loads((d / "config.json").read_text())
    outside = tmp_path / "outside"
    shutil.copytree(
        (d / info["normalization"]["stats_file"]).parent, outside
    )  # readable stats, out of the dir
    (d / "link").symlink_to(outside, target_is_directory=True)
    info["normalization"]["stats_file"] = where
    (d / "config.json").write_text(json.dumps(info))
    with pytest.raises(EvalkitError, match=r"config.json: refusing to read .*: it is outside"):
        load_checkpoint(d)


def test_norm_stats_through_a_link_that_stays_inside_load(tiny, tmp_path):
    d = tmp_path / "ckpt"
    shutil.copytree(tiny, d)
    info = json.loads((d / "config.json").read_text())
    stats = d / info["normalization"]["stats_file"]
    (d / "link").symlink_to(stats.parent, target_is_directory=True)
    info["normalization"]["stats_file"] = "link/norm_stats.json"
    (d / "config.json").write_text(json.dumps(info))
    assert load_checkpoint(d).norm_files == ((d / "assets").resolve() / stats.relative_to(d / "assets"),)


@pytest.mark.parametrize("where", ["../secret.safetensors", "/tmp/secret.safetensors"])
def test_lerobot_state_files_stay_inside(tmp_path, reference, where):
    d = lerobot_dir(tmp_path, reference)
    for name in ("policy_preprocessor.json", "policy_postprocessor.json"):
        pipeline = json.loads((d / name).read_text())
        for step in pipeline["steps"]:
            if "state_file" in step:
                step["state_file"] = where
        (d / name).write_text(json.dumps(pipeline))
    with pytest.raises(EvalkitError, match=r"processor.json: refusing to read .*: it is outside"):
        load_checkpoint(d, model_config_file=FIXTURE_CONFIG)
