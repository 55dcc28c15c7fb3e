"""Strict checkpoint loading (openpi PyTorch, lerobot, ours), JAX npz conversion, and every kind of bad input."""

import argparse
import json
import logging
import os
import pickle
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from evalkit.errors import EvalkitError
from evalkit.models.pi05 import cli
from evalkit.models.pi05.checkpoint import (
    NAMED_CONFIGS,
    convert_checkpoint,
    expected_shapes,
    infer_dims,
    load_checkpoint,
)
from evalkit.models.pi05.config import Pi05Config
from evalkit.models.pi05.normalize import write_openpi_norm_stats
from tests.fixtures import pi05_fixture

FIXTURE = pi05_fixture()
FIXTURE_CONFIG = FIXTURE / "config.json"
LIBERO = "physical-intelligence/libero"
EMBED = "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight"


@pytest.fixture(scope="module")
def reference():
    return load_file(str(FIXTURE / "model.safetensors"))


def stats(dim):
    return {
        "mean": np.linspace(-1, 1, dim),
        "std": np.full(dim, 0.5),
        "q01": np.full(dim, -2.0),
        "q99": np.linspace(1, 3, dim),
    }


def write_stats(path, state_dim=8, action_dim=7):
    write_openpi_norm_stats(path, stats(state_dim), stats(action_dim))
    return path


def openpi_dir(root, tensors=None, asset=LIBERO, name="ckpt", action_dim=7):
    """openpi PyTorch layout around the fixture's weights (optionally altered)."""
    d = root / name
    d.mkdir(parents=True)
    if tensors is None:
        shutil.copyfile(FIXTURE / "model.safetensors", d / "model.safetensors")
    else:
        save_file(tensors, str(d / "model.safetensors"))
    if asset is not None:
        write_stats(d / "assets" / asset / "norm_stats.json", action_dim=action_dim)
    return d


def assert_same_tensors(state, reference):
    assert set(state) == set(reference)
    for key, value in reference.items():
        assert torch.equal(state[key], value), key


def test_npz_conversion_reproduces_the_openpi_pytorch_weights(tmp_path, reference):
    out = convert_checkpoint(
        FIXTURE / "params_jax.npz",
        tmp_path / "out",
        "pi05_libero",
        model_config_file=FIXTURE_CONFIG,
        norm_stats=write_stats(tmp_path / "ns.json"),
    )
    ckpt = load_checkpoint(out)
    assert ckpt.layout == "evalkit"
    fixture = Pi05Config.from_fixture(json.loads(FIXTURE_CONFIG.read_text()))
    # dims from the tensors; horizon, prompt length and format from the named config
    assert ckpt.config == replace(fixture, max_token_len=200, discrete_state_input=False)
    assert_same_tensors(ckpt.state_dict(), reference)
    np.testing.assert_allclose(ckpt.norm.actions.stats["q99"], np.linspace(1, 3, 7), rtol=1e-6)


def test_converted_checkpoint_reproduces_the_golden_jax_actions(tmp_path):
    out = convert_checkpoint(
        FIXTURE / "params_jax.npz",
        tmp_path / "out",
        "pi05_libero",
        model_config_file=FIXTURE_CONFIG,
        norm_stats=write_stats(tmp_path / "ns.json"),
    )
    model = load_checkpoint(out).build_model()
    inputs, expected = np.load(FIXTURE / "inputs.npz"), np.load(FIXTURE / "expected.npz")
    keys = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model is much faster on one thread of a busy shared machine
    try:
        actions = model.sample_actions(
            {k: torch.from_numpy(inputs[f"image/{k}"]) for k in keys},
            {k: torch.from_numpy(inputs[f"image_mask/{k}"]) for k in keys},
            torch.from_numpy(inputs["tokenized_prompt"]).long(),
            torch.from_numpy(inputs["tokenized_prompt_mask"]),
            torch.from_numpy(inputs["noise"]),
        )
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(actions.numpy(), expected["actions"], atol=1e-4)


def test_openpi_layout_loads_with_the_libero_config(tmp_path, reference):
    ckpt = load_checkpoint(openpi_dir(tmp_path), "pi05_libero", model_config_file=FIXTURE_CONFIG)
    assert ckpt.layout == "openpi"
    assert ckpt.behaviour == NAMED_CONFIGS["pi05_libero"]
    assert (ckpt.config.action_horizon, ckpt.config.discrete_state_input, ckpt.config.max_token_len) == (
        10,
        False,
        200,
    )
    assert ckpt.norm.state.mode == ckpt.norm.actions.mode == "quantile"
    assert_same_tensors(ckpt.state_dict(), reference)
    model = ckpt.build_model()
    assert not any(p.is_meta for p in model.parameters())
    assert torch.equal(model.state_dict()[EMBED], reference[EMBED])


def _altered(reference, kind):
    tensors = dict(reference)
    if kind == "missing":
        del tensors[EMBED]
    elif kind == "shape":
        tensors["action_in_proj.weight"] = torch.zeros(32, 33)
    elif kind == "extra":
        tensors["paligemma_with_expert.some_new_adapter.weight"] = torch.zeros(2)
    return tensors


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "1 missing tensor.*embed_tokens"),
        ("shape", r"action_in_proj.weight has shape \(32, 33\), expected \(32, 32\)"),
        ("extra", "1 unexpected tensor.*some_new_adapter"),
    ],
)
def test_mismatched_tensors_are_errors(tmp_path, reference, kind, message):
    with pytest.raises(EvalkitError, match=message):
        load_checkpoint(
            openpi_dir(tmp_path, _altered(reference, kind)), "pi05_libero", model_config_file=FIXTURE_CONFIG
        )


def test_known_unused_tensors_are_accepted_and_dropped(tmp_path, reference):
    tensors = dict(reference)
    tensors["paligemma_with_expert.paligemma.lm_head.weight"] = reference[EMBED].clone()
    tensors["paligemma_with_expert.gemma_expert.lm_head.weight"] = torch.zeros(512, 32)
    ckpt = load_checkpoint(openpi_dir(tmp_path, tensors), "pi05_libero", model_config_file=FIXTURE_CONFIG)
    assert_same_tensors(ckpt.state_dict(), reference)


def test_legacy_transformers_names_are_renamed(tmp_path, reference):
    renames = {
        "paligemma.model.language_model.": "paligemma.language_model.model.",
        "paligemma.model.vision_tower.": "paligemma.vision_tower.",
        "paligemma.model.multi_modal_projector.": "paligemma.multi_modal_projector.",
    }
    legacy = {}
    for key, value in reference.items():
        for new, old in renames.items():
            key = key.replace(new, old)
        legacy[key] = value
    assert not any(k.startswith("paligemma_with_expert.paligemma.model.") for k in legacy)
    ckpt = load_checkpoint(openpi_dir(tmp_path, legacy), "pi05_libero", model_config_file=FIXTURE_CONFIG)
    assert_same_tensors(ckpt.state_dict(), reference)
    duplicate = dict(legacy, **{EMBED: reference[EMBED].clone()})  # the same tensor under both names
    with pytest.raises(EvalkitError, match="both map to"):
        load_checkpoint(
            openpi_dir(tmp_path, duplicate, name="dup"), "pi05_libero", model_config_file=FIXTURE_CONFIG
        )


def test_missing_norm_stats_is_an_error(tmp_path):
    with pytest.raises(
        EvalkitError, match="missing norm stats .*physical-intelligence/libero/norm_stats.json"
    ):
        load_checkpoint(openpi_dir(tmp_path, asset=None), "pi05_libero", model_config_file=FIXTURE_CONFIG)
    d = openpi_dir(tmp_path, asset="droid", name="other")
    with pytest.raises(EvalkitError, match=r"found: \['droid'\]"):
        load_checkpoint(d, "pi05_libero", model_config_file=FIXTURE_CONFIG)


class _Boom:
    def __reduce__(self):
        return (open, (str(_Boom.marker), "w"))


def test_pickles_are_refused_never_unpickled(tmp_path):
    _Boom.marker = tmp_path / "unpickled"
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(EvalkitError, match="never unpickles"):
        load_checkpoint(d)
    pt = tmp_path / "model.pt"
    pt.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(EvalkitError, match="never unpickles"):
        load_checkpoint(pt)
    npz = tmp_path / "params.npz"
    np.savez(npz, x=np.array([_Boom()], dtype=object))
    with pytest.raises(EvalkitError, match="pickled objects"):
        convert_checkpoint(npz, tmp_path / "out", "pi05_libero", model_config_file=FIXTURE_CONFIG)
    assert not _Boom.marker.exists()


def _lerobot_dir(root, reference):
    d = root / "lerobot_ckpt"
    d.mkdir()
    tensors = {"model." + k: v for k, v in reference.items() if k != EMBED}
    tensors["model.paligemma_with_expert.paligemma.lm_head.weight"] = reference[EMBED]  # tied, saved once
    save_file(tensors, str(d / "model.safetensors"))
    config = {
        "type": "pi05",
        "chunk_size": 10,
        "n_action_steps": 10,
        "tokenizer_max_length": 24,
        "output_features": {"action": {"type": "ACTION", "shape": [7]}},
    }
    (d / "config.json").write_text(json.dumps(config))
    s, a = stats(8), stats(7)
    for name, registry, norm_map in (
        ("policy_preprocessor", "normalizer_processor", {"STATE": "MEAN_STD", "ACTION": "MEAN_STD"}),
        ("policy_postprocessor", "unnormalizer_processor", {"STATE": "MEAN_STD", "ACTION": "QUANTILES"}),
    ):
        state_file = f"{name}_step_1_{registry}.safetensors"
        flat = {f"observation.state.{k}": v.astype(np.float32) for k, v in s.items()}
        flat |= {f"action.{k}": v.astype(np.float32) for k, v in a.items()}
        save_numpy(flat, str(d / state_file))
        step = {
            "registry_name": registry,
            "config": {"eps": 1e-8, "norm_map": norm_map},
            "state_file": state_file,
        }
        (d / f"{name}.json").write_text(json.dumps({"name": name, "steps": [step]}))
    return d


def test_lerobot_layout(tmp_path, reference):
    ckpt = load_checkpoint(_lerobot_dir(tmp_path, reference), model_config_file=FIXTURE_CONFIG)
    assert ckpt.layout == "lerobot"
    assert ckpt.config.discrete_state_input and ckpt.config.action_horizon == 10
    assert ckpt.behaviour.embodiment == "libero"
    assert (ckpt.norm.state.mode, ckpt.norm.actions.mode) == ("lerobot_mean_std", "lerobot_quantiles")
    assert_same_tensors(ckpt.state_dict(), reference)


def test_lerobot_names_without_prefix_are_rejected(tmp_path, reference):
    d = _lerobot_dir(tmp_path, reference)
    tensors = load_file(str(d / "model.safetensors"))
    tensors["time_mlp_in.bias"] = tensors.pop("model.time_mlp_in.bias")
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(EvalkitError, match="lacks the 'model.' prefix"):
        load_checkpoint(d, model_config_file=FIXTURE_CONFIG)


def test_full_size_dims_are_inferred_from_shapes():
    full = Pi05Config.full(action_horizon=10, discrete_state_input=False)
    assert infer_dims(expected_shapes(full), NAMED_CONFIGS["pi05_libero"]) == full
    droid = Pi05Config.full(action_horizon=15, discrete_state_input=True)
    assert infer_dims(expected_shapes(droid), NAMED_CONFIGS["pi05_droid"]) == droid


def test_the_config_is_never_guessed_from_the_path(tmp_path):
    # a hub download lands in .../owner--name/main: a meaningless name loads with the config given...
    d = openpi_dir(tmp_path / "hub" / "org--pi05", asset="droid", name="main", action_dim=8)
    ckpt = load_checkpoint(d, "pi05_droid_jointpos", model_config_file=FIXTURE_CONFIG)
    assert ckpt.behaviour.absolute_joint_actions and ckpt.config.action_horizon == 15
    assert ckpt.config.discrete_state_input and ckpt.behaviour.action_mode == "joint_position"
    assert load_checkpoint(d, "pi05_droid", model_config_file=FIXTURE_CONFIG).behaviour.action_mode == (
        "joint_velocity"
    )
    # ...and is refused in one line without it, whatever the directory or its assets are called
    for path in (d, openpi_dir(tmp_path, name="pi05_libero")):
        with pytest.raises(
            EvalkitError, match=r"record their training config; pass --config \{pi05_libero,"
        ) as e:
            load_checkpoint(path, model_config_file=FIXTURE_CONFIG)
        assert "\n" not in str(e.value)
    with pytest.raises(EvalkitError, match="unknown pi05 config 'pi05_aloha'"):
        load_checkpoint(d, "pi05_aloha")
    with pytest.raises(EvalkitError, match="cannot infer the SigLIP head count"):
        load_checkpoint(d, "pi05_droid")  # the tiny fixture's SigLIP needs an explicit model config


def _bad_stats(path, kind):
    state, actions = stats(8), stats(7)
    if kind == "dims":
        actions = stats(6)
    elif kind == "order":
        state["q01"] = np.full(8, 5.0)
    write_openpi_norm_stats(path, state, actions)
    if kind == "nan":
        path.write_text(path.read_text().replace("0.5", "NaN", 1))
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("dims", "actions stats have 6 dims; config pi05_libero needs 7"),
        ("order", r"state stats have q01 > q99 at dim 0 \(5 > 1\)"),
        ("nan", "expected a finite 1-D list"),
    ],
)
def test_user_norm_stats_are_checked(tmp_path, kind, message):
    d = openpi_dir(tmp_path)
    bad = _bad_stats(tmp_path / f"{kind}.json", kind)
    with pytest.raises(EvalkitError, match=message):
        load_checkpoint(d, "pi05_libero", bad, model_config_file=FIXTURE_CONFIG)
    padded = write_stats(tmp_path / "padded.json", state_dim=32, action_dim=32)  # openpi's older padded stats
    assert load_checkpoint(d, "pi05_libero", padded, model_config_file=FIXTURE_CONFIG).norm.actions.dim == 32


def test_fingerprint_covers_weights_and_stats(tmp_path):
    a = load_checkpoint(openpi_dir(tmp_path / "a"), "pi05_libero", model_config_file=FIXTURE_CONFIG)
    b = load_checkpoint(openpi_dir(tmp_path / "b"), "pi05_libero", model_config_file=FIXTURE_CONFIG)
    assert a.fingerprint() == b.fingerprint() and a.fingerprint().startswith("sha256:")
    stats_file = tmp_path / "b" / "ckpt" / "assets" / LIBERO / "norm_stats.json"
    stats_file.write_text(stats_file.read_text().replace("0.5", "0.25"))
    assert (
        load_checkpoint(
            tmp_path / "b" / "ckpt", "pi05_libero", model_config_file=FIXTURE_CONFIG
        ).fingerprint()
        != a.fingerprint()
    )


def test_evalkit_layout_checks(tmp_path):
    out = cli.make_tiny_checkpoint(tmp_path / "tiny", "libero", seed=0)
    with pytest.raises(EvalkitError, match="converted with config tiny_pi05_libero, not pi05_droid"):
        load_checkpoint(out, "pi05_droid")
    info = json.loads((out / "config.json").read_text())
    info["model"]["paligemma"]["mlp_dim"] = 96  # config.json dims must agree with the tensors
    (out / "config.json").write_text(json.dumps(info))
    with pytest.raises(
        EvalkitError, match=r"wrong shape: .*mlp.down_proj.weight has shape \(64, 128\), expected \(64, 96\)"
    ):
        load_checkpoint(out)
    (out / "assets" / LIBERO / "norm_stats.json").unlink()
    with pytest.raises(EvalkitError, match="missing norm stats"):
        load_checkpoint(out)


def test_orbax_needs_conversion(tmp_path):
    d = tmp_path / "pi05_libero"
    (d / "params").mkdir(parents=True)
    write_stats(d / "assets" / LIBERO / "norm_stats.json")
    with pytest.raises(EvalkitError, match="convert it first"):
        load_checkpoint(d)
    with pytest.raises(EvalkitError, match="orbax"):  # not installed, or (with the extra) an empty params/
        convert_checkpoint(d, tmp_path / "out", "pi05_libero")


def test_convert_cli_bfloat16(tmp_path, capsys, reference):
    parser = argparse.ArgumentParser()
    cli.convert_arguments(parser)
    args = parser.parse_args(
        [
            "--src",
            str(openpi_dir(tmp_path)),
            "--out",
            str(tmp_path / "out"),
            "--config",
            "pi05_libero",
            "--model-config",
            str(FIXTURE_CONFIG),
            "--dtype",
            "bfloat16",
        ]
    )
    assert cli.convert_main(args) == 0
    assert "fingerprint sha256:" in capsys.readouterr().out
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as f:
        assert f.get_slice(EMBED).get_dtype() == "BF16"
    ckpt = load_checkpoint(tmp_path / "out", "pi05_libero")
    assert ckpt.behaviour.name == "pi05_libero" and not ckpt.config.discrete_state_input
    model = ckpt.build_model(dtype="bfloat16")
    weights = dict(model.named_parameters())
    assert weights[EMBED].dtype == torch.bfloat16
    assert weights["paligemma_with_expert.gemma_expert.model.norm.dense.weight"].dtype == torch.float32
    assert torch.equal(weights[EMBED], reference[EMBED].to(torch.bfloat16))


def test_make_tiny_checkpoint_cli_is_deterministic(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.make_tiny_checkpoint_arguments(parser)
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert cli.make_tiny_checkpoint_main(parser.parse_args([str(tmp_path / name), "--seed", seed])) == 0
    assert "evalkit eval --suite libero_spatial --policy pi05" in capsys.readouterr().out
    weights = {n: (tmp_path / n / "model.safetensors").read_bytes() for n in "abc"}
    assert weights["a"] == weights["b"] != weights["c"]
    droid = load_checkpoint(cli.make_tiny_checkpoint(tmp_path / "d", "droid"))
    assert droid.config.action_horizon == 15 and droid.config.discrete_state_input
    assert droid.behaviour.embodiment == "droid" and droid.norm.state.dim == 8


def test_large_file_digests_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    from evalkit.models.pi05.checkpoint import fingerprint as checkpoint

    monkeypatch.setenv("EVALKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(checkpoint, "FINGERPRINT_CACHE_MIN_BYTES", 0)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    first = checkpoint.fingerprint_files([weights])
    assert (tmp_path / "cache" / "fingerprints.json").is_file()
    stat = weights.stat()
    weights.write_bytes(b"b" * 1000)  # same size; restore the mtime: the cache answers
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert checkpoint.fingerprint_files([weights]) == first
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert checkpoint.fingerprint_files([weights]) != first


def test_openpi_config_json_horizon_only_warns(tmp_path, caplog):
    d = openpi_dir(tmp_path)
    info = {
        "action_dim": 32,
        "action_horizon": 16,
        "paligemma_variant": "gemma_2b",
        "action_expert_variant": "gemma_300m",
        "precision": "bfloat16",
    }
    (d / "config.json").write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING):
        ckpt = load_checkpoint(d, "pi05_libero", model_config_file=FIXTURE_CONFIG)
    assert ckpt.config.action_horizon == 10
    assert "config.json says action_horizon 16; pi05_libero uses 10" in caplog.text


def test_orbax_params_tree_converts(tmp_path, reference):
    """Needs the optional `orbax` extra; an openpi-style `params/` tree (nnx.State `value` leaves included)."""
    ocp = pytest.importorskip("orbax.checkpoint")
    tree: dict = {}
    with np.load(FIXTURE / "params_jax.npz") as flat:
        for key in flat.files:
            node = tree.setdefault("params", {})
            *parents, leaf = key.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = {"value": flat[key]}
    d = tmp_path / "pi05_libero"
    d.mkdir()
    ocp.PyTreeCheckpointer().save((d / "params").resolve(), tree)
    write_stats(d / "assets" / LIBERO / "norm_stats.json")
    out = convert_checkpoint(d, tmp_path / "out", "pi05_libero", model_config_file=FIXTURE_CONFIG)
    ckpt = load_checkpoint(out)
    assert ckpt.behaviour.name == "pi05_libero" and ckpt.config.action_horizon == 10
    assert_same_tensors(ckpt.state_dict(), reference)


def _mapped_ranges(path):
    """Address ranges of this process's mappings of `path` (from /proc/self/maps)."""
    target = str(path.resolve())
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5] == target:
            low, high = (int(x, 16) for x in parts[0].split("-"))
            ranges.append((low, high))
    return ranges


def _inside(tensors, ranges):
    return [
        name for name, t in tensors.items() if any(a <= t.untyped_storage().data_ptr() < b for a, b in ranges)
    ]


@pytest.mark.parametrize("stored", ["float32", "bfloat16"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loaded_model_shares_no_storage_with_the_file(tmp_path, stored, dtype):
    src = cli.make_tiny_checkpoint(tmp_path / "tiny", "libero", seed=0)
    path = convert_checkpoint(src, tmp_path / stored, dtype=stored) if stored != "float32" else src
    weights = path / "model.safetensors"
    # the check can fail: safetensors' own tensors live in a map of the file
    with safe_open(str(weights), "pt") as handle:
        mapped = {k: handle.get_tensor(k) for k in list(handle.keys())[:3]}
    assert _inside(mapped, _mapped_ranges(weights)) == list(mapped)
    del mapped

    model = load_checkpoint(path).build_model(dtype=dtype)
    tensors = model.state_dict()
    assert _mapped_ranges(weights) == []  # the file is not mapped at all any more
    before = {k: v.clone() for k, v in tensors.items()}
    weights.write_bytes(b"\0" * weights.stat().st_size)  # same inode, new content: the model must not see it
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert weights.stat().st_size > 0 and any(v.abs().sum() > 0 for v in tensors.values())


def test_truncated_weights_are_an_error(tmp_path):
    path = cli.make_tiny_checkpoint(tmp_path / "tiny", "libero", seed=0)
    ckpt = load_checkpoint(path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(EvalkitError, match="not a readable safetensors file"):
        ckpt.build_model()


def test_lerobot_configs_that_need_more_than_unnormalizing(tmp_path, reference):
    d = _lerobot_dir(tmp_path, reference)
    info = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**info, "use_relative_actions": True}))
    with pytest.raises(EvalkitError, match="trained with use_relative_actions; evalkit does not apply"):
        load_checkpoint(d, model_config_file=FIXTURE_CONFIG)
    droid = {**info, "output_features": {"action": {"type": "ACTION", "shape": [8]}}}
    (d / "config.json").write_text(json.dumps(droid))
    with pytest.raises(EvalkitError, match=r"joint velocities or positions; pass --config"):
        load_checkpoint(d, model_config_file=FIXTURE_CONFIG)
    with pytest.raises(EvalkitError, match="8-dim actions are a droid policy's, not pi05_libero's"):
        load_checkpoint(d, "pi05_libero", model_config_file=FIXTURE_CONFIG)
