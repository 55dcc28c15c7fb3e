"""The tracker plug-in point: a `Tracker` checks that it can work (its extra is installed, it is configured) before
anything runs, and opens a `TrackerSession` that logs `RunRecord`s at a step and says where they went.

Trackers are found by name in `TRACKERS` and imported only when asked for, so evalkit never needs their packages.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Protocol

from evalkit.core.errors import EvalkitError
from evalkit.trackers.config import TRACKER_NAMES, TrackerOptions
from evalkit.trackers.record import RunRecord, Scalar

# name -> "module:class"; each class is a Tracker
TRACKERS: dict[str, str] = {
    "tensorboard": "evalkit.trackers.tensorboard:TensorBoardTracker",
    "wandb": "evalkit.trackers.wandb:WandbTracker",
    "mlflow": "evalkit.trackers.mlflow:MlflowTracker",
}
assert tuple(TRACKERS) == TRACKER_NAMES


class TrackerSession(Protocol):
    # the tracker's id of its run (W&B, MLflow), so that a restarted watch continues it; None: nothing to keep
    ident: str | None

    def log(self, record: RunRecord, step: int) -> None:
        """The record's metrics and videos at `step` (a training step, or 0 for a lone run)."""
        ...

    def describe(self, step: int, fields: dict[str, Scalar]) -> None:
        """What was evaluated at `step` (a watch's checkpoint: its path and fingerprints), as text at that step."""
        ...

    def close(self) -> str:
        """Finish writing; one line saying where the records are."""
        ...


class Tracker(Protocol):
    name: str

    def check(self, options: TrackerOptions) -> None:
        """Raise EvalkitError (one line) unless this tracker can log: its package importable, its store usable."""
        ...

    def open(
        self,
        run_name: str,
        config: dict[str, Scalar],
        options: TrackerOptions,
        run_dir: Path,
        resume: str | None = None,
    ) -> TrackerSession:
        """A session for one evalkit run (or one watch), its config recorded once; `resume`: the `ident` of a run
        this tracker started before, to continue."""
        ...


def require(module: str, tracker: str) -> ModuleType:
    """Import a tracker's package, or one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EvalkitError(
            f"--log {tracker} needs the optional extra: pip install -e '.[{tracker}]' ({exc})"
        ) from None


def make_tracker(name: str) -> Tracker:
    if name not in TRACKERS:
        raise EvalkitError(f"unknown tracker {name!r} for --log; choose from {', '.join(TRACKERS)}")
    module_name, class_name = TRACKERS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)()


def check_trackers(options: TrackerOptions) -> list[Tracker]:
    """The trackers `--log` names, each checked: called before a run starts, so a typo costs nothing."""
    trackers = [make_tracker(name) for name in options.log or ()]
    if options.log_videos_per_task < 0:
        raise EvalkitError("--log-videos-per-task must not be negative")
    for tracker in trackers:
        tracker.check(options)
    return trackers
