"""openpi's JAX layout: an orbax `params/` tree (readable with the optional `orbax-checkpoint` package) or a flat
JAX-named `.npz` (`params_jax.npz`), with norm stats under `assets/<asset_id>/` as openpi writes them. Names map to
ours through `jax_names.jax_to_state_dict`; these checkpoints are converted (`evalkit convert`), not loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.checkpoint.configs import TrainingConfig
from evalkit.models.pi05.checkpoint.io import read_npz, read_orbax_params
from evalkit.models.pi05.checkpoint.openpi_pytorch import openpi_norm_stats, openpi_training_config
from evalkit.models.pi05.config import Pi05Config
from evalkit.models.pi05.normalize import NormSpec


class OpenpiJaxLayout:
    name = "openpi_jax"

    def detect(self, path: Path, info: dict[str, Any]) -> bool:
        return (path.is_file() and path.suffix == ".npz") or (path.is_dir() and (path / "params").is_dir())

    def root(self, path: Path) -> Path:
        """The directory holding `assets/`."""
        return path.parent if path.is_file() else path

    def read_params(self, path: Path) -> dict[str, np.ndarray]:
        return read_npz(path) if path.is_file() else read_orbax_params(path / "params")

    def key_map(self, keys: list[str]) -> dict[str, str] | None:
        raise EvalkitError("openpi JAX names are converted with jax_names.jax_to_state_dict, not renamed")

    def training_config(self, path: Path, info: dict[str, Any], name: str | None) -> TrainingConfig:
        return openpi_training_config(self.root(path), name)

    def norm_stats(
        self, path: Path, info: dict[str, Any], training_config: TrainingConfig, override: Path | None
    ) -> tuple[NormSpec, tuple[Path, ...]]:
        return openpi_norm_stats(self.root(path), training_config, override)

    def model_config(self, info: dict[str, Any]) -> Pi05Config | None:
        return None
