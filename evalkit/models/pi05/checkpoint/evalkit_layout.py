"""evalkit's layout (`evalkit convert` writes it): openpi PyTorch weights (`model.safetensors`), a `config.json`
`{"format": "evalkit.pi05", "model": {...}, "behaviour": {...}, "normalization": {...}}` that records the model dims
and the training config, norm stats in openpi's format under `assets/<asset_id>/norm_stats.json`, and optionally
`tokenizer.model`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.checkpoint.configs import TrainingConfig
from evalkit.models.pi05.checkpoint.shapes import EVALKIT_FORMAT
from evalkit.models.pi05.config import Pi05Config
from evalkit.models.pi05.normalize import FeatureNorm, NormSpec, read_openpi_norm_stats
from evalkit.paths import inside


class EvalkitLayout:
    name = "evalkit"

    def detect(self, path: Path, info: dict[str, Any]) -> bool:
        return path.is_dir() and info.get("format") == EVALKIT_FORMAT

    def key_map(self, keys: list[str]) -> dict[str, str] | None:
        return None

    def training_config(self, path: Path, info: dict[str, Any], name: str | None) -> TrainingConfig:
        training_config = TrainingConfig.from_dict(info.get("behaviour", {}))
        if name is not None and name != training_config.name:
            raise EvalkitError(f"{path} was converted with config {training_config.name}, not {name}")
        return training_config

    def norm_stats(
        self, path: Path, info: dict[str, Any], training_config: TrainingConfig, override: Path | None
    ) -> tuple[NormSpec, tuple[Path, ...]]:
        """Stats in openpi's norm_stats.json format; modes (and eps) in config.json["normalization"]."""
        spec = info.get("normalization", {})
        if not spec.get("stats_file") and override is None:
            raise EvalkitError(f"{path}/config.json names no norm stats file")
        stats_file = override or inside(path, spec["stats_file"], "read", named_in=path / "config.json")
        if not stats_file.is_file():
            raise EvalkitError(
                f"missing norm stats {stats_file}; pass --norm-stats FILE or re-run evalkit convert"
            )
        stats = read_openpi_norm_stats(stats_file)
        state = FeatureNorm(spec.get("state_mode", "quantile"), stats["state"], eps=spec.get("state_eps"))
        actions = FeatureNorm(
            spec.get("actions_mode", "quantile"), stats["actions"], eps=spec.get("actions_eps")
        )
        return NormSpec(state, actions, source=str(stats_file)), (stats_file,)

    def model_config(self, info: dict[str, Any]) -> Pi05Config | None:
        return Pi05Config.from_dict(info.get("model", {}))
