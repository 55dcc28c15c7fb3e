"""Checkpoints under a training output directory, in the layouts training code writes:

- openpi, JAX (openpi `scripts/train.py`): `checkpoints/<config>/<exp>/<step>/` with an orbax `params/` tree (and
  `assets/`); orbax writes into `<step>.orbax-checkpoint-tmp-*` and renames it when done.
- openpi, PyTorch (openpi `scripts/train_pytorch.py`): `checkpoints/<config>/<exp>/<step>/model.safetensors`; it
  writes into `tmp_<step>/` and renames it when done.
- lerobot (`lerobot-train`): `checkpoints/<step, zero-padded>/pretrained_model/` (config.json, model.safetensors);
  `checkpoints/last` is re-pointed to a step after that step's checkpoint is saved.
- evalkit's own layout (`evalkit convert`): a directory whose config.json says `"format": "evalkit.pi05"`, its step
  the number its name ends with (`step_2000`, `2000`).

A directory that is being written under a temporary name is listed as in progress and never loaded.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from evalkit.models.pi05.checkpoint.shapes import EVALKIT_FORMAT

WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
ORBAX_TMP = re.compile(r"^(\d+)\.orbax-checkpoint-tmp-")
OPENPI_TMP = re.compile(r"^tmp_(\d+)$")
TRAILING_STEP = re.compile(r"(\d+)$")
MAX_DEPTH = 8  # checkpoints/<config>/<exp>/<step>/ lies a few levels down; no deeper search is needed


@dataclass(frozen=True, order=True)
class Checkpoint:
    step: int
    # what is evaluated: the directory a loader takes (lerobot: .../pretrained_model)
    path: Path
    # openpi_jax, openpi_pytorch, lerobot, evalkit
    layout: str
    # written under a temporary name: never loaded
    in_progress: bool = False

    @property
    def name(self) -> str:
        return f"step_{self.step:09d}"


def has_weights(path: Path) -> bool:
    return any((path / name).is_file() for name in WEIGHTS)


def evalkit_format(path: Path) -> bool:
    try:
        return json.loads((path / "config.json").read_text()).get("format") == EVALKIT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def classify(path: Path) -> Checkpoint | None:
    """The checkpoint `path` is, if it is one (a directory)."""
    name = path.name
    for pattern in (ORBAX_TMP, OPENPI_TMP):
        if match := pattern.match(name):
            layout = "openpi_jax" if pattern is ORBAX_TMP else "openpi_pytorch"
            return Checkpoint(int(match.group(1)), path, layout, in_progress=True)
    if name == "pretrained_model" and path.parent.name.isdigit() and path.parent.parent.name == "checkpoints":
        return Checkpoint(int(path.parent.name), path, "lerobot")
    if evalkit_format(path):
        step = TRAILING_STEP.search(name)
        return Checkpoint(int(step.group(1)), path, "evalkit") if step else None
    if name.isdigit() and (path / "params").is_dir():
        return Checkpoint(int(name), path, "openpi_jax")
    if name.isdigit() and has_weights(path):
        return Checkpoint(int(name), path, "openpi_pytorch")
    return None


def discover(root: Path) -> list[Checkpoint]:
    """Every checkpoint under `root` (or `root` itself), in step order; a checkpoint's own subdirectories are not
    searched. Symbolic links (lerobot's `last`) are not followed, so no checkpoint is listed twice."""
    found: list[Checkpoint] = []
    root = Path(root)
    for directory, subdirs, _ in os.walk(root):
        here = Path(directory)
        checkpoint = classify(here)
        if checkpoint is not None:
            found.append(checkpoint)
            subdirs.clear()
        elif len(here.relative_to(root).parts) >= MAX_DEPTH:
            subdirs.clear()
        else:
            subdirs[:] = sorted(d for d in subdirs if not (here / d).is_symlink())
    return sorted(found)
