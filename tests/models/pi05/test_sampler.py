"""Pi05Sampler on the tiny random checkpoint (CPU): batch buckets, padding, trimming, deterministic mode."""

from __future__ import annotations

import pytest
import torch

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.checkpoint import load_checkpoint
from evalkit.models.pi05.cli import make_tiny_checkpoint
from evalkit.models.pi05.model import Pi05Model
from evalkit.models.pi05.sampler import Pi05Sampler, SamplerOptions, batch_bucket


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Pi05Model:
    return load_checkpoint(make_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny")).build_model()


def observations(model: Pi05Model, n: int, seed: int = 0, prompt_lengths=(12, 40)) -> dict:
    """n LIBERO-like observations (right wrist masked), prompts of alternating lengths, uint8 images."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([prompt_lengths[i % len(prompt_lengths)] for i in range(n)])
    token_mask = torch.arange(c.max_token_len)[None] < lengths[:, None]
    return {
        "images": {
            k: torch.randint(0, 256, (n, 224, 224, 3), generator=g, dtype=torch.uint8) for k in c.image_keys
        },
        "image_masks": {k: torch.tensor([k != "right_wrist_0_rgb"] * n) for k in c.image_keys},
        "tokens": torch.randint(3, 200, (n, c.max_token_len), generator=g) * token_mask,
        "token_mask": token_mask,
        "noise": torch.randn(n, c.action_horizon, c.action_dim, generator=g),
    }


def rows(x: dict, idx) -> dict:
    def pick(v):
        return {k: u[idx] for k, u in v.items()} if isinstance(v, dict) else v[idx]

    return {k: pick(v) for k, v in x.items()}


def concat(*parts: dict) -> dict:
    def cat(vs):
        return {k: torch.cat([v[k] for v in vs]) for k in vs[0]} if isinstance(vs[0], dict) else torch.cat(vs)

    return {k: cat([p[k] for p in parts]) for k in parts[0]}


def test_batch_buckets():
    assert [batch_bucket(n) for n in (1, 2, 3, 5, 9, 17, 33, 64, 65, 130)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        64,
        128,
        192,
    ]
    assert [batch_bucket(n, max_batch=24) for n in (1, 3, 16, 17, 24)] == [1, 4, 16, 24, 24]
    assert [batch_bucket(n, max_batch=100) for n in (64, 65, 100)] == [64, 100, 100]
    with pytest.raises(EvalkitError, match="exceeds"):
        batch_bucket(17, max_batch=16)


def test_padding_never_changes_an_observations_actions(model: Pi05Model):
    """In one bucket, an observation's actions are bit-identical whatever fills the other rows: the padding
    (copies of the first observation, zero noise) or other observations."""
    sampler = Pi05Sampler(model)
    x = observations(model, 4)
    padded = sampler(**rows(x, slice(0, 3)))  # 3 → bucket 4
    full = sampler(**x)
    other = sampler(**concat(rows(x, slice(0, 3)), observations(model, 1, seed=9)))
    assert padded.shape == (3, 10, 32)
    assert torch.equal(padded, full[:3]) and torch.equal(padded, other[:3])
    assert sampler.shapes == {(4, 64, 2)}  # right wrist not encoded; prompts of 12 and 40 tokens → 64


def test_actions_do_not_depend_on_the_batch_on_this_cpu(model: Pi05Model):
    """The tiny model's actions are bit-identical alone, in any batch and in any position: the time conditioning
    is computed once for the batch (a batch-of-one matmul used to round differently from a batch of two)."""
    sampler = Pi05Sampler(model)
    x = observations(model, 3, prompt_lengths=(12,))
    alone = torch.cat([sampler(**rows(x, slice(i, i + 1))) for i in range(3)])
    assert torch.equal(sampler(**x), alone)
    assert torch.equal(sampler(**rows(x, [2, 0, 1])), alone[[2, 0, 1]])


def test_trimmed_sampler_matches_the_untrimmed_one(model: Pi05Model):
    x = observations(model, 3)
    trimmed = Pi05Sampler(model)(**x)
    exact = Pi05Sampler(model, SamplerOptions(trim=False))
    torch.testing.assert_close(trimmed, exact(**x), atol=1e-5, rtol=0)
    assert exact.shapes == {(4, model.config.max_token_len, 3)}


def test_deterministic_mode_runs_one_shape(model: Pi05Model):
    threads = torch.get_num_threads()
    try:
        sampler = Pi05Sampler(model, SamplerOptions(deterministic=True, max_batch=6))
        assert torch.are_deterministic_algorithms_enabled()
        x = observations(model, 6)
        together = sampler(**x)
        alone = torch.cat([sampler(**rows(x, slice(i, i + 1))) for i in range(6)])
        assert torch.equal(together, alone)
        assert sampler.shapes == {(6, model.config.max_token_len, 2)}
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
