"""`load_checkpoint`: find, read and validate a checkpoint directory; `Pi05Checkpoint.build_model` reads the
weights into a model's own storage.

Everything is validated against the shapes of `Pi05Model(config)`: every expected tensor present with its shape,
no unexpected one (besides `KNOWN_UNUSED`); the norm stats against the training config.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.checkpoint.configs import TrainingConfig, check_norm_stats
from evalkit.models.pi05.checkpoint.fingerprint import fingerprint_files
from evalkit.models.pi05.checkpoint.io import (
    read_safetensors,
    read_tensors_into,
    safetensors_index,
    weight_files,
)
from evalkit.models.pi05.checkpoint.layout import checkpoint_info, detect_layout
from evalkit.models.pi05.checkpoint.shapes import (
    apply_behaviour,
    compare_shapes,
    expected_shapes,
    infer_dims,
    read_model_config_file,
)
from evalkit.models.pi05.config import Pi05Config
from evalkit.models.pi05.normalize import NormSpec
from evalkit.models.pi05.tokenizer import TOKENIZER_FILENAME

if TYPE_CHECKING:
    import torch

    from evalkit.models.pi05.model import Pi05Model

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class Pi05Checkpoint:
    """A validated checkpoint: where its files are, its model config, training config and normalization."""

    path: Path
    layout: str  # "evalkit" | "openpi" | "lerobot"
    config: Pi05Config
    training_config: TrainingConfig
    norm: NormSpec
    weights: tuple[Path, ...]
    key_map: dict[str, str] | None  # file key -> our key (None: identity)
    norm_files: tuple[Path, ...] = ()  # the files the norm stats came from

    @property
    def tokenizer_path(self) -> Path | None:
        path = self.path / TOKENIZER_FILENAME if self.path.is_dir() else None
        return path if path is not None and path.is_file() else None

    def fingerprint(self) -> str:
        """Weights and norm stats together."""
        return fingerprint_files([*self.weights, *self.norm_files])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """All model tensors under openpi PyTorch names, in their stored dtype (known-unused ones are not read)."""
        stored = safetensors_index(self.weights)
        expected = expected_shapes(self.config)
        found = {name: item.shape for key, item in stored.items() if (name := self._name(key)) is not None}
        compare_shapes(found, expected, str(self.path))
        return read_safetensors(stored, self.key_map, expected)

    def build_model(
        self, device: str = "cpu", dtype: str = "float32", progress: bool | None = None
    ) -> Pi05Model:
        """The model with these weights on `device`, in float32 or bfloat16 (openpi's fp32 keep-list).

        The model is allocated once in its target dtype, then each tensor is read from the file straight into it
        (cast on the way when the stored dtype differs): the peak is the model plus a 32 MiB scratch buffer, and
        nothing of the file stays mapped."""
        import torch

        from evalkit.models.pi05.model import Pi05Model

        if dtype not in DTYPES:
            raise EvalkitError(f"unsupported dtype {dtype!r}; choose float32 or bfloat16")
        start = time.perf_counter()
        model = Pi05Model.empty(self.config, dtype=getattr(torch, dtype), device="cpu")
        targets = {name: tensor.data for name, tensor in model.state_dict(keep_vars=True).items()}
        stored = safetensors_index(self.weights)
        found = {name: item.shape for key, item in stored.items() if (name := self._name(key)) is not None}
        compare_shapes(found, expected_shapes(self.config), str(self.path))  # so every target gets filled
        # non-persistent buffers are not in the state dict, so nothing would fill them
        unfilled = [name for name, _ in model.named_buffers() if name not in targets]
        if unfilled:
            raise EvalkitError(
                f"internal error: model buffers {unfilled[:3]} are not filled from the checkpoint"
            )
        with torch.no_grad():
            read_tensors_into(stored, targets, self.key_map, progress)
        log.info("read %s into a %s model in %.1f s", self.path, dtype, time.perf_counter() - start)
        return model.to(device).eval()

    def _name(self, file_key: str) -> str | None:
        return file_key if self.key_map is None else self.key_map.get(file_key)


def load_checkpoint(
    path: str | Path,
    config_name: str | None = None,
    norm_stats: str | Path | None = None,
    model_config_file: str | Path | None = None,
) -> Pi05Checkpoint:
    """Find, read and validate (shapes only; tensors are read by `build_model`/`state_dict`) a checkpoint directory.

    `config_name` (pi05_libero, pi05_droid, pi05_droid_jointpos) is the training config; it is required unless the
    checkpoint records its own. `model_config_file` gives dims that cannot be inferred from shapes; `norm_stats`
    replaces the checkpoint's stats file (openpi's norm_stats.json format)."""
    path = Path(path).expanduser()
    layout = detect_layout(path)
    stats_path = Path(norm_stats).expanduser() if norm_stats is not None else None
    if stats_path is not None and not stats_path.is_file():
        raise EvalkitError(f"norm stats file {stats_path} does not exist")
    if layout.name == "openpi_jax":
        raise EvalkitError(
            f"{path} is an openpi JAX checkpoint; convert it first: "
            f"evalkit convert --src {path} --out DIR --config NAME (params/ needs the optional orbax-checkpoint)"
        )
    info = checkpoint_info(path)
    training_config = layout.training_config(path, info, config_name)
    norm, norm_files = layout.norm_stats(path, info, training_config, stats_path)
    files = tuple(weight_files(path))
    shapes = {k: v.shape for k, v in safetensors_index(files).items()}
    key_map = layout.key_map(list(shapes))
    if key_map is not None:
        shapes = {key_map[k]: v for k, v in shapes.items() if k in key_map}
    config = layout.model_config(info)
    if config is None:
        given = read_model_config_file(Path(model_config_file)) if model_config_file is not None else None
        config = (
            apply_behaviour(given, training_config)
            if given is not None
            else infer_dims(shapes, training_config)
        )
    compare_shapes(shapes, expected_shapes(config), str(path))
    check_norm_stats(norm, training_config, config.action_dim)
    return Pi05Checkpoint(path, layout.name, config, training_config, norm, files, key_map, norm_files)
