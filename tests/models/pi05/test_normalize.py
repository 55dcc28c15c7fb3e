"""Normalization per openpi (quantile / z-score, eps 1e-6, unclipped, first len(stats) dims) and lerobot."""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.normalize import (
    FeatureNorm,
    lerobot_norm_spec,
    openpi_norm_spec,
    read_openpi_norm_stats,
    write_openpi_norm_stats,
)

Q01 = np.array([-1.0, 0.0, 2.0], np.float32)
Q99 = np.array([1.0, 4.0, 3.0], np.float32)
MEAN = np.array([0.5, -2.0, 10.0], np.float32)
STD = np.array([2.0, 0.5, 0.0], np.float32)
STATS = {"q01": Q01, "q99": Q99, "mean": MEAN, "std": STD}


def test_openpi_quantile_matches_the_formula_unclipped():
    norm = FeatureNorm("quantile", STATS)
    x = np.array([[1.0, 6.0, 1.0]], np.float32)  # dims 1 and 2 lie outside [q01, q99]
    expected = (x - Q01) / (Q99 - Q01 + 1e-6) * 2.0 - 1.0
    np.testing.assert_allclose(norm.normalize(x), expected, rtol=1e-6)
    assert norm.normalize(x)[0, 1] > 1.0 and norm.normalize(x)[0, 2] < -1.0  # no clipping
    np.testing.assert_allclose(norm.normalize(np.stack([Q01, Q99]))[:, 0], [-1.0, 1.0], atol=1e-5)


def test_openpi_zscore_and_round_trips():
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32) * 3
    z = FeatureNorm("zscore", STATS)
    np.testing.assert_allclose(z.normalize(x), (x - MEAN) / (STD + 1e-6), rtol=1e-5)
    assert np.all(np.isfinite(z.normalize(x)))  # std 0 is saved by eps
    for mode in ("quantile", "zscore", "lerobot_quantiles", "lerobot_mean_std"):
        norm = FeatureNorm(mode, {**STATS, "std": np.array([2.0, 0.5, 0.1], np.float32)})
        np.testing.assert_allclose(norm.unnormalize(norm.normalize(x)), x, atol=1e-4, err_msg=mode)


def test_only_the_first_len_stats_dims_are_touched():
    norm = FeatureNorm("quantile", STATS)
    x = np.arange(32, dtype=np.float32)[None].repeat(2, 0)
    out = norm.normalize(x)
    assert out.shape == (2, 32)
    np.testing.assert_array_equal(out[:, 3:], x[:, 3:])
    assert not np.allclose(out[:, :3], x[:, :3])
    np.testing.assert_array_equal(norm.unnormalize(x)[:, 3:], x[:, 3:])


def test_legacy_32_dim_stats_are_sliced_to_the_input():
    rng = np.random.default_rng(1)
    q01 = rng.uniform(-2, -1, 32).astype(np.float32)
    q99 = rng.uniform(1, 2, 32).astype(np.float32)
    x = rng.normal(size=(4, 8)).astype(np.float32)
    legacy = FeatureNorm("quantile", {"q01": q01, "q99": q99})
    sliced = FeatureNorm("quantile", {"q01": q01[:8], "q99": q99[:8]})
    np.testing.assert_array_equal(legacy.normalize(x), sliced.normalize(x))
    np.testing.assert_array_equal(legacy.unnormalize(x), sliced.unnormalize(x))


def test_lerobot_variants_differ_from_openpi_where_they_should():
    x = np.array([0.5, 3.0, 2.5], np.float32)
    lq = FeatureNorm("lerobot_quantiles", STATS)
    np.testing.assert_allclose(lq.normalize(x), 2 * (x - Q01) / (Q99 - Q01) - 1, rtol=1e-7)  # no eps
    same = {"q01": np.array([1.0], np.float32), "q99": np.array([1.0], np.float32)}
    assert np.isfinite(
        FeatureNorm("lerobot_quantiles", same).normalize(np.array([2.0]))
    ).all()  # eps when equal
    ms = FeatureNorm("lerobot_mean_std", STATS, eps=1e-8)
    np.testing.assert_allclose(ms.unnormalize(x), x * STD + MEAN, rtol=1e-7)  # inverse without eps
    np.testing.assert_allclose(
        FeatureNorm("zscore", STATS).unnormalize(x), x * (STD + 1e-6) + MEAN, rtol=1e-6
    )


def test_bad_modes_and_stats_are_errors():
    with pytest.raises(EvalkitError, match="unknown normalization mode"):
        FeatureNorm("minmax", STATS)
    with pytest.raises(EvalkitError, match="needs stats"):
        FeatureNorm("quantile", {"mean": MEAN, "std": STD})
    with pytest.raises(EvalkitError, match="equal length"):
        FeatureNorm("quantile", {"q01": Q01, "q99": Q99[:2]})


def test_openpi_norm_stats_json(tmp_path):
    path = tmp_path / "assets" / "droid" / "norm_stats.json"
    write_openpi_norm_stats(path, STATS, {"q01": Q01[:2], "q99": Q99[:2], "mean": MEAN[:2], "std": STD[:2]})
    stats = read_openpi_norm_stats(path)
    np.testing.assert_array_equal(stats["state"]["q99"], Q99)
    spec = openpi_norm_spec(path)
    assert spec.state.mode == spec.actions.mode == "quantile" and spec.actions.dim == 2
    assert openpi_norm_spec(path, quantile=False).state.mode == "zscore"
    path.write_text(json.dumps({"norm_stats": {"state": {"mean": [0.0], "std": [1.0]}}}))
    with pytest.raises(EvalkitError, match="no 'actions' entry"):
        read_openpi_norm_stats(path)
    path.write_text("{not json")
    with pytest.raises(EvalkitError, match="cannot read norm stats"):
        read_openpi_norm_stats(path)


def _lerobot_pipeline(directory, name, registry_name, norm_map, stats, step_index=2):
    state_file = f"{name}_step_{step_index}_{registry_name}.safetensors"
    flat = {
        f"{key}.{stat}": np.asarray(v, np.float32) for key, sub in stats.items() for stat, v in sub.items()
    }
    save_file(flat, str(directory / state_file))
    features = {
        "observation.state": {"type": "STATE", "shape": [3]},
        "action": {"type": "ACTION", "shape": [3]},
    }
    steps = [
        {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
        {
            "registry_name": registry_name,
            "config": {"eps": 1e-8, "features": features, "norm_map": norm_map},
            "state_file": state_file,
        },
    ]
    (directory / f"{name}.json").write_text(json.dumps({"name": name, "steps": steps}))


def test_lerobot_stats_per_feature_mode(tmp_path):
    stats = {
        "observation.state": {"mean": MEAN, "std": STD + 1, "q01": Q01, "q99": Q99},
        "action": {"mean": MEAN, "std": STD + 1, "q01": Q01, "q99": Q99},
        "observation.images.image": {"mean": np.zeros(3), "std": np.ones(3)},
    }
    norm_map = {"VISUAL": "IDENTITY", "STATE": "MEAN_STD", "ACTION": "QUANTILES"}
    _lerobot_pipeline(tmp_path, "policy_preprocessor", "normalizer_processor", norm_map, stats)
    _lerobot_pipeline(tmp_path, "policy_postprocessor", "unnormalizer_processor", norm_map, stats, 0)
    spec = lerobot_norm_spec(tmp_path)
    assert spec.state.mode == "lerobot_mean_std" and spec.actions.mode == "lerobot_quantiles"
    x = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_allclose(spec.state.normalize(x), (x - MEAN) / (STD + 1 + 1e-8), rtol=1e-6)
    np.testing.assert_allclose(spec.actions.unnormalize(x), (x + 1) * (Q99 - Q01) / 2 + Q01, rtol=1e-6)

    (tmp_path / "policy_postprocessor_step_0_unnormalizer_processor.safetensors").unlink()
    with pytest.raises(EvalkitError, match="state file .* is missing"):
        lerobot_norm_spec(tmp_path)
    (tmp_path / "policy_postprocessor.json").unlink()
    with pytest.raises(EvalkitError, match="no policy_postprocessor.json"):
        lerobot_norm_spec(tmp_path)
