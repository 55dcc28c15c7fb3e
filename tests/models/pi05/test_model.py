"""Behaviour of Pi05Model on a tiny random config: masks, caching, batching, dtypes, configs, input errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.config import GemmaConfig, Pi05Config, SiglipConfig
from evalkit.models.pi05.gemma import apply_rope, make_attn_mask, rope_angles
from evalkit.models.pi05.model import Pi05Model, kept_prompt_length, trim_prefix


def tiny_config(num_heads: int = 2, num_kv_heads: int = 1, horizon: int = 4) -> Pi05Config:
    vlm = GemmaConfig(
        width=32,
        depth=2,
        mlp_dim=64,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=8,
        vocab_size=50,
    )
    expert = GemmaConfig(
        width=16,
        depth=2,
        mlp_dim=32,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=8,
        vocab_size=50,
    )
    vision = SiglipConfig(
        width=16, depth=1, mlp_dim=32, num_heads=2, patch_size=14, image_size=28, out_dim=32
    )
    return Pi05Config(
        vlm, expert, vision, action_dim=6, action_horizon=horizon, max_token_len=5, num_steps=10
    )


def random_model(config: Pi05Config, seed: int = 0) -> Pi05Model:
    """Every parameter random (the zero-initialised adaRMS Dense would otherwise gate the expert off)."""
    model = Pi05Model(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def random_inputs(config: Pi05Config, b: int, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    size = config.siglip.image_size
    lengths = torch.randint(2, config.max_token_len + 1, (b,), generator=g)
    token_mask = torch.arange(config.max_token_len)[None, :] < lengths[:, None]
    tokens = (
        torch.randint(1, config.paligemma.vocab_size, (b, config.max_token_len), generator=g) * token_mask
    )
    return {
        "images": {k: torch.rand(b, size, size, 3, generator=g) * 2 - 1 for k in config.image_keys},
        "image_masks": {
            k: torch.tensor([i != 2 or j % 2 == 0 for j in range(b)]) for i, k in enumerate(config.image_keys)
        },
        "tokens": tokens,
        "token_mask": token_mask,
        "noise": torch.randn(b, config.action_horizon, config.action_dim, generator=g),
    }


def select(inputs: dict, idx: slice) -> dict:
    return {
        "images": {k: v[idx] for k, v in inputs["images"].items()},
        "image_masks": {k: v[idx] for k, v in inputs["image_masks"].items()},
        **{k: inputs[k][idx] for k in ("tokens", "token_mask", "noise")},
    }


@pytest.fixture(scope="module")
def model() -> Pi05Model:
    return random_model(tiny_config())


def test_config_roundtrip_and_validation():
    for config in (tiny_config(), Pi05Config.full(action_horizon=10, discrete_state_input=False)):
        data = json.loads(json.dumps(config.to_dict()))
        assert Pi05Config.from_dict(data) == config
    full = Pi05Config.full()
    assert (full.paligemma.width, full.action_expert.width, full.siglip.width) == (2048, 1024, 1152)
    assert full.prefix_len == 968 and full.action_horizon == 50 and full.max_token_len == 200
    with pytest.raises(EvalkitError, match="unknown"):
        Pi05Config.from_dict({**tiny_config().to_dict(), "lora": True})
    with pytest.raises(EvalkitError, match="head_dim"):
        Pi05Config(full.paligemma, GemmaConfig(1024, 18, 4096, 8, 1, 128), full.siglip)


def test_full_size_names_and_parameter_count():
    with torch.device("meta"):
        model = Pi05Model(Pi05Config.full())
    state = model.state_dict()
    n = sum(v.numel() for v in state.values())
    assert 3.2e9 < n < 3.4e9, n
    assert not any("lm_head" in k for k in state)
    expert = "paligemma_with_expert.gemma_expert.model."
    assert state[expert + "layers.17.input_layernorm.dense.weight"].shape == (3 * 1024, 1024)
    assert state[expert + "layers.0.self_attn.o_proj.weight"].shape == (1024, 2048)
    vlm = "paligemma_with_expert.paligemma.model.language_model."
    assert state[vlm + "embed_tokens.weight"].shape == (257_152, 2048)
    assert state[vlm + "layers.0.self_attn.k_proj.weight"].shape == (256, 2048)
    assert expert + "embed_tokens.weight" not in state


def test_empty_allocates_directly_in_bfloat16():
    model = Pi05Model.empty(tiny_config(), dtype=torch.bfloat16)
    params = dict(model.named_parameters())
    assert all(p.device.type == "cpu" for p in params.values())
    assert (
        params["paligemma_with_expert.paligemma.model.language_model.layers.0.mlp.up_proj.weight"].dtype
        == torch.bfloat16
    )
    assert params["paligemma_with_expert.gemma_expert.model.norm.dense.weight"].dtype == torch.float32
    assert params["action_out_proj.weight"].dtype == torch.float32


def test_batch_elements_are_independent(model: Pi05Model):
    inputs = random_inputs(model.config, b=3)
    batched = model.sample_actions(**inputs)
    assert batched.shape == (3, 4, 6) and batched.dtype == torch.float32
    for i in range(3):
        single = model.sample_actions(**select(inputs, slice(i, i + 1)))
        torch.testing.assert_close(single, batched[i : i + 1], atol=2e-5, rtol=0)
    assert (batched[0] - batched[1]).abs().max() > 1e-3


def test_masked_images_and_padding_are_ignored(model: Pi05Model):
    inputs = random_inputs(model.config, b=2)
    base = model.sample_actions(**inputs)
    changed = {**inputs, "images": dict(inputs["images"]), "tokens": inputs["tokens"].clone()}
    changed["images"]["right_wrist_0_rgb"] = changed["images"]["right_wrist_0_rgb"].clone()
    changed["images"]["right_wrist_0_rgb"][1] = -changed["images"]["right_wrist_0_rgb"][
        1
    ]  # slot masked for sample 1
    changed["tokens"][~inputs["token_mask"]] = 7  # padding ids
    torch.testing.assert_close(model.sample_actions(**changed), base, atol=1e-6, rtol=0)
    changed["tokens"][:, 0] = (
        changed["tokens"][:, 0] + 1
    ) % model.config.paligemma.vocab_size  # a real token
    assert (model.sample_actions(**changed) - base).abs().max() > 1e-4


def test_prefix_runs_once_and_steps_run_only_the_expert(model: Pi05Model):
    calls = {"vision": 0, "vlm": 0, "expert": 0}

    def counter(name):
        def hook(*_):
            calls[name] += 1

        return hook

    handles = [
        model.paligemma_with_expert.paligemma.model.vision_tower.register_forward_hook(counter("vision")),
        model.vlm.layers[0].self_attn.q_proj.register_forward_hook(counter("vlm")),
        model.expert.layers[0].self_attn.q_proj.register_forward_hook(counter("expert")),
    ]
    try:
        inputs = random_inputs(model.config, b=2)
        cache = model.prefix_kv_cache(**{k: v for k, v in inputs.items() if k != "noise"})
        keys_before = [k.clone() for k in cache.kv.keys]
        model.denoise(cache, inputs["noise"], num_steps=3)
        assert calls == {"vision": 1, "vlm": 1, "expert": 3}
        assert all(
            torch.equal(a, b) for a, b in zip(keys_before, cache.kv.keys, strict=True)
        )  # cache untouched
        model.sample_actions(**inputs)
        assert calls == {"vision": 2, "vlm": 2, "expert": 13}
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("heads", [(2, 1), (4, 2)])
def test_cached_steps_agree_with_the_joint_pass(heads):
    """compute_loss (prefix+suffix in one pass) == loss from `velocity` against the prefix KV cache."""
    config = tiny_config(*heads)
    model = random_model(config, seed=3)
    inputs = random_inputs(config, b=2, seed=4)
    prefix_inputs = {k: v for k, v in inputs.items() if k != "noise"}
    actions = torch.randn_like(inputs["noise"])
    t = torch.tensor([0.3, 0.85])
    with torch.no_grad():
        loss = model.compute_loss(**prefix_inputs, actions=actions, noise=inputs["noise"], time=t)
        x_t = t[:, None, None] * inputs["noise"] + (1 - t[:, None, None]) * actions
        v = model.velocity(model.prefix_kv_cache(**prefix_inputs), x_t, t)
    expected = (v - (inputs["noise"] - actions)).square().mean(-1)
    assert loss.shape == (2, config.action_horizon)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)


def test_attention_mask_follows_big_vision():
    valid = torch.tensor([[True, True, False, True, True, True]])
    ar = torch.tensor([False, False, False, True, False, True])
    m = make_attn_mask(valid, ar)[0]
    assert m[0, 1] and m[1, 0] and not m[0, 3]  # bidirectional block, cannot see later blocks
    assert m[3, 0] and m[3, 4] and m[4, 3] and not m[3, 5] and m[5, 3]
    assert not m[2].any() and not m[:, 2].any()  # padding is neither query nor key


def test_rope_scores_depend_on_relative_position_only():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(pq: int, pk: int) -> float:
        cq, sq = rope_angles(torch.tensor([[pq]]), 16, 10_000.0)
        ck, sk = rope_angles(torch.tensor([[pk]]), 16, 10_000.0)
        return float((apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum())

    assert abs(score(5, 2) - score(105, 102)) < 1e-4
    assert abs(score(5, 2) - score(5, 4)) > 1e-3


def test_bad_inputs_are_clear_errors(model: Pi05Model):
    inputs = random_inputs(model.config, b=1)
    missing = {**inputs, "images": {k: v for k, v in inputs["images"].items() if k != "left_wrist_0_rgb"}}
    with pytest.raises(EvalkitError, match="left_wrist_0_rgb"):
        model.sample_actions(**missing)
    with pytest.raises(EvalkitError, match="noise"):
        model.sample_actions(**{**inputs, "noise": inputs["noise"][:, :2]})
    big = {**inputs, "images": {k: torch.zeros(1, 56, 56, 3) for k in inputs["images"]}}
    with pytest.raises(EvalkitError, match="shape"):
        model.sample_actions(**big)


def test_chunked_mlp_matches_unchunked(model: Pi05Model, monkeypatch):
    from evalkit.models.pi05 import gemma

    inputs = random_inputs(model.config, b=2)
    whole = model.sample_actions(**inputs)
    monkeypatch.setattr(gemma, "MLP_CHUNK_ELEMENTS", 3 * 64)  # 3 rows per chunk for the VLM MLP (F = 64)
    # other GEMM shapes sum in another order: float32 rounding only (|actions| ~ 1)
    torch.testing.assert_close(model.sample_actions(**inputs), whole, atol=1e-5, rtol=0)


# -- trimmed prefix ------------------------------------------------------------------------------------------------
def test_trim_prefix_drops_what_no_observation_attends_to():
    config = tiny_config()
    inputs = random_inputs(config, b=3)
    masks = dict(inputs["image_masks"])
    masks["right_wrist_0_rgb"] = torch.tensor([False, False, False])
    masks["left_wrist_0_rgb"] = torch.tensor([False, True, False])  # masked for some only: kept
    token_mask = torch.zeros(3, 5, dtype=torch.bool)
    token_mask[0, :2] = token_mask[2, :3] = True
    images, kept_masks, tokens, kept_tokens = trim_prefix(
        inputs["images"], masks, inputs["tokens"], token_mask, step=2
    )
    assert images["right_wrist_0_rgb"] is None and kept_masks["right_wrist_0_rgb"] is None
    assert images["left_wrist_0_rgb"] is inputs["images"]["left_wrist_0_rgb"]
    assert tokens.shape == (3, 4) and torch.equal(kept_tokens, token_mask[:, :4])  # 3 valid → 4 (step 2)
    assert kept_prompt_length(token_mask, 5, step=32) == 5  # never past max_token_len
    assert (
        kept_prompt_length(torch.zeros(2, 200, dtype=torch.bool), 200) == 32
    )  # an empty prompt keeps a shape
    assert [kept_prompt_length(torch.arange(200)[None] < n, 200) for n in (1, 32, 33, 193)] == [
        32,
        32,
        64,
        200,
    ]


def trimmable_inputs(config: Pi05Config, b: int) -> dict:
    """Random inputs where one slot is masked for every observation and prompts are shorter than max_token_len."""
    inputs = random_inputs(config, b)
    inputs["image_masks"] = {**inputs["image_masks"], "right_wrist_0_rgb": torch.zeros(b, dtype=torch.bool)}
    inputs["token_mask"][:, 3:] = False
    inputs["tokens"] = inputs["tokens"] * inputs["token_mask"]
    return inputs


def test_trimmed_sampling_matches_openpis_computation(model: Pi05Model):
    """Dropping masked tokens changes the arithmetic by summation order only: within 1e-5 in float32."""
    inputs = trimmable_inputs(model.config, b=3)
    exact = model.sample_actions(**inputs, trim=False)
    images, masks, tokens, token_mask = trim_prefix(
        inputs["images"], inputs["image_masks"], inputs["tokens"], inputs["token_mask"], step=2
    )
    assert images["right_wrist_0_rgb"] is None and tokens.shape[1] == 4
    trimmed = model.sample_actions(images, masks, tokens, token_mask, inputs["noise"], trim=False)
    torch.testing.assert_close(trimmed, exact, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        model.sample_actions(**inputs), exact, atol=1e-5, rtol=0
    )  # trim is the default
    assert (exact - model.sample_actions(**random_inputs(model.config, b=3))).abs().max() > 1e-3


def test_trimmed_prefix_cache_holds_the_valid_tokens_only(model: Pi05Model):
    inputs = trimmable_inputs(model.config, b=2)
    prefix = {k: v for k, v in inputs.items() if k != "noise"}
    full = model.prefix_kv_cache(**prefix)
    trimmed = model.prefix_kv_cache(*trim_prefix(**prefix, step=1))
    patches = model.config.siglip.num_patches
    assert full.pad_mask.shape[1] == 3 * patches + 5 and trimmed.pad_mask.shape[1] == 2 * patches + 3
    valid = full.pad_mask[0]
    assert torch.equal(full.positions[:, valid], trimmed.positions)  # RoPE positions unchanged
    for k_full, k_trim in zip(full.kv.keys, trimmed.kv.keys, strict=True):
        torch.testing.assert_close(k_full[:, valid], k_trim, atol=1e-5, rtol=0)


def test_every_slot_masked_leaves_the_prompt_alone(model: Pi05Model):
    inputs = trimmable_inputs(model.config, b=2)
    inputs["image_masks"] = {k: torch.zeros(2, dtype=torch.bool) for k in model.config.image_keys}
    exact = model.sample_actions(**inputs, trim=False)
    torch.testing.assert_close(model.sample_actions(**inputs), exact, atol=1e-5, rtol=0)


def test_a_dropped_slot_needs_image_and_mask_dropped(model: Pi05Model):
    inputs = random_inputs(model.config, b=1)
    half = {**inputs, "images": {**inputs["images"], "right_wrist_0_rgb": None}}
    with pytest.raises(EvalkitError, match="both be None"):
        model.sample_actions(**half, trim=False)


@pytest.mark.slow
def test_trimmed_sampling_matches_at_full_width():
    """Real widths (Gemma 2B / 300M / SigLIP So400m, full heads and MLPs), one layer each, openpi's LIBERO inputs:
    right wrist masked, a 20-token prompt padded to 200. Trimmed vs openpi's computation within 1e-5 (float32)."""
    full = Pi05Config.full(action_horizon=10)
    config = dataclasses.replace(
        full,
        paligemma=dataclasses.replace(full.paligemma, depth=1, vocab_size=1024),
        action_expert=dataclasses.replace(full.action_expert, depth=1, vocab_size=1024),
        siglip=dataclasses.replace(full.siglip, depth=1),
    )
    model = Pi05Model(config).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * min(0.3, p.shape[-1] ** -0.5))
    inputs = random_inputs(config, b=2)
    inputs["image_masks"] = {k: torch.tensor([k != "right_wrist_0_rgb"] * 2) for k in config.image_keys}
    inputs["token_mask"] = (torch.arange(200) < 20)[None].repeat(2, 1)
    inputs["tokens"] = inputs["tokens"] % 1024 * inputs["token_mask"]
    exact = model.sample_actions(**inputs, trim=False)
    trimmed = model.sample_actions(**inputs)
    print(f"full width, trimmed vs untrimmed: max |diff| {(trimmed - exact).abs().max():.2e}")
    torch.testing.assert_close(trimmed, exact, atol=1e-5, rtol=0)
