"""Conversion to evalkit's layout (JAX npz/orbax, openpi PyTorch) and the tiny checkpoint writer."""

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors import safe_open

from evalkit.models.pi05 import cli
from evalkit.models.pi05.checkpoint import (
    convert_checkpoint,
    load_checkpoint,
)
from evalkit.models.pi05.config import Pi05Config
from tests.models.pi05.checkpoint.helpers import (
    EMBED,
    FIXTURE,
    FIXTURE_CONFIG,
    LIBERO,
    assert_same_tensors,
    openpi_dir,
    write_stats,
)


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
    assert ckpt.training_config.name == "pi05_libero" and not ckpt.config.discrete_state_input
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
    assert droid.training_config.embodiment == "droid" and droid.norm.state.dim == 8


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
    assert ckpt.training_config.name == "pi05_libero" and ckpt.config.action_horizon == 10
    assert_same_tensors(ckpt.state_dict(), reference)


@pytest.mark.parametrize(
    ("add", "defaults"),
    [
        (cli.convert_arguments, ["--dtype"]),
        (cli.make_tiny_checkpoint_arguments, ["--embodiment", "--seed"]),
    ],
)
def test_help_shows_every_default(add, defaults):
    parser = argparse.ArgumentParser()
    add(parser)
    for action in parser._actions:
        if action.option_strings and action.default not in (None, argparse.SUPPRESS):
            assert f"(default: {action.default})" in (action.help or ""), action.option_strings
    assert {
        a.option_strings[0] for a in parser._actions if a.default not in (None, argparse.SUPPRESS)
    } >= set(defaults)
