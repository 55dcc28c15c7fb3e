"""Each layout (openpi PyTorch, lerobot, evalkit, openpi JAX): detection, key maps, strict shapes, its metadata."""

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05 import cli
from evalkit.models.pi05.checkpoint import (
    NAMED_CONFIGS,
    convert_checkpoint,
    load_checkpoint,
)
from tests.models.pi05.checkpoint.helpers import (
    EMBED,
    FIXTURE_CONFIG,
    LIBERO,
    altered,
    assert_same_tensors,
    lerobot_dir,
    openpi_dir,
    write_stats,
)


def test_openpi_layout_loads_with_the_libero_config(tmp_path, reference):
    ckpt = load_checkpoint(openpi_dir(tmp_path), "pi05_libero", model_config_file=FIXTURE_CONFIG)
    assert ckpt.layout == "openpi"
    assert ckpt.training_config == NAMED_CONFIGS["pi05_libero"]
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
            openpi_dir(tmp_path, altered(reference, kind)), "pi05_libero", model_config_file=FIXTURE_CONFIG
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


def test_lerobot_layout(tmp_path, reference):
    ckpt = load_checkpoint(lerobot_dir(tmp_path, reference), model_config_file=FIXTURE_CONFIG)
    assert ckpt.layout == "lerobot"
    assert ckpt.config.discrete_state_input and ckpt.config.action_horizon == 10
    assert ckpt.training_config.embodiment == "libero"
    assert (ckpt.norm.state.mode, ckpt.norm.actions.mode) == ("lerobot_mean_std", "lerobot_quantiles")
    assert_same_tensors(ckpt.state_dict(), reference)


def test_lerobot_names_without_prefix_are_rejected(tmp_path, reference):
    d = lerobot_dir(tmp_path, reference)
    tensors = load_file(str(d / "model.safetensors"))
    tensors["time_mlp_in.bias"] = tensors.pop("model.time_mlp_in.bias")
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(EvalkitError, match="lacks the 'model.' prefix"):
        load_checkpoint(d, model_config_file=FIXTURE_CONFIG)


def test_lerobot_configs_that_need_more_than_unnormalizing(tmp_path, reference):
    d = lerobot_dir(tmp_path, reference)
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
