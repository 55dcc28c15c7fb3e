"""Training configs: what a checkpoint's openpi/lerobot training config fixes beyond tensor shapes.

The config is read from a checkpoint's own metadata when it has some (evalkit's `config.json`, lerobot's
`config.json`); otherwise it must be named (`PolicyOptions.config`, `--config`). It is never guessed from a path.
Names and values follow openpi `src/openpi/training/config.py` (`pi05_libero`, `pi05_droid`, `pi05_droid_jointpos`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evalkit.core.embodiment import ACTION_MODES, EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.normalize import MODES, FeatureNorm, NormSpec


@dataclass(frozen=True)
class TrainingConfig:
    """A training config: horizon, prompt format, norm-stats asset, embodiment and what the actions mean."""

    # e.g. "pi05_libero"; "lerobot_pi05" for a lerobot checkpoint's own config
    name: str
    action_horizon: int
    discrete_state_input: bool
    max_token_len: int = 200
    # openpi norm stats: assets/<asset_id>/norm_stats.json
    asset_id: str | None = None
    # a key of evalkit.core.embodiment.EMBODIMENTS ("libero", "droid")
    embodiment: str | None = None
    # *_jointpos: actions[:7] += state[:7] (openpi AbsoluteActions)
    absolute_joint_actions: bool = False
    # one of core.embodiment.ACTION_MODES; None: the embodiment's default, joint_position for absolute joints
    action_mode: str | None = None

    def __post_init__(self) -> None:
        if self.action_mode is None and self.embodiment is not None:
            body = EMBODIMENTS.get(self.embodiment)
            mode = body.action_modes[0] if body is not None else None
            if self.absolute_joint_actions:
                mode = "joint_position"
            object.__setattr__(self, "action_mode", mode)
        if self.action_mode is not None and self.action_mode not in ACTION_MODES:
            raise EvalkitError(f"unknown action mode {self.action_mode!r}; expected one of {ACTION_MODES}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action_horizon": self.action_horizon,
            "discrete_state_input": self.discrete_state_input,
            "max_token_len": self.max_token_len,
            "asset_id": self.asset_id,
            "embodiment": self.embodiment,
            "absolute_joint_actions": self.absolute_joint_actions,
            "action_mode": self.action_mode,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        try:
            return cls(**data)
        except TypeError as exc:
            raise EvalkitError(
                f"malformed 'behaviour' (training config) entry in config.json: {exc}"
            ) from exc

    @property
    def dims(self) -> tuple[int, int] | None:
        """(state dims, action dims) of the embodiment, if known."""
        body = EMBODIMENTS.get(self.embodiment or "")
        return (body.state_dim, body.action_dim) if body is not None else None


NAMED_CONFIGS: dict[str, TrainingConfig] = {
    "pi05_libero": TrainingConfig("pi05_libero", 10, False, 200, "physical-intelligence/libero", "libero"),
    "pi05_droid": TrainingConfig("pi05_droid", 15, True, 200, "droid", "droid"),
    "pi05_droid_jointpos": TrainingConfig("pi05_droid_jointpos", 15, True, 200, "droid", "droid", True),
}


def named_config(name: str) -> TrainingConfig:
    if name not in NAMED_CONFIGS:
        raise EvalkitError(f"unknown pi05 config {name!r}; choose one of {', '.join(NAMED_CONFIGS)}")
    return NAMED_CONFIGS[name]


def require_config(name: str | None, where: str, why: str) -> TrainingConfig:
    """A named config, or one line asking for `--config` when the checkpoint does not say which it is."""
    if name is None:
        raise EvalkitError(f"{where}: {why}; pass --config {{{','.join(NAMED_CONFIGS)}}}")
    return named_config(name)


def check_norm_stats(norm: NormSpec, training_config: TrainingConfig, model_action_dim: int) -> None:
    """Stats must fit the config: state/action dims as the embodiment's (or the model's padded action_dim, as
    openpi's older stats were, `src/openpi/transforms.py` slices them), all finite, q01 <= q99 and min <= max."""
    expected = training_config.dims
    for feature_name, feature, index in (("state", norm.state, 0), ("actions", norm.actions, 1)):
        check_feature_stats(feature, f"{norm.source}: {feature_name}")
        dim = feature.dim
        if dim is None:
            continue
        if expected is not None and dim not in (expected[index], model_action_dim):
            raise EvalkitError(
                f"{norm.source}: {feature_name} stats have {dim} dims; config {training_config.name} needs "
                f"{expected[index]} (or {model_action_dim}, padded)"
            )
        if expected is None and dim > model_action_dim:
            raise EvalkitError(
                f"{norm.source}: {feature_name} stats have {dim} dims, more than the model's {model_action_dim}"
            )


def check_feature_stats(feature: FeatureNorm, where: str) -> None:
    for name in MODES[feature.mode]:
        if not np.all(np.isfinite(np.asarray(feature.stats[name], dtype=np.float64))):
            raise EvalkitError(f"{where} stats {name} are not all finite")
    for low, high in (("q01", "q99"), ("min", "max")):
        if low in feature.stats and high in feature.stats:
            lo, hi = np.asarray(feature.stats[low]), np.asarray(feature.stats[high])
            if lo.shape == hi.shape and np.any(lo > hi):
                i = int(np.argmax(lo > hi))
                raise EvalkitError(f"{where} stats have {low} > {high} at dim {i} ({lo[i]:g} > {hi[i]:g})")
