"""A training run's output directory, written the way training code writes it, from tiny pi0.5 weights:
openpi PyTorch (`tmp_<step>` renamed to `<step>`), openpi JAX (orbax's temporary name renamed, then its marker),
lerobot (`<step>/pretrained_model`, then the `last` link) and evalkit's layout. Weights can be written in two
halves, so a test can look at a checkpoint in the middle of being written.

`LoadableTraining` writes checkpoints the pi0.5 loader takes as they are (openpi PyTorch and lerobot, DROID): tiny
random weights whose SigLIP width is pi0.5's (1152, the one width whose head count the loader infers from shapes;
depth 1), each step its own seed, so every checkpoint has its own fingerprint."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from evalkit.models.pi05.cli import make_tiny_checkpoint, random_tiny_weights, tiny_norm_stats
from evalkit.models.pi05.normalize import write_openpi_norm_stats

EMBED = "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight"
# what the watch tests pass for these checkpoints: DROID joint velocities, the tiny tokenizer
LEROBOT_TOKEN_LEN = 64


class TrainingRun:
    def __init__(self, root: Path, tiny: Path):
        self.root = root
        self.tiny = tiny
        self.weights = (tiny / "model.safetensors").read_bytes()

    def openpi_dir(self) -> Path:
        return self.root / "checkpoints" / "pi05_droid" / "my_exp"

    def write_weights(self, directory: Path, part: str = "all", weights: bytes | None = None) -> None:
        """`part`: "first" writes the first half of the file, "rest" the remainder, "all" both."""
        weights = self.weights if weights is None else weights
        half = len(weights) // 2
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "model.safetensors").open("ab" if part == "rest" else "wb") as f:
            f.write({"first": weights[:half], "rest": weights[half:], "all": weights}[part])

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
            self.link_last(step)
        return model

    def link_last(self, step: int) -> None:
        """lerobot re-points `checkpoints/last` once a step's checkpoint is saved."""
        last = self.root / "checkpoints" / "last"
        last.unlink(missing_ok=True)
        last.symlink_to(f"{step:06d}")

    def evalkit(self, name: str) -> Path:
        return make_tiny_checkpoint(self.root / name, "droid", seed=0)


def tiny_checkpoint(directory: Path) -> Path:
    return make_tiny_checkpoint(directory / "tiny", "droid", seed=0)


def remove_last_link(root: Path) -> None:
    os.unlink(root / "checkpoints" / "last")


class LoadableTraining(TrainingRun):
    """Checkpoints `evalkit eval --policy pi05 --config pi05_droid --tokenizer <tiny>` loads, in openpi PyTorch and
    lerobot layouts; `tiny` (a `make-tiny-checkpoint --embodiment droid` directory) gives the tokenizer."""

    def __init__(self, root: Path, tiny: Path):
        from evalkit.models.pi05.checkpoint import load_checkpoint

        super().__init__(root, tiny)
        self.tokenizer = tiny / "tokenizer.model"
        config = load_checkpoint(tiny).config
        self.config = replace(config, siglip=replace(config.siglip, width=1152, num_heads=16, depth=1))

    def weights_of(self, seed: int, lerobot: bool = False) -> bytes:
        from safetensors.torch import save

        tensors = random_tiny_weights(self.config, seed)
        if lerobot:  # lerobot's names: `model.`-prefixed, the tied embedding saved as lm_head
            tensors = {"model." + k: v for k, v in tensors.items() if k != EMBED} | {
                "model.paligemma_with_expert.paligemma.lm_head.weight": tensors[EMBED]
            }
        return save({k: v.contiguous() for k, v in tensors.items()})

    def openpi_pytorch(self, step: int, part: str = "all") -> Path:
        """openpi `scripts/train_pytorch.py`: written into tmp_<step>, renamed when whole (`part="first"` leaves
        it half-written under its temporary name)."""
        tmp = self.openpi_dir() / f"tmp_{step}"
        if part != "rest":
            state, actions = tiny_norm_stats("droid")
            write_openpi_norm_stats(tmp / "assets" / "droid" / "norm_stats.json", state, actions)
        self.write_weights(tmp, part, self.weights_of(step))
        if part == "first":
            return tmp
        final = self.openpi_dir() / str(step)
        tmp.rename(final)
        return final

    def lerobot(self, step: int, part: str = "all", link: bool = True) -> Path:
        model = self.root / "checkpoints" / f"{step:06d}" / "pretrained_model"
        self.write_weights(model, part, self.weights_of(step, lerobot=True))
        if part != "rest":
            write_lerobot_files(model)
        if link and part != "first":
            self.link_last(step)
        return model


def write_lerobot_files(model: Path) -> None:
    """lerobot's config.json and processor files (quantile stats, as pi05 trains with) for a DROID pi05."""
    from safetensors.numpy import save_file

    config = {
        "type": "pi05",
        "chunk_size": 15,
        "n_action_steps": 15,
        "tokenizer_max_length": LEROBOT_TOKEN_LEN,
        "output_features": {"action": {"type": "ACTION", "shape": [8]}},
    }
    (model / "config.json").write_text(json.dumps(config))
    state, actions = tiny_norm_stats("droid")
    flat = {f"observation.state.{k}": np.asarray(v, np.float32) for k, v in state.items()}
    flat |= {f"action.{k}": np.asarray(v, np.float32) for k, v in actions.items()}
    for name, registry in (
        ("policy_preprocessor", "normalizer_processor"),
        ("policy_postprocessor", "unnormalizer_processor"),
    ):
        state_file = f"{name}_step_1_{registry}.safetensors"
        save_file(flat, str(model / state_file))
        step = {
            "registry_name": registry,
            "config": {"eps": 1e-8, "norm_map": {"STATE": "QUANTILES", "ACTION": "QUANTILES"}},
            "state_file": state_file,
        }
        (model / f"{name}.json").write_text(json.dumps({"name": name, "steps": [step]}))
