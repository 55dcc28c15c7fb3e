"""The options of `evalkit watch` that are its own; it also takes `eval`'s run options (`EvalConfig`), the pi0.5
loading options (`PolicyOptions`), the gate's (`RegressConfig`) and the trackers' (`TrackerOptions`), each flag
generated from its dataclass field, so every default has one home."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.core.flags import flag
from evalkit.watch.complete import DEFAULT_SETTLE_S

WATCH = "watch"
DEFAULT_POLL_S = 30.0


@dataclass(frozen=True)
class WatchConfig:
    ckpt_root: Path = field(
        metadata=flag(
            "ckpt_root",
            "training output directory: openpi checkpoints/<config>/<exp>/<step>/, lerobot checkpoints/<step>/"
            "pretrained_model/, or evalkit checkpoints named by their step",
            type=Path,
            metavar="CKPT_ROOT",
        )
    )
    suite: str = field(metadata=flag("--suite", "suite or group name (see `evalkit suites`)", required=True))
    # a string on the command line, so that `--out ''` is refused rather than taken as the current directory
    out: Path | None = field(
        default=None,
        metadata=flag(
            "--out",
            "watch directory: watch.json, a run directory per checkpoint, the report "
            "(default: results/watch/<CKPT_ROOT name>__<suite>)",
            WATCH,
            metavar="DIR",
        ),
    )
    against: Path | None = field(
        default=None,
        metadata=flag(
            "--against",
            "baseline run directory: each checkpoint gets the paired regression gate's verdict against it "
            "(as `evalkit regress`)",
            WATCH,
            type=Path,
            metavar="BASELINE",
        ),
    )
    every: int | None = field(
        default=None,
        metadata=flag(
            "--every",
            "evaluate only checkpoints whose training step is a multiple of N (default: every checkpoint)",
            WATCH,
            type=int,
            metavar="N",
        ),
    )
    once: bool = field(
        default=False,
        metadata=flag(
            "--once",
            "evaluate every complete checkpoint present (waiting for those still settling), then exit; "
            "without it, keep watching until Ctrl-C",
            WATCH,
            action="store_true",
        ),
    )
    poll_s: float = field(
        default=DEFAULT_POLL_S,
        metadata=flag("--poll", "seconds between looks at CKPT_ROOT", WATCH, type=float, metavar="SECONDS"),
    )
    settle_s: float = field(
        default=DEFAULT_SETTLE_S,
        metadata=flag(
            "--settle",
            "a checkpoint without a completion marker (openpi PyTorch, evalkit) counts as written once its files "
            "are unchanged for this long",
            WATCH,
            type=float,
            metavar="SECONDS",
        ),
    )
    heldout_episodes_per_task: int | None = field(
        default=None,
        metadata=flag(
            "--heldout-episodes-per-task",
            "episodes per task of the selected checkpoint's held-out re-evaluation; 0 turns it off "
            "(default: as many as each checkpoint gets)",
            WATCH,
            type=int,
            metavar="N",
        ),
    )
    retry_failed: bool = field(
        default=False,
        metadata=flag(
            "--retry-failed",
            "evaluate again the checkpoints a previous watch recorded as failed to load",
            WATCH,
            action="store_true",
        ),
    )

    def watch_dir(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(self.ckpt_root).resolve().name or "root")
        return Path("results") / "watch" / f"{name}__{self.suite}"

    def wants(self, step: int) -> bool:
        """`--every N`: a checkpoint is evaluated iff its training step is a multiple of N."""
        return self.every is None or step % self.every == 0

    def check(self) -> None:
        """Refuse bad settings in one line, before anything starts."""
        if not Path(self.ckpt_root).is_dir():
            raise EvalkitError(f"checkpoint root {self.ckpt_root} is not a directory")
        if self.every is not None and self.every < 1:
            raise EvalkitError(f"--every must be at least 1, got {self.every}")
        if not (math.isfinite(self.poll_s) and self.poll_s > 0):
            raise EvalkitError(f"--poll must be a positive number of seconds, got {self.poll_s}")
        if not (math.isfinite(self.settle_s) and self.settle_s >= 0):
            raise EvalkitError(f"--settle must be a number of seconds >= 0, got {self.settle_s}")
        if self.heldout_episodes_per_task is not None and self.heldout_episodes_per_task < 0:
            raise EvalkitError("--heldout-episodes-per-task must not be negative")
        if self.out is not None and not str(self.out).strip():
            raise EvalkitError("--out must not be empty")
