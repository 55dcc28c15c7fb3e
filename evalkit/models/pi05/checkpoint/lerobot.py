"""lerobot's layout (lerobot `src/lerobot/policies/pi05/modeling_pi05.py`, `configuration_pi05.py`):
`model.safetensors` with `model.`-prefixed openpi names, `config.json` (`"type": "pi05"`, `chunk_size`,
`tokenizer_max_length`, `output_features`, ...) and the normalization stats in `policy_preprocessor.json` /
`policy_postprocessor.json` plus their safetensors state files.

lerobot records its training config: horizon = `chunk_size`, prompt length = `tokenizer_max_length`, and always the
discrete-state prompt (lerobot writes it for every dataset). Its postprocessor only unnormalizes the actions, so no
`AbsoluteActions` is ever applied. Checkpoints trained with `use_relative_actions` are refused.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.checkpoint.configs import TrainingConfig, named_config
from evalkit.models.pi05.checkpoint.io import WEIGHTS_FILE, WEIGHTS_INDEX, safetensors_shapes, weight_files
from evalkit.models.pi05.checkpoint.openpi_pytorch import openpi_names
from evalkit.models.pi05.config import Pi05Config
from evalkit.models.pi05.normalize import NormSpec, lerobot_norm_spec, openpi_norm_spec

EMBODIMENT_BY_ACTION_DIM = {body.action_dim: name for name, body in EMBODIMENTS.items()}


class LerobotLayout:
    name = "lerobot"

    def detect(self, path: Path, info: dict[str, Any]) -> bool:
        if not path.is_dir() or not ((path / WEIGHTS_FILE).is_file() or (path / WEIGHTS_INDEX).is_file()):
            return False
        if info.get("type") == "pi05":
            return True
        keys = safetensors_shapes(weight_files(path))
        return bool(keys) and all(k.startswith("model.") for k in keys)

    def key_map(self, keys: list[str]) -> dict[str, str] | None:
        """lerobot `_fix_pytorch_state_dict_keys`: strip `model.`, `action_time_mlp_*` -> `time_mlp_*`, drop
        `state_proj`; then openpi's renames."""
        mapping: dict[str, str] = {}
        for key in keys:
            if not key.startswith("model."):
                raise EvalkitError(f"lerobot checkpoint tensor {key!r} lacks the 'model.' prefix")
            name = key[len("model.") :]
            if name.startswith("state_proj."):
                continue
            for old, new in (
                ("action_time_mlp_in.", "time_mlp_in."),
                ("action_time_mlp_out.", "time_mlp_out."),
            ):
                name = new + name[len(old) :] if name.startswith(old) else name
            mapping[key] = name
        return openpi_names(mapping)

    def training_config(self, path: Path, info: dict[str, Any], name: str | None) -> TrainingConfig:
        if info.get("type") not in (None, "pi05"):
            raise EvalkitError(f"lerobot checkpoint of type {info.get('type')!r}, not pi05")
        if info.get("use_relative_actions"):
            raise EvalkitError(
                f"{path}: lerobot checkpoint trained with use_relative_actions; evalkit does not apply relative "
                "actions, so it refuses this checkpoint"
            )
        shape = info.get("output_features", {}).get("action", {}).get("shape") or [None]
        embodiment = EMBODIMENT_BY_ACTION_DIM.get(shape[0]) if isinstance(shape[0], int) else None
        training_config = TrainingConfig(
            name="lerobot_pi05",
            action_horizon=int(info.get("chunk_size", 50)),
            discrete_state_input=True,
            max_token_len=int(info.get("tokenizer_max_length", 200)),
            embodiment=embodiment,
        )
        if name is None:
            if embodiment == "droid":
                raise EvalkitError(
                    f"{path}: a lerobot DROID checkpoint does not record whether its actions are joint velocities "
                    "or positions; pass --config {pi05_droid,pi05_droid_jointpos}"
                )
            return training_config
        named = named_config(name)
        if embodiment is not None and named.embodiment != embodiment:
            raise EvalkitError(
                f"{path}: its {shape[0]}-dim actions are a {embodiment} policy's, not {name}'s ({named.embodiment})"
            )
        return replace(
            training_config,
            name=f"lerobot_{named.name}",
            embodiment=named.embodiment,
            action_mode=named.action_mode,
        )

    def norm_stats(
        self, path: Path, info: dict[str, Any], training_config: TrainingConfig, override: Path | None
    ) -> tuple[NormSpec, tuple[Path, ...]]:
        if override is not None:
            return openpi_norm_spec(override, quantile=True), (override,)
        files = [path / "policy_preprocessor.json", path / "policy_postprocessor.json"]
        files += sorted(path.glob("policy_*processor*.safetensors"))
        return lerobot_norm_spec(path), tuple(files)

    def model_config(self, info: dict[str, Any]) -> Pi05Config | None:
        return None
