"""The in-process pi05 policy on tiny random weights: key mapping, batching invariance, errors, end to end."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from evalkit.core.compatibility import check_compatible
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyOptions, PolicyRequest
from evalkit.core.protocol import fingerprint
from evalkit.images import resize_with_pad
from evalkit.models.pi05.checkpoint import (
    NAMED_CONFIGS,
    fingerprint_files,
    load_checkpoint,
    write_evalkit_checkpoint,
)
from evalkit.models.pi05.cli import make_tiny_checkpoint
from evalkit.models.pi05.normalize import write_openpi_norm_stats
from evalkit.models.pi05.tokenizer import train_tiny_sentencepiece
from evalkit.policies.pi05 import Pi05Policy
from evalkit.policies.registry import make_policy
from evalkit.suites.registry import resolve

LIBERO_PROMPT = "pick up the black bowl between the plate and the ramekin and place it on the plate"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model is far faster on one thread than on two contended ones (the machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def libero_ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "libero", "libero", seed=0)


@pytest.fixture(scope="module")
def droid_ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "droid", "droid", seed=0)


@pytest.fixture(scope="module")
def libero_policy(libero_ckpt):
    return make_policy(
        PolicyOptions(name="pi05", embodiment="libero", action_dim=7, checkpoint=str(libero_ckpt))
    )


@pytest.fixture(scope="module")
def droid_policy(droid_ckpt):
    return make_policy(
        PolicyOptions(name="pi05", embodiment="droid", action_dim=8, checkpoint=str(droid_ckpt))
    )


def image(rng):
    return rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)


def libero_obs(rng, prompt=LIBERO_PROMPT):
    state = np.concatenate([rng.normal(0, 0.2, 6), [0.03, -0.03]]).astype(np.float32)
    return {
        "observation/image": image(rng),
        "observation/wrist_image": image(rng),
        "observation/state": state,
        "prompt": prompt,
    }


def droid_obs(rng):
    return {
        "observation/exterior_image_1_left": image(rng),
        "observation/exterior_image_2_left": image(rng),
        "observation/wrist_image_left": image(rng),
        "observation/joint_position": rng.normal(0, 0.5, 7),
        "observation/gripper_position": np.float64(rng.uniform()),
        "prompt": "put the can in the mug",
    }


def request(obs, seed, action_dim=7, episode="libero_spatial/0/0/7"):
    return PolicyRequest(obs=obs, episode_id=episode, seed=seed, action_dim=action_dim)


def by_hand(policy, base, wrist, state, prompt, seed, action_dim):
    """The model called directly: the slots, masks, prompt and noise the adapter is supposed to build."""
    ckpt = policy.checkpoint

    def img(u8):
        return torch.from_numpy(u8[None]).float() / 255 * 2 - 1

    images = {
        "base_0_rgb": img(base),
        "left_wrist_0_rgb": img(wrist),
        "right_wrist_0_rgb": torch.full((1, 224, 224, 3), -1.0),
    }
    masks = {
        "base_0_rgb": torch.tensor([True]),
        "left_wrist_0_rgb": torch.tensor([True]),
        "right_wrist_0_rgb": torch.tensor([False]),
    }
    tokens = policy.tokenizer.tokenize(prompt, ckpt.norm.state.normalize(state))
    noise = torch.randn((ckpt.config.action_horizon, 32), generator=torch.Generator().manual_seed(seed))[None]
    out = policy.model.sample_actions(
        images, masks, torch.from_numpy(tokens.tokens[None]), torch.from_numpy(tokens.mask[None]), noise
    )
    return ckpt.norm.actions.unnormalize(out[0].numpy())[:, :action_dim]


def test_meta_and_provenance(libero_policy, droid_policy, libero_ckpt):
    meta = libero_policy.meta
    assert (meta.name, meta.image_size, meta.action_dim) == ("pi05", (224, 224), 7)
    assert meta.cameras == ("observation/image", "observation/wrist_image")
    ckpt = load_checkpoint(libero_ckpt)
    tokenizer = libero_ckpt / "tokenizer.model"
    assert libero_policy.provenance == {
        "weights": fingerprint_files(ckpt.weights),
        "norm_stats": fingerprint_files(
            [libero_ckpt / "assets/physical-intelligence/libero/norm_stats.json"]
        ),
        "tokenizer": fingerprint_files([tokenizer]),
    }
    assert len(set(libero_policy.provenance.values())) == 3
    assert meta.provenance == libero_policy.provenance
    assert meta.fingerprint == fingerprint(libero_policy.provenance)  # the tokenizer is part of it
    assert droid_policy.meta.cameras == ("observation/exterior_image_1_left", "observation/wrist_image_left")
    assert droid_policy.meta.action_dim == 8


def test_action_mode_is_declared_and_checked(libero_policy, droid_policy, droid_ckpt, tmp_path):
    assert libero_policy.action_mode == "eef_delta"
    assert droid_policy.action_mode == "joint_velocity"
    (velocity,) = resolve("droid_demo")
    (position,) = resolve("droid_demo", protocol="droid_jointpos")
    check_compatible(droid_policy.meta, [velocity])
    with pytest.raises(EvalkitError, match="outputs joint_velocity actions but protocol droid_jointpos"):
        check_compatible(droid_policy.meta, [position])
    ckpt = load_checkpoint(droid_ckpt)  # the same weights, saved as a *_jointpos checkpoint
    jointpos_config = replace(NAMED_CONFIGS["pi05_droid_jointpos"], max_token_len=ckpt.config.max_token_len)
    out = write_evalkit_checkpoint(
        tmp_path / "jointpos",
        ckpt.state_dict(),
        ckpt.config,
        jointpos_config,
        ckpt.norm,
        "float32",
        droid_ckpt / "tokenizer.model",
    )
    jointpos = Pi05Policy(load_checkpoint(out, "pi05_droid_jointpos"), "droid")
    assert jointpos.action_mode == "joint_position"
    check_compatible(jointpos.meta, [position])
    with pytest.raises(EvalkitError, match="outputs joint_position actions but protocol droid"):
        check_compatible(jointpos.meta, [velocity])


def test_config_norm_stats_and_tokenizer_options_are_checked(libero_ckpt, tmp_path):
    options = PolicyOptions(name="pi05", embodiment="libero", action_dim=7, checkpoint=str(libero_ckpt))
    with pytest.raises(EvalkitError, match="converted with config tiny_pi05_libero, not pi05_droid"):
        make_policy(replace(options, config="pi05_droid"))
    stats = tmp_path / "stats.json"
    write_openpi_norm_stats(
        stats, {"q01": np.zeros(8), "q99": np.ones(8)}, {"q01": np.ones(7), "q99": np.zeros(7)}
    )
    with pytest.raises(EvalkitError, match="actions stats have q01 > q99 at dim 0"):
        make_policy(replace(options, norm_stats=str(stats)))
    small = train_tiny_sentencepiece(
        tmp_path / "small.model", ["put the mug on the plate"] * 20, vocab_size=300
    )
    with pytest.raises(EvalkitError, match=r"pieces, not the model's \d+: wrong tokenizer"):
        make_policy(replace(options, tokenizer=str(small)))


def test_batched_equals_unbatched_per_request(libero_policy):
    rng = np.random.default_rng(0)
    first = libero_obs(rng)
    observations = [first, first, libero_obs(rng)]  # the first two differ only in their seed
    reqs = [
        request(obs, seed=100 + i, episode=f"libero_spatial/0/{i}/7") for i, obs in enumerate(observations)
    ]
    batched = libero_policy.infer(reqs)
    single = [libero_policy.infer([r])[0] for r in reqs]
    reordered = libero_policy.infer(reqs[::-1])[::-1]
    for b, s, r in zip(batched, single, reordered, strict=True):
        assert b.shape == (10, 7) and b.dtype == np.float32
        np.testing.assert_allclose(b, s, atol=1e-5)
        np.testing.assert_allclose(b, r, atol=1e-5)
    assert np.abs(batched[0] - batched[1]).max() > 1e-2  # the seed matters
    assert np.abs(batched[1] - batched[2]).max() > 1e-2


def test_libero_mapping_matches_the_model_called_by_hand(libero_policy):
    rng = np.random.default_rng(1)
    obs = libero_obs(rng)
    got = libero_policy.infer([request(obs, seed=5)])[0]
    want = by_hand(
        libero_policy,
        obs["observation/image"],
        obs["observation/wrist_image"],
        obs["observation/state"],
        LIBERO_PROMPT,
        5,
        7,
    )
    np.testing.assert_allclose(got, want, atol=1e-5)
    swapped = dict(
        obs,
        **{
            "observation/image": obs["observation/wrist_image"],
            "observation/wrist_image": obs["observation/image"],
        },
    )
    assert np.abs(libero_policy.infer([request(swapped, seed=5)])[0] - got).max() > 1e-3
    # pi05_libero never puts the state into the prompt: a different state changes nothing
    moved = dict(obs, **{"observation/state": obs["observation/state"] + 0.5})
    np.testing.assert_array_equal(libero_policy.infer([request(moved, seed=5)])[0], got)


def test_droid_mapping_state_prompt_and_ignored_second_camera(droid_policy):
    rng = np.random.default_rng(2)
    obs = droid_obs(rng)
    got = droid_policy.infer([request(obs, seed=9, action_dim=8)])[0]
    assert got.shape == (15, 8)
    state = np.concatenate([obs["observation/joint_position"], [obs["observation/gripper_position"]]])
    want = by_hand(
        droid_policy,
        obs["observation/exterior_image_1_left"],
        obs["observation/wrist_image_left"],
        state.astype(np.float32),
        obs["prompt"],
        9,
        8,
    )
    np.testing.assert_allclose(got, want, atol=1e-5)
    other_cam = dict(obs, **{"observation/exterior_image_2_left": image(rng)})
    np.testing.assert_array_equal(droid_policy.infer([request(other_cam, seed=9, action_dim=8)])[0], got)
    gripper = dict(
        obs, **{"observation/gripper_position": np.array([1.0 - obs["observation/gripper_position"]])}
    )
    assert np.abs(droid_policy.infer([request(gripper, seed=9, action_dim=8)])[0] - got).max() > 1e-4


def test_jointpos_adds_the_joint_state(droid_policy):
    jointpos = copy.copy(droid_policy)  # same weights; only the output transform differs
    ckpt = droid_policy.checkpoint
    jointpos.checkpoint = replace(
        ckpt, training_config=replace(ckpt.training_config, absolute_joint_actions=True)
    )
    obs = droid_obs(np.random.default_rng(3))
    absolute = jointpos.infer([request(obs, seed=1, action_dim=8)])[0]
    velocity = droid_policy.infer([request(obs, seed=1, action_dim=8)])[0]
    np.testing.assert_allclose(
        absolute[:, :7] - velocity[:, :7],
        np.broadcast_to(obs["observation/joint_position"], (15, 7)),
        atol=1e-5,
    )
    np.testing.assert_array_equal(absolute[:, 7], velocity[:, 7])


def test_resize_with_pad_like_openpi():
    frame = np.full((180, 320, 3), 255, np.uint8)  # DROID training frames: 126x224 content + 49-px bands
    out = resize_with_pad(frame, 224, 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    rows = out[:, 112, 0]
    assert (rows[:49] == 0).all() and (rows[49:175] == 255).all() and (rows[175:] == 0).all()
    same = np.zeros((224, 224, 3), np.uint8)
    assert resize_with_pad(same, 224, 224) is same


def lerobot_resize_with_pad(image, height, width):
    """lerobot's pi05 preprocessing (lerobot `src/lerobot/policies/pi05/modeling_pi05.py::resize_with_pad_torch`):
    float images in [0, 1], `F.interpolate(bilinear, align_corners=False)` without antialiasing, centred zero pad."""
    import torch.nn.functional as F

    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    ratio = max(image.shape[1] / width, image.shape[0] / height)
    rh, rw = int(image.shape[0] / ratio), int(image.shape[1] / ratio)
    y = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False)
    top, left = (height - rh) // 2, (width - rw) // 2
    y = F.pad(y, (left, width - rw - left, top, height - rh - top), value=0.0)
    return y[0].permute(1, 2, 0).numpy() * 255


def synthetic_scene(n, rng):
    """Smooth shading (sums of low-frequency sinusoids) plus flat sharp-edged boxes, uint8."""
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = np.zeros((n, n, 3))
    for c in range(3):
        for _ in range(6):
            fx, fy, phase = rng.uniform(0.5, 6), rng.uniform(0.5, 6), rng.uniform(0, 2 * np.pi)
            img[..., c] += np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
    img = (img - img.min()) / (img.max() - img.min()) * 200 + 20
    for _ in range(12):
        x0, y0 = rng.integers(0, n - 40, 2)
        size = rng.integers(10, 60)
        img[y0 : y0 + size, x0 : x0 + size] = rng.uniform(0, 255, 3)
    return img.clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "kind, mean_diff, max_diff",
    [("scene", 0.50, 42.9), ("noise", 20.9, 125.6)],
)
def test_lerobot_torch_resize_differs_from_pil_by_the_measured_amount(kind, mean_diff, max_diff):
    """evalkit resizes with PIL bilinear as openpi-client does (`resize_with_pad`, antialiased when shrinking);
    lerobot's pi05 preprocessor uses torch bilinear without antialiasing. Measured on lerobot's 360x360 LIBERO
    renders -> 224: on a smooth scene with sharp-edged boxes they differ by 0.50/255 on average and up to 43/255 at
    edges; on uniform noise (the aliasing worst case) by 21/255 on average. evalkit keeps PIL under every protocol;
    these numbers pin the difference a lerobot-trained checkpoint sees."""
    rng = np.random.default_rng(0)
    image = (
        synthetic_scene(360, rng) if kind == "scene" else rng.integers(0, 256, (360, 360, 3), dtype=np.uint8)
    )
    diff = np.abs(
        resize_with_pad(image, 224, 224).astype(np.float64) - lerobot_resize_with_pad(image, 224, 224)
    )
    assert diff.mean() == pytest.approx(mean_diff, rel=0.05)
    assert diff.max() == pytest.approx(max_diff, rel=0.05)


def test_non_224_and_float_images_are_accepted(libero_policy):
    rng = np.random.default_rng(4)
    obs = libero_obs(rng)
    small = dict(
        obs,
        **{
            "observation/image": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
            "observation/wrist_image": obs["observation/wrist_image"].astype(np.float32) / 255,
        },
    )
    out = libero_policy.infer([request(small, seed=1)])[0]
    assert out.shape == (10, 7) and np.isfinite(out).all()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"observation/image": None}, "has no 'observation/image'"),
        ({"observation/wrist_image": np.zeros((224, 224, 4), np.uint8)}, r"has shape \(224, 224, 4\)"),
        ({"observation/state": np.zeros(7, np.float32)}, "has 7 values, expected 8"),
        ({"observation/state": np.full(8, np.nan, np.float32)}, "not finite"),
        ({"prompt": None}, "no 'prompt' string"),
    ],
)
def test_bad_observations(libero_policy, change, message):
    obs = libero_obs(np.random.default_rng(5))
    for key, value in change.items():
        if value is None:
            del obs[key]
        else:
            obs[key] = value
    with pytest.raises(EvalkitError, match=message):
        libero_policy.infer([request(obs, seed=1)])


def test_wrong_suite_action_dim_or_embodiment(libero_policy, libero_ckpt):
    with pytest.raises(EvalkitError, match="executes 8-dim actions"):
        libero_policy.infer([request(libero_obs(np.random.default_rng(6)), seed=1, action_dim=8)])
    with pytest.raises(EvalkitError, match="is a libero policy; it cannot drive a droid suite"):
        make_policy(PolicyOptions(name="pi05", embodiment="droid", action_dim=8, checkpoint=str(libero_ckpt)))
    with pytest.raises(EvalkitError, match="executes 6-dim actions"):
        make_policy(
            PolicyOptions(name="pi05", embodiment="libero", action_dim=6, checkpoint=str(libero_ckpt))
        )
    with pytest.raises(EvalkitError, match="no transforms for embodiment 'aloha'"):
        make_policy(
            PolicyOptions(name="pi05", embodiment="aloha", action_dim=14, checkpoint=str(libero_ckpt))
        )
    with pytest.raises(EvalkitError, match="needs --checkpoint"):
        make_policy(PolicyOptions(name="pi05", embodiment="libero", action_dim=7))


def test_non_finite_model_output_is_an_error(libero_policy):
    bias = libero_policy.model.action_out_proj.bias
    saved = bias.detach().clone()
    try:
        with torch.no_grad():
            bias[0] = float("nan")
        with pytest.raises(EvalkitError, match="non-finite actions"):
            libero_policy.infer([request(libero_obs(np.random.default_rng(7)), seed=1)])
    finally:
        with torch.no_grad():
            bias.copy_(saved)


def test_bfloat16_runs_close_to_float32(libero_ckpt, libero_policy):
    policy = Pi05Policy(load_checkpoint(libero_ckpt), "libero", dtype="bfloat16")
    weights = dict(policy.model.named_parameters())
    assert weights[
        "paligemma_with_expert.paligemma.model.language_model.layers.0.mlp.up_proj.weight"
    ].dtype == (torch.bfloat16)
    obs = libero_obs(np.random.default_rng(8))
    low = policy.infer([request(obs, seed=3)])[0]
    full = libero_policy.infer([request(obs, seed=3)])[0]
    assert low.dtype == np.float32 and np.isfinite(low).all()
    assert np.abs(low - full).max() < 0.1 * np.abs(full).max()


@pytest.mark.slow
def test_end_to_end_libero_episode(libero_ckpt, tmp_path):
    from evalkit.runner import EvalConfig, evaluate
    from tests.helpers import read_manifest, read_rows

    run = evaluate(
        EvalConfig(
            suite="libero_spatial",
            policy=PolicyOptions(name="pi05", checkpoint=str(libero_ckpt)),
            tasks=(0,),
            episodes_per_task=1,
            max_steps=10,
            workers=1,
            out=tmp_path / "run",
        ),
        progress=False,
    )
    (row,) = read_rows(run)
    assert row["termination"] in ("max_steps", "success") and row["steps"] <= 10
    assert row["policy_calls"] == 2  # 10 steps, 5 executed per 10-action chunk
    policy = read_manifest(run)["policy"]
    ckpt = load_checkpoint(libero_ckpt)
    assert policy["name"] == "pi05"
    provenance = {
        "weights": fingerprint_files(ckpt.weights),
        "norm_stats": fingerprint_files(ckpt.norm_files),
        "tokenizer": fingerprint_files([libero_ckpt / "tokenizer.model"]),
    }
    assert policy["provenance"] == provenance  # the manifest records all three
    assert policy["fingerprint"] == fingerprint(provenance)
    assert policy["action_dim"] == 7 and list(policy["cameras"]) == [
        "observation/image",
        "observation/wrist_image",
    ]
