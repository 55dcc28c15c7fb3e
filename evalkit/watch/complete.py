"""Is a checkpoint completely written? A checkpoint still being written is never loaded.

In order: a temporary name (orbax's `*.orbax-checkpoint-tmp-*`, openpi PyTorch's `tmp_<step>`) means no; the
layout's own completion marker means yes (orbax's `_CHECKPOINT_METADATA` or `commit_success.txt`; lerobot's
`checkpoints/last` pointing at this step or a later one); otherwise every safetensors weights file must be whole (its
header's tensors end exactly where the file ends) and the directory must have settled: the same files, sizes and
modification times seen at two polls at least `settle_s` apart (measured on this machine's clock, so a file server's
clock does not matter).
"""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.watch.discover import WEIGHTS, Checkpoint

ORBAX_MARKERS = ("_CHECKPOINT_METADATA", "commit_success.txt")
DEFAULT_SETTLE_S = 60.0

Signature = tuple[tuple[str, int, int], ...]


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is not whole (None if it is): its 8-byte header length, JSON header and the end of
    its last tensor must account for every byte."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path.name}: {size} bytes, no header yet"
            (length,) = struct.unpack("<Q", head)
            if 8 + length > size:
                return f"{path.name}: header runs past the end of the file"
            header = json.loads(f.read(length))
    except (OSError, ValueError) as exc:
        return f"{path.name}: unreadable header ({exc})"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    data = size - 8 - length
    if max(ends, default=0) != data:
        return f"{path.name}: {data} bytes of tensor data, the header describes {max(ends, default=0)}"
    return None


def weight_files(path: Path) -> list[Path]:
    index = path / WEIGHTS[1]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            return [index]
        return [path / shard for shard in shards]
    return sorted(path.glob("*.safetensors"))


def weights_problem(path: Path) -> str | None:
    for file in weight_files(path):
        if not file.is_file():
            return f"{file.name}: missing"
        if file.suffix == ".json":
            return f"{file.name}: unreadable index"
        if problem := safetensors_problem(file):
            return problem
    return None


def lerobot_last_step(checkpoint: Checkpoint) -> int | None:
    """The step lerobot's `checkpoints/last` link points at (it is re-pointed after a save completes)."""
    last = checkpoint.path.parent.parent / "last"
    try:
        target = os.readlink(last)
    except OSError:
        return None
    name = Path(target).name
    return int(name) if name.isdigit() else None


def marker_says_complete(checkpoint: Checkpoint) -> bool:
    if checkpoint.layout == "openpi_jax":
        return any(
            (checkpoint.path / m).exists() or (checkpoint.path / "params" / m).exists() for m in ORBAX_MARKERS
        )
    if checkpoint.layout == "lerobot":
        last = lerobot_last_step(checkpoint)
        return last is not None and last >= checkpoint.step
    return False


def signature(path: Path) -> Signature:
    """Every file under `path` with its size and modification time (ns)."""
    entries = []
    for directory, _, files in os.walk(path):
        for name in files:
            file = Path(directory) / name
            try:
                stat = file.stat()
            except OSError:
                continue
            entries.append((str(file.relative_to(path)), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


@dataclass
class Completeness:
    """Decides completeness across polls; remembers what each candidate looked like when first seen unchanged."""

    settle_s: float = DEFAULT_SETTLE_S
    clock: Callable[[], float] = time.monotonic
    seen: dict[Path, tuple[Signature, float]] = field(default_factory=dict)

    def check(self, checkpoint: Checkpoint) -> tuple[bool, str]:
        """(complete, why not / how it was decided)."""
        if checkpoint.in_progress:
            return False, "written under a temporary name"
        if marker_says_complete(checkpoint):
            return True, "completion marker"
        if checkpoint.layout != "openpi_jax" and (problem := weights_problem(checkpoint.path)):
            self.seen.pop(checkpoint.path, None)
            return False, problem
        now, current = self.clock(), signature(checkpoint.path)
        previous = self.seen.get(checkpoint.path)
        if previous is None or previous[0] != current:
            self.seen[checkpoint.path] = (current, now)
            return False, f"settling ({self.settle_s:g} s without change needed)"
        if now - previous[1] < self.settle_s:
            return False, f"settling ({now - previous[1]:.0f} of {self.settle_s:g} s without change)"
        return True, f"unchanged for {now - previous[1]:.0f} s"
