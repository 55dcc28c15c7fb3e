"""Strict checkpoint loading (openpi PyTorch, lerobot, ours), JAX npz conversion, and every kind of bad input."""

import argparse
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from evalkit.core.errors import EvalkitError
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
from tests.conftest import SHARED

FIXTURE = SHARED / "fixtures" / "pi05_tiny_a"
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


def openpi_dir(root, tensors=None, asset=LIBERO, name="ckpt"):
    """openpi PyTorch layout around the fixture's weights (optionally altered)."""
    d = root / name
    d.mkdir(parents=True)
    if tensors is None:
        shutil.copyfile(FIXTURE / "model.safetensors", d / "model.safetensors")
    else:
        save_file(tensors, str(d / "model.safetensors"))
    if asset is not None:
        write_stats(d / "assets" / asset / "norm_stats.json")
    return d


def assert_same_tensors(state, reference):
    assert set(state) == set(reference)
    for key, value in reference.items():
        assert torch.equal(state[key], value), key


def test_npz_conversion_reproduces_the_openpi_pytorch_weights(tmp_path, reference):
    out = convert_checkpoint(
        FIXTURE / "params_jax.npz",
        tmp_path / "out",
        model_config_file=FIXTURE_CONFIG,
        norm_stats=write_stats(tmp_path / "ns.json"),
    )
    ckpt = load_checkpoint(out)
    assert ckpt.layout == "evalkit"
    assert ckpt.config == Pi05Config.from_fixture(json.loads(FIXTURE_CONFIG.read_text()))
    assert_same_tensors(ckpt.state_dict(), reference)
    np.testing.assert_allclose(ckpt.norm.actions.stats["q99"], np.linspace(1, 3, 7), rtol=1e-6)


def test_converted_checkpoint_reproduces_the_golden_jax_actions(tmp_path):
    out = convert_checkpoint(
        FIXTURE / "params_jax.npz",
        tmp_path / "out",
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
    ckpt = load_checkpoint(openpi_dir(tmp_path), model_config_file=FIXTURE_CONFIG)
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
        load_checkpoint(openpi_dir(tmp_path, _altered(reference, kind)), model_config_file=FIXTURE_CONFIG)


def test_known_unused_tensors_are_accepted_and_dropped(tmp_path, reference):
    tensors = dict(reference)
    tensors["paligemma_with_expert.paligemma.lm_head.weight"] = reference[EMBED].clone()
    tensors["paligemma_with_expert.gemma_expert.lm_head.weight"] = torch.zeros(512, 32)
    ckpt = load_checkpoint(openpi_dir(tmp_path, tensors), model_config_file=FIXTURE_CONFIG)
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
    ckpt = load_checkpoint(openpi_dir(tmp_path, legacy), model_config_file=FIXTURE_CONFIG)
    assert_same_tensors(ckpt.state_dict(), reference)
    duplicate = dict(legacy, **{EMBED: reference[EMBED].clone()})  # the same tensor under both names
    with pytest.raises(EvalkitError, match="both map to"):
        load_checkpoint(openpi_dir(tmp_path, duplicate, name="dup"), model_config_file=FIXTURE_CONFIG)


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
        convert_checkpoint(npz, tmp_path / "out", model_config_file=FIXTURE_CONFIG)
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


def test_droid_configs_must_be_named(tmp_path):
    d = openpi_dir(tmp_path, asset="droid")
    with pytest.raises(EvalkitError, match="pi05_droid_jointpos"):
        load_checkpoint(d)
    named = openpi_dir(tmp_path, asset="droid", name="pi05_droid_jointpos")
    with pytest.raises(EvalkitError, match="cannot infer the SigLIP head count"):
        load_checkpoint(named)  # the tiny fixture's SigLIP needs an explicit config
    ckpt = load_checkpoint(named, model_config_file=FIXTURE_CONFIG)
    assert ckpt.behaviour.absolute_joint_actions and ckpt.config.action_horizon == 15
    assert ckpt.config.discrete_state_input


def test_fingerprint_covers_weights_and_stats(tmp_path):
    a = load_checkpoint(openpi_dir(tmp_path / "a"), model_config_file=FIXTURE_CONFIG)
    b = load_checkpoint(openpi_dir(tmp_path / "b"), model_config_file=FIXTURE_CONFIG)
    assert a.fingerprint() == b.fingerprint() and a.fingerprint().startswith("sha256:")
    stats_file = tmp_path / "b" / "ckpt" / "assets" / LIBERO / "norm_stats.json"
    stats_file.write_text(stats_file.read_text().replace("0.5", "0.25"))
    assert (
        load_checkpoint(tmp_path / "b" / "ckpt", model_config_file=FIXTURE_CONFIG).fingerprint()
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
        convert_checkpoint(d, tmp_path / "out")


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
    from evalkit.models.pi05 import checkpoint

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


def test_openpi_config_json_horizon_unless_named(tmp_path):
    d = openpi_dir(tmp_path)
    info = {
        "action_dim": 32,
        "action_horizon": 16,
        "paligemma_variant": "gemma_2b",
        "action_expert_variant": "gemma_300m",
        "precision": "bfloat16",
    }
    (d / "config.json").write_text(json.dumps(info))
    assert load_checkpoint(d, model_config_file=FIXTURE_CONFIG).config.action_horizon == 16
    assert load_checkpoint(d, "pi05_libero", model_config_file=FIXTURE_CONFIG).config.action_horizon == 10


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
    out = convert_checkpoint(d, tmp_path / "out", model_config_file=FIXTURE_CONFIG)
    ckpt = load_checkpoint(out)
    assert ckpt.behaviour.name == "pi05_libero" and ckpt.config.action_horizon == 10
    assert_same_tensors(ckpt.state_dict(), reference)
