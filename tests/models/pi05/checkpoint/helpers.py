"""Checkpoint directories in each layout built around the golden fixture's weights, for the checkpoint tests."""

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file

from evalkit.models.pi05.normalize import write_openpi_norm_stats
from tests.fixtures import pi05_fixture

FIXTURE = pi05_fixture()
FIXTURE_CONFIG = FIXTURE / "config.json"
LIBERO = "physical-intelligence/libero"
EMBED = "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight"


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


def altered(reference, kind):
    tensors = dict(reference)
    if kind == "missing":
        del tensors[EMBED]
    elif kind == "shape":
        tensors["action_in_proj.weight"] = torch.zeros(32, 33)
    elif kind == "extra":
        tensors["paligemma_with_expert.some_new_adapter.weight"] = torch.zeros(2)
    return tensors


def lerobot_dir(root, reference):
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


def bad_stats(path, kind):
    state, actions = stats(8), stats(7)
    if kind == "dims":
        actions = stats(6)
    elif kind == "order":
        state["q01"] = np.full(8, 5.0)
    write_openpi_norm_stats(path, state, actions)
    if kind == "nan":
        path.write_text(path.read_text().replace("0.5", "NaN", 1))
    return path


def mapped_ranges(path):
    """Address ranges of this process's mappings of `path` (from /proc/self/maps)."""
    target = str(path.resolve())
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5] == target:
            low, high = (int(x, 16) for x in parts[0].split("-"))
            ranges.append((low, high))
    return ranges


def tensors_inside(tensors, ranges):
    return [
        name for name, t in tensors.items() if any(a <= t.untyped_storage().data_ptr() < b for a, b in ranges)
    ]
