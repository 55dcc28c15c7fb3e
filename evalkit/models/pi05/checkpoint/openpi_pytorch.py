"""openpi's PyTorch layout (openpi `examples/convert_jax_model_to_pytorch.py` output): `model.safetensors` with
openpi PyTorch names, openpi's informational `config.json` (action_dim, action_horizon, variants, precision) and
norm stats under `assets/<asset_id>/norm_stats.json` (openpi `src/openpi/training/checkpoints.py::load_norm_stats`).
The training config is recorded nowhere, so it must be named."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.checkpoint.configs import TrainingConfig, require_config
from evalkit.models.pi05.checkpoint.io import WEIGHTS_FILE, WEIGHTS_INDEX, read_json
from evalkit.models.pi05.checkpoint.shapes import P
from evalkit.models.pi05.config import Pi05Config
from evalkit.models.pi05.normalize import NormSpec, openpi_norm_spec
from evalkit.paths import inside

log = logging.getLogger(__name__)

# transformers < 4.52 named PaliGemma's parts differently; its own `_checkpoint_conversion_mapping` renames them.
LEGACY_HF_NAMES = (
    ("paligemma_with_expert.paligemma.language_model.model.", P + "language_model."),
    ("paligemma_with_expert.paligemma.vision_tower.", P + "vision_tower."),
    ("paligemma_with_expert.paligemma.multi_modal_projector.", P + "multi_modal_projector."),
    ("paligemma_with_expert.paligemma.language_model.lm_head.", "paligemma_with_expert.paligemma.lm_head."),
)
EMBED = P + "language_model.embed_tokens.weight"
LM_HEAD = "paligemma_with_expert.paligemma.lm_head.weight"


def openpi_names(mapping: dict[str, str]) -> dict[str, str]:
    """Apply the legacy transformers renames to a file key -> name map; the tied PaliGemma lm_head stands in for a
    missing embed_tokens; two keys mapping to one name is an error."""
    out = {}
    for key, name in mapping.items():
        for old, new in LEGACY_HF_NAMES:
            if name.startswith(old):
                name = new + name[len(old) :]
                break
        out[key] = name
    if EMBED not in out.values():
        for key, name in list(out.items()):
            if name == LM_HEAD:
                out[key] = EMBED  # tied weights saved only once, under lm_head
    seen: dict[str, str] = {}
    for key, name in out.items():
        if name in seen:
            raise EvalkitError(f"tensors {seen[name]!r} and {key!r} both map to {name!r}")
        seen[name] = key
    return out


def openpi_assets(path: Path) -> list[str]:
    """Asset ids that have `assets/<asset_id>/norm_stats.json` under `path`."""
    root = path / "assets"
    if not root.is_dir():
        return []
    return sorted(str(p.parent.relative_to(root)) for p in root.rglob("norm_stats.json"))


def openpi_norm_stats(
    path: Path, training_config: TrainingConfig, override: Path | None
) -> tuple[NormSpec, tuple[Path, ...]]:
    stats_file = override
    if stats_file is None:
        if training_config.asset_id is None:
            raise EvalkitError(f"{path}: no asset id to find norm stats under; pass --norm-stats FILE")
        stats_file = inside(path, Path("assets", training_config.asset_id, "norm_stats.json"), "read")
        if not stats_file.is_file():
            found = openpi_assets(path)
            raise EvalkitError(
                f"missing norm stats {stats_file} (config {training_config.name}; found: {found or 'none'}). "
                "openpi's converter often drops them: copy <jax ckpt>/assets into the checkpoint or pass --norm-stats"
            )
    return openpi_norm_spec(stats_file, quantile=True), (stats_file,)


def openpi_training_config(path: Path, name: str | None) -> TrainingConfig:
    training_config = require_config(
        name, str(path), "openpi checkpoints do not record their training config"
    )
    info_file = path / "config.json"
    if info_file.is_file():
        horizon = read_json(info_file).get("action_horizon")
        if isinstance(horizon, int) and horizon != training_config.action_horizon:
            log.warning(
                "%s: config.json says action_horizon %d; %s uses %d",
                path,
                horizon,
                training_config.name,
                training_config.action_horizon,
            )
    return training_config


class OpenpiPytorchLayout:
    name = "openpi"

    def detect(self, path: Path, info: dict[str, Any]) -> bool:
        return path.is_dir() and ((path / WEIGHTS_FILE).is_file() or (path / WEIGHTS_INDEX).is_file())

    def key_map(self, keys: list[str]) -> dict[str, str] | None:
        return openpi_names({key: key for key in keys})

    def training_config(self, path: Path, info: dict[str, Any], name: str | None) -> TrainingConfig:
        return openpi_training_config(path, name)

    def norm_stats(
        self, path: Path, info: dict[str, Any], training_config: TrainingConfig, override: Path | None
    ) -> tuple[NormSpec, tuple[Path, ...]]:
        return openpi_norm_stats(path, training_config, override)

    def model_config(self, info: dict[str, Any]) -> Pi05Config | None:
        return None
