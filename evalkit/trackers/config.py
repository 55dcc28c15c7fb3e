"""The tracker flags of `evalkit eval` (and `watch`), generated from this dataclass's fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evalkit.core.flags import flag

TRACKER_NAMES: tuple[str, ...] = ("tensorboard", "wandb", "mlflow")
HEADING = "experiment trackers (optional extras: pip install -e '.[tensorboard]', '.[wandb]', '.[mlflow]')"


@dataclass(frozen=True)
class TrackerOptions:
    # None on the command line when --log is absent (argparse's "append" cannot start from a tuple)
    log: tuple[str, ...] | None = field(
        default=None,
        metadata=flag(
            "--log",
            "log the run's numbers to a tracker when it ends; repeat for several: "
            f"{', '.join(TRACKER_NAMES)} (W&B reads WANDB_MODE, MLflow MLFLOW_TRACKING_URI)",
            HEADING,
            action="append",
            metavar="TRACKER",
        ),
    )
    log_project: str = field(
        default="evalkit",
        metadata=flag("--log-project", "W&B project and MLflow experiment", HEADING, metavar="NAME"),
    )
    log_dir: Path | None = field(
        default=None,
        metadata=flag(
            "--log-dir",
            "where TensorBoard event files and W&B's local files go (default: the run directory)",
            HEADING,
            type=Path,
            metavar="DIR",
        ),
    )
    log_videos_per_task: int = field(
        default=1,
        metadata=flag(
            "--log-videos-per-task", "episode videos sent per task, of those filmed", HEADING, type=int
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "log", tuple(dict.fromkeys(self.log or ())))
