"""Numerical parity of our π₀.₅ with openpi's JAX reference on a golden fixture.

The fixture directory comes from $PI05_FIXTURE (default: tests/fixtures/pi05_tiny_a); every dimension, the batch
size and the tolerances are read from its config.json, so other fixtures run unchanged. Both namings are loaded:
params_jax.npz through `jax_to_state_dict`, model.safetensors through `load_state_dict(strict=True)`.
Run with `-s` to see the max abs differences.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.config import Pi05Config
from evalkit.models.pi05.jax_names import jax_to_state_dict
from evalkit.models.pi05.model import FP32_KEEP_PATTERNS, Pi05Model, trim_prefix
from tests.fixtures import pi05_fixture

FIXTURE = pi05_fixture()


class Fixture:
    def __init__(self, root: Path):
        self.root = root
        self.meta = json.loads((root / "config.json").read_text())
        self.config = Pi05Config.from_fixture(self.meta)
        self.inputs = dict(np.load(root / "inputs.npz", allow_pickle=False))
        self.expected = dict(np.load(root / "expected.npz", allow_pickle=False))
        self.atol = self.meta["suggested_atol"]

    def tol(self, name: str) -> float:
        aliases = {"v_t1": "v_t1/step_v_t", "step_v_t": "v_t1/step_v_t", "suffix_tokens_t1": "prefix_tokens"}
        return float(self.atol.get(name, self.atol.get(aliases.get(name, ""), 1e-4)))

    def model_inputs(self) -> dict[str, object]:
        keys = self.config.image_keys
        t = torch.from_numpy
        return {
            "images": {k: t(self.inputs[f"image/{k}"]) for k in keys},
            "image_masks": {k: t(self.inputs[f"image_mask/{k}"]) for k in keys},
            "tokens": t(self.inputs["tokenized_prompt"]).long(),
            "token_mask": t(self.inputs["tokenized_prompt_mask"]),
        }


@pytest.fixture(scope="module")
def fx() -> Fixture:
    return Fixture(FIXTURE)


def _load(fx: Fixture, naming: str) -> Pi05Model:
    model = Pi05Model(fx.config)
    if naming == "jax":
        flat = dict(np.load(fx.root / "params_jax.npz", allow_pickle=False))
        state = jax_to_state_dict(flat, fx.config)
    else:
        state = load_file(fx.root / "model.safetensors")
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module", params=["jax", "safetensors"])
def run(request, fx: Fixture) -> dict[str, object]:
    """Everything the reference recorded, computed once per naming."""
    model = _load(fx, request.param)
    x = fx.model_inputs()
    noise = torch.from_numpy(fx.inputs["noise"])
    b = noise.shape[0]
    out: dict[str, object] = {"naming": request.param, "model": model}
    with torch.no_grad():
        tokens, pad_mask, ar_mask = model.embed_prefix(**x)
        cache = model.prefix_kv_cache(**x)
        ones = torch.ones(b)
        steps: list[tuple[float, torch.Tensor, torch.Tensor]] = []
        actions = model.denoise(
            cache,
            noise,
            fx.config.num_steps,
            on_step=lambda t, x_t, v: steps.append((t, x_t.clone(), v.clone())),
        )
        out.update(
            prefix_tokens=tokens,
            prefix_pad_mask=pad_mask,
            prefix_ar_mask=ar_mask,
            prefix_positions=cache.positions,
            prefix_out=cache.output,
            kv_cache_k=torch.stack(cache.kv.keys),
            kv_cache_v=torch.stack(cache.kv.values),
            suffix_tokens_t1=model.embed_suffix(noise)[0],
            time_emb_t1=model.time_embedding(ones),
            adarms_cond_t1=model.time_conditioning(ones),
            v_t1=model.velocity(cache, noise, ones),
            steps=steps,
            actions=actions,
            sample_actions=model.sample_actions(**x, noise=noise),
            loss=model.compute_loss(
                **x,
                actions=torch.from_numpy(fx.inputs["loss_actions"]),
                noise=torch.from_numpy(fx.inputs["loss_noise"]),
                time=torch.from_numpy(fx.inputs["loss_time"]),
            ),
        )
    return out


def _diff(a, b) -> float:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return float(np.abs(a.astype(np.float64) - np.asarray(b, dtype=np.float64)).max())


def _check(fx: Fixture, run: dict, name: str, actual, expected=None) -> None:
    expected = fx.expected[name] if expected is None else expected
    assert tuple(actual.shape) == tuple(expected.shape), name
    d = _diff(actual, expected)
    print(f"[{run['naming']}] {name}: max|diff| = {d:.3g} (atol {fx.tol(name):g})")
    assert d <= fx.tol(name), f"{name}: {d} > {fx.tol(name)}"


def test_both_namings_give_identical_weights(fx: Fixture):
    jax_state = jax_to_state_dict(dict(np.load(fx.root / "params_jax.npz", allow_pickle=False)), fx.config)
    st_state = load_file(fx.root / "model.safetensors")
    assert set(jax_state) == set(st_state)
    assert not any("lm_head" in k for k in jax_state)
    for k, v in st_state.items():
        assert torch.equal(jax_state[k], v), k


def test_jax_names_rejects_missing_and_unknown_params(fx: Fixture):
    flat = dict(np.load(fx.root / "params_jax.npz", allow_pickle=False))
    with pytest.raises(EvalkitError, match="missing"):
        jax_to_state_dict({k: v for k, v in flat.items() if not k.startswith("time_mlp_in/")}, fx.config)
    with pytest.raises(EvalkitError, match="does not use"):
        jax_to_state_dict({**flat, "PaliGemma/llm/layers/attn/lora_a": np.zeros(1)}, fx.config)
    wrong_vocab = Pi05Config.from_dict(
        {**fx.config.to_dict(), "paligemma": {**fx.config.to_dict()["paligemma"], "vocab_size": 7}}
    )
    with pytest.raises(EvalkitError, match="shape"):
        jax_to_state_dict(flat, wrong_vocab)
    # orbax nnx.State trees end every path in /value
    assert set(jax_to_state_dict({k + "/value": v for k, v in flat.items()}, fx.config)) == set(
        load_file(fx.root / "model.safetensors")
    )


def test_prefix_embedding(fx: Fixture, run: dict):
    _check(fx, run, "prefix_tokens", run["prefix_tokens"])
    assert np.array_equal(run["prefix_pad_mask"].numpy(), fx.expected["prefix_pad_mask"])
    assert np.array_equal(run["prefix_positions"].numpy(), fx.expected["prefix_positions"])
    assert not run["prefix_ar_mask"].any()


def test_prefix_pass_and_kv_cache(fx: Fixture, run: dict):
    valid = fx.expected["prefix_pad_mask"]
    _check(fx, run, "prefix_out", run["prefix_out"].numpy()[valid], fx.expected["prefix_out"][valid])
    _check(fx, run, "kv_cache_k", run["kv_cache_k"])
    _check(fx, run, "kv_cache_v", run["kv_cache_v"])


def test_suffix_and_time_conditioning(fx: Fixture, run: dict):
    _check(fx, run, "suffix_tokens_t1", run["suffix_tokens_t1"])
    _check(fx, run, "time_emb_t1", run["time_emb_t1"])
    _check(fx, run, "adarms_cond_t1", run["adarms_cond_t1"])


def test_velocity_at_every_step(fx: Fixture, run: dict):
    _check(fx, run, "v_t1", run["v_t1"])
    steps = run["steps"]
    assert np.array_equal(np.array([t for t, _, _ in steps], dtype=np.float32), fx.expected["step_times"])
    _check(fx, run, "step_x_t", torch.stack([x for _, x, _ in steps]), fx.expected["step_x_t"])
    _check(fx, run, "step_v_t", torch.stack([v for _, _, v in steps]))


def test_actions(fx: Fixture, run: dict):
    assert run["actions"].dtype == torch.float32
    _check(fx, run, "actions", run["actions"])
    assert torch.equal(run["sample_actions"], run["actions"])


def test_loss(fx: Fixture, run: dict):
    _check(fx, run, "loss", run["loss"])


def test_bfloat16_keeps_fp32_exceptions_and_samples(fx: Fixture):
    model = _load(fx, "safetensors").to_dtype(torch.bfloat16)
    for name, p in model.named_parameters():
        keep = not name.startswith("paligemma_with_expert.") or any(pat in name for pat in FP32_KEEP_PATTERNS)
        assert p.dtype == (torch.float32 if keep else torch.bfloat16), name
    # the keep-list covers exactly: patch/pos embeddings, every RMSNorm scale, every adaRMS Dense
    kept = [n for n, p in model.paligemma_with_expert.named_parameters() if p.dtype == torch.float32]
    depth = fx.config.paligemma.depth
    assert len(kept) == 3 + 2 * depth + 1 + 2 * 2 * depth + 2
    noise = torch.from_numpy(fx.inputs["noise"])
    actions = model.sample_actions(**fx.model_inputs(), noise=noise)
    assert actions.dtype == torch.float32 and torch.isfinite(actions).all()
    d = _diff(actions, fx.expected["actions"])
    scale = float(np.abs(fx.expected["actions"]).max())
    print(f"[bf16] actions: max|diff| = {d:.3g} (max|actions| {scale:.3g})")
    assert d < 0.1 * scale


@pytest.mark.parametrize("right_wrist", ["as recorded", "masked for both"])
def test_trimmed_prefix_matches_the_exact_computation(fx: Fixture, right_wrist: str):
    """The fixture's weights and inputs, trimmed (prompt cut at the longest prompt; the right wrist dropped when
    it is masked for every observation) vs openpi's computation over every prefix token, same noise: within 1e-5;
    and the trimmed actions still match the JAX reference within the fixture's tolerance."""
    model = _load(fx, "safetensors")
    x = fx.model_inputs()
    if right_wrist == "masked for both":
        x["image_masks"] = {**x["image_masks"], "right_wrist_0_rgb": torch.zeros(2, dtype=torch.bool)}
    noise = torch.from_numpy(fx.inputs["noise"])
    longest = int(x["token_mask"].sum(dim=1).max())
    images, masks, tokens, token_mask = trim_prefix(**x, step=1)
    assert tokens.shape[1] == longest < fx.config.max_token_len
    assert (images["right_wrist_0_rgb"] is None) == (right_wrist == "masked for both")
    with torch.no_grad():
        exact = model.sample_actions(**x, noise=noise, trim=False)
        trimmed = model.sample_actions(images, masks, tokens, token_mask, noise, trim=False)
    d = _diff(trimmed, exact)
    print(f"trimmed vs exact ({right_wrist}): max|diff| = {d:.3g}")
    assert d <= 1e-5
    if right_wrist == "as recorded":
        _check(fx, {"naming": "trimmed"}, "actions", trimmed)
