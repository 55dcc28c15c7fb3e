"""What every checkpoint layout provides, and `detect_layout`, which picks one for a path.

Layouts (one module each): `evalkit_layout` (ours), `openpi_pytorch` (openpi `examples/convert_jax_model_to_pytorch.py`
output), `lerobot` (lerobot `src/lerobot/policies/pi05/`), `openpi_jax` (openpi's orbax `params/` or a flat `.npz`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.checkpoint.configs import TrainingConfig
from evalkit.models.pi05.checkpoint.io import read_json, refuse_pickle, weight_files
from evalkit.models.pi05.config import Pi05Config
from evalkit.models.pi05.normalize import NormSpec


class Layout(Protocol):
    name: str

    def detect(self, path: Path, info: dict[str, Any]) -> bool:
        """Is `path` (a directory with `config.json` contents `info`, or a file) in this layout?"""
        ...

    def key_map(self, keys: list[str]) -> dict[str, str] | None:
        """File tensor name -> openpi PyTorch name (None: identical)."""
        ...

    def training_config(self, path: Path, info: dict[str, Any], name: str | None) -> TrainingConfig:
        """From the checkpoint's own metadata, else the named config `name` (never from the path)."""
        ...

    def norm_stats(
        self, path: Path, info: dict[str, Any], training_config: TrainingConfig, override: Path | None
    ) -> tuple[NormSpec, tuple[Path, ...]]:
        """The normalization and the files it was read from (`override`: a user's openpi norm_stats.json)."""
        ...

    def model_config(self, info: dict[str, Any]) -> Pi05Config | None:
        """Model dims recorded by the checkpoint itself (None: infer them from tensor shapes)."""
        ...


def checkpoint_info(path: Path) -> dict[str, Any]:
    """The directory's `config.json` ({} if it has none)."""
    return read_json(path / "config.json") if path.is_dir() and (path / "config.json").is_file() else {}


def layouts() -> list[Layout]:
    from evalkit.models.pi05.checkpoint.evalkit_layout import EvalkitLayout
    from evalkit.models.pi05.checkpoint.lerobot import LerobotLayout
    from evalkit.models.pi05.checkpoint.openpi_jax import OpenpiJaxLayout
    from evalkit.models.pi05.checkpoint.openpi_pytorch import OpenpiPytorchLayout

    return [EvalkitLayout(), LerobotLayout(), OpenpiPytorchLayout(), OpenpiJaxLayout()]


def detect_layout(path: Path) -> Layout:
    if path.is_file():
        refuse_pickle(path)
        if path.suffix == ".safetensors":
            raise EvalkitError(
                f"{path}: pass the checkpoint directory (with its norm stats), not the weights file"
            )
    elif not path.is_dir():
        raise EvalkitError(f"checkpoint {path} does not exist")
    info = checkpoint_info(path)
    for layout in layouts():
        if layout.detect(path, info):
            return layout
    if path.is_file():
        raise EvalkitError(f"{path} is not a checkpoint directory, safetensors or npz file")
    weight_files(path)  # raises with the pickle message if there are only pickles
    raise EvalkitError(f"{path} is not a pi05 checkpoint")  # pragma: no cover
