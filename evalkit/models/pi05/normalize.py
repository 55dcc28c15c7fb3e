"""State/action normalization of pi0.5 checkpoints (openpi and lerobot conventions).

openpi (`transforms.py`): quantile `(x - q01) / (q99 - q01 + 1e-6) * 2 - 1` and z-score `(x - mean) / (std + 1e-6)`,
both unclipped, applied to the first `len(stats)` dims (the rest pass through; 32-dim legacy stats are sliced to the
input). lerobot (`normalize_processor.py`): QUANTILES `2 (x - q01) / (q99 - q01) - 1` with eps only where
`q99 == q01`, MEAN_STD `(x - mean) / (std + eps)` whose inverse has no eps, MIN_MAX like QUANTILES with min/max.

Numpy only; cheap to import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.paths import inside

OPENPI_EPS = 1e-6
LEROBOT_EPS = 1e-8

# mode -> the stats it needs
MODES: dict[str, tuple[str, ...]] = {
    "quantile": ("q01", "q99"),  # openpi pi0.5 / pi0-FAST
    "zscore": ("mean", "std"),  # openpi pi0
    "lerobot_quantiles": ("q01", "q99"),
    "lerobot_mean_std": ("mean", "std"),
    "lerobot_min_max": ("min", "max"),
    "identity": (),
}
LEROBOT_MODES = {
    "QUANTILES": "lerobot_quantiles",
    "MEAN_STD": "lerobot_mean_std",
    "MIN_MAX": "lerobot_min_max",
    "IDENTITY": "identity",
}
STAT_NAMES = ("mean", "std", "q01", "q99", "min", "max")


@dataclass(frozen=True)
class FeatureNorm:
    """How one feature (`state` or `actions`) is normalized: a mode, its stats (1-D float arrays) and eps."""

    mode: str
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    eps: float | None = None  # None = the mode's default

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise EvalkitError(f"unknown normalization mode {self.mode!r}; choose one of {', '.join(MODES)}")
        missing = [name for name in MODES[self.mode] if name not in self.stats]
        if missing:
            raise EvalkitError(
                f"normalization mode {self.mode!r} needs stats {missing}, have {sorted(self.stats)}"
            )
        dims = {name: np.asarray(self.stats[name]).shape for name in MODES[self.mode]}
        if len(set(dims.values())) > 1 or any(len(shape) != 1 for shape in dims.values()):
            raise EvalkitError(f"normalization stats must be 1-D and of equal length, got {dims}")

    @property
    def dim(self) -> int | None:
        """Number of dims the stats cover (None for identity)."""
        needed = MODES[self.mode]
        return int(np.asarray(self.stats[needed[0]]).shape[0]) if needed else None

    def _eps(self) -> float:
        if self.eps is not None:
            return self.eps
        return LEROBOT_EPS if self.mode.startswith("lerobot") else OPENPI_EPS

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        x = np.asarray(x, dtype=np.float32)
        d = min(self.dim or 0, x.shape[-1])
        return x[..., :d], x[..., d:], d

    def _stat(self, name: str, d: int) -> np.ndarray:
        return np.asarray(self.stats[name], dtype=np.float32)[:d]

    def normalize(self, x: np.ndarray) -> np.ndarray:
        if self.mode == "identity":
            return np.asarray(x, dtype=np.float32)
        head, tail, d = self._split(x)
        eps = np.float32(self._eps())
        if self.mode == "quantile":
            q01, q99 = self._stat("q01", d), self._stat("q99", d)
            out = (head - q01) / (q99 - q01 + eps) * 2.0 - 1.0
        elif self.mode in ("zscore", "lerobot_mean_std"):
            out = (head - self._stat("mean", d)) / (self._stat("std", d) + eps)
        else:
            low, high = self._range(d)
            denom = np.where(high - low == 0, eps, high - low)
            out = 2.0 * (head - low) / denom - 1.0
        return np.concatenate([out.astype(np.float32), tail], axis=-1)

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        if self.mode == "identity":
            return np.asarray(x, dtype=np.float32)
        head, tail, d = self._split(x)
        eps = np.float32(self._eps())
        if self.mode == "quantile":
            q01, q99 = self._stat("q01", d), self._stat("q99", d)
            out = (head + 1.0) / 2.0 * (q99 - q01 + eps) + q01
        elif self.mode == "zscore":
            out = head * (self._stat("std", d) + eps) + self._stat("mean", d)
        elif self.mode == "lerobot_mean_std":
            out = head * self._stat("std", d) + self._stat("mean", d)
        else:
            low, high = self._range(d)
            denom = np.where(high - low == 0, eps, high - low)
            out = (head + 1.0) * denom / 2.0 + low
        return np.concatenate([out.astype(np.float32), tail], axis=-1)

    def _range(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        if self.mode == "lerobot_min_max":
            return self._stat("min", d), self._stat("max", d)
        return self._stat("q01", d), self._stat("q99", d)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "stats": {k: np.asarray(v).tolist() for k, v in self.stats.items()},
        }
        if self.eps is not None:
            out["eps"] = self.eps
        return out


@dataclass(frozen=True)
class NormSpec:
    """Normalization of a checkpoint: `state` (normalized before tokenizing) and `actions` (unnormalized)."""

    state: FeatureNorm
    actions: FeatureNorm
    source: str = ""  # the file the stats came from (for messages and the manifest)


def _as_stats(entry: Any, where: str) -> dict[str, np.ndarray]:
    if not isinstance(entry, dict):
        raise EvalkitError(f"{where}: expected an object with mean/std/q01/q99, got {type(entry).__name__}")
    stats = {}
    for name in STAT_NAMES:
        value = entry.get(name)
        if value is None:
            continue
        arr = np.asarray(value, dtype=np.float64).astype(np.float32)
        if arr.ndim != 1 or not np.all(np.isfinite(arr)):
            raise EvalkitError(f"{where}.{name}: expected a finite 1-D list of numbers")
        stats[name] = arr
    return stats


def read_openpi_norm_stats(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Parse openpi's `norm_stats.json` (`{"norm_stats": {"state": {...}, "actions": {...}}}`)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalkitError(f"cannot read norm stats {path}: {exc}") from exc
    if isinstance(data, dict) and "norm_stats" in data:
        data = data["norm_stats"]
    if not isinstance(data, dict):
        raise EvalkitError(f"{path}: not an openpi norm_stats.json")
    out = {key: _as_stats(value, f"{path}:{key}") for key, value in data.items()}
    for key in ("state", "actions"):
        if key not in out:
            raise EvalkitError(f"{path}: norm stats have no {key!r} entry (have {sorted(out)})")
    return out


def openpi_norm_spec(path: Path, quantile: bool = True) -> NormSpec:
    """openpi: pi0.5 uses quantile normalization (`use_quantile_norm = model_type != PI0`), pi0 z-score."""
    stats = read_openpi_norm_stats(path)
    mode = "quantile" if quantile else "zscore"
    return NormSpec(FeatureNorm(mode, stats["state"]), FeatureNorm(mode, stats["actions"]), source=str(path))


def write_openpi_norm_stats(path: Path, state: dict[str, np.ndarray], actions: dict[str, np.ndarray]) -> None:
    """Write stats in openpi's `norm_stats.json` layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "norm_stats": {
            "state": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in state.items()},
            "actions": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in actions.items()},
        }
    }
    path.write_text(json.dumps(payload, indent=2))


# lerobot stores stats per feature key; these are the keys of pi05's state and action features.
LEROBOT_STATE_KEY = "observation.state"
LEROBOT_ACTION_KEY = "action"


def _lerobot_step(
    pipeline_file: Path, registry_name: str
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """The config and the stats (from the step's safetensors state file, or inline) of one lerobot processor step."""
    try:
        pipeline = json.loads(pipeline_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalkitError(f"cannot read {pipeline_file}: {exc}") from exc
    for step in pipeline.get("steps", []):
        if step.get("registry_name") != registry_name:
            continue
        config = step.get("config", {}) or {}
        stats: dict[str, dict[str, np.ndarray]] = {}
        if config.get("stats"):
            stats = {
                key: _as_stats(value, f"{pipeline_file}:{key}") for key, value in config["stats"].items()
            }
        elif step.get("state_file"):
            state_path = inside(pipeline_file.parent, str(step["state_file"]), "read", named_in=pipeline_file)
            if not state_path.is_file():
                raise EvalkitError(f"{pipeline_file}: its {registry_name} state file {state_path} is missing")
            from safetensors.numpy import load_file

            for flat_key, tensor in load_file(str(state_path)).items():
                feature, stat_name = flat_key.rsplit(".", 1)
                stats.setdefault(feature, {})[stat_name] = np.asarray(tensor, dtype=np.float32).reshape(-1)
        return config, stats
    raise EvalkitError(f"{pipeline_file}: no {registry_name!r} step")


def _lerobot_feature(
    config: dict[str, Any], stats: dict, key: str, feature_type: str, where: Path
) -> FeatureNorm:
    norm_map = config.get("norm_map") or {}
    lerobot_mode = norm_map.get(feature_type, "IDENTITY")
    if lerobot_mode not in LEROBOT_MODES:
        raise EvalkitError(f"{where}: unsupported lerobot normalization {lerobot_mode!r} for {feature_type}")
    mode = LEROBOT_MODES[lerobot_mode]
    if mode != "identity" and key not in stats:
        raise EvalkitError(f"{where}: {lerobot_mode} normalization of {key!r} but no stats for it")
    eps = float(config.get("eps", LEROBOT_EPS))
    return FeatureNorm(mode, stats.get(key, {}), eps=eps)


def lerobot_norm_spec(checkpoint_dir: Path) -> NormSpec:
    """lerobot pi05: state stats from `policy_preprocessor.json`'s normalizer step, action stats from
    `policy_postprocessor.json`'s unnormalizer step, each with its own MEAN_STD/QUANTILES/... mode."""
    pre = checkpoint_dir / "policy_preprocessor.json"
    post = checkpoint_dir / "policy_postprocessor.json"
    for path in (pre, post):
        if not path.is_file():
            raise EvalkitError(
                f"lerobot checkpoint {checkpoint_dir} has no {path.name} (its normalization stats)"
            )
    pre_config, pre_stats = _lerobot_step(pre, "normalizer_processor")
    post_config, post_stats = _lerobot_step(post, "unnormalizer_processor")
    state = _lerobot_feature(pre_config, pre_stats, LEROBOT_STATE_KEY, "STATE", pre)
    actions = _lerobot_feature(post_config, post_stats, LEROBOT_ACTION_KEY, "ACTION", post)
    return NormSpec(state, actions, source=f"{pre}, {post}")
