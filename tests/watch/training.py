"""A training run's output directory, written the way training code writes it, from one tiny pi0.5 checkpoint:
openpi PyTorch (`tmp_<step>` renamed to `<step>`), openpi JAX (orbax's temporary name renamed, then its marker),
lerobot (`<step>/pretrained_model`, then the `last` link) and evalkit's layout. Weights can be written in two
halves, so a test can look at a checkpoint in the middle of being written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from evalkit.models.pi05.cli import make_tiny_checkpoint


class TrainingRun:
    def __init__(self, root: Path, tiny: Path):
        self.root = root
        self.tiny = tiny
        self.weights = (tiny / "model.safetensors").read_bytes()

    def openpi_dir(self) -> Path:
        return self.root / "checkpoints" / "pi05_droid" / "my_exp"

    def write_weights(self, directory: Path, part: str = "all") -> None:
        """`part`: "first" writes the first half of the file, "rest" the remainder, "all" both."""
        half = len(self.weights) // 2
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "model.safetensors").open("ab" if part == "rest" else "wb") as f:
            f.write({"first": self.weights[:half], "rest": self.weights[half:], "all": self.weights}[part])

    def openpi_pytorch(self, step: int) -> Path:
        """openpi `scripts/train_pytorch.py`: everything into tmp_<step>, then one rename."""
        tmp = self.openpi_dir() / f"tmp_{step}"
        self.write_weights(tmp)
        shutil.copytree(self.tiny / "assets", tmp / "assets")
        final = self.openpi_dir() / str(step)
        tmp.rename(final)
        return final

    def openpi_jax(self, step: int, marker: bool = True) -> Path:
        """orbax: a temporary directory renamed to <step>, with its _CHECKPOINT_METADATA marker."""
        tmp = self.openpi_dir() / f"{step}.orbax-checkpoint-tmp-1733000000"
        (tmp / "params").mkdir(parents=True)
        (tmp / "params" / "_METADATA").write_text("{}")
        shutil.copytree(self.tiny / "assets", tmp / "assets")
        final = self.openpi_dir() / str(step)
        if marker:
            (tmp / "_CHECKPOINT_METADATA").write_text('{"item_handlers": {}}')
            tmp.rename(final)
        return final if marker else tmp

    def lerobot(self, step: int, part: str = "all", link: bool = True) -> Path:
        checkpoints = self.root / "checkpoints"
        model = checkpoints / f"{step:06d}" / "pretrained_model"
        self.write_weights(model, part)
        (model / "config.json").write_text('{"type": "pi05", "chunk_size": 15}')
        if link and part != "first":
            last = checkpoints / "last"
            last.unlink(missing_ok=True)
            last.symlink_to(f"{step:06d}")
        return model

    def evalkit(self, name: str) -> Path:
        return make_tiny_checkpoint(self.root / name, "droid", seed=0)


def tiny_checkpoint(directory: Path) -> Path:
    return make_tiny_checkpoint(directory / "tiny", "droid", seed=0)


def remove_last_link(root: Path) -> None:
    os.unlink(root / "checkpoints" / "last")
