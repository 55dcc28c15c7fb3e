"""Weights & Biases (the `wandb` extra): the config as the W&B run's config, metrics against `training_step` (each
metric's x-axis, so a watch's checkpoints may arrive in any order and a restarted watch continues its W&B run),
episode videos as `wandb.Video` (mp4, as filmed). W&B's own settings apply: WANDB_MODE=offline keeps everything local
(no account), WANDB_ENTITY, WANDB_API_KEY / `wandb login`. Local files go under the run directory (or --log-dir)."""

from __future__ import annotations

import os
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.trackers.base import require
from evalkit.trackers.config import TrackerOptions
from evalkit.trackers.record import RunRecord, Scalar

LOCAL_MODES = ("offline", "disabled", "dryrun")


STEP_METRIC = "training_step"


class WandbSession:
    def __init__(self, run):
        self.run = run
        self.ident: str | None = run.id
        self.defined: set[str] = set()
        run.define_metric(STEP_METRIC)

    def log(self, record: RunRecord, step: int) -> None:
        import wandb

        videos = {v.tag: wandb.Video(str(v.path), caption=v.caption, format="mp4") for v in record.videos}
        self._log({**record.metrics, **videos}, step)

    def describe(self, step: int, fields: dict[str, Scalar]) -> None:
        self._log({f"checkpoint/{key}": value for key, value in fields.items()}, step)

    def _log(self, values: dict, step: int) -> None:
        for key in values.keys() - self.defined:
            self.run.define_metric(key, step_metric=STEP_METRIC)
            self.defined.add(key)
        self.run.log({**values, STEP_METRIC: step})

    def close(self) -> str:
        offline = self.run.settings.mode in LOCAL_MODES
        where = f"{Path(self.run.dir).parent} (offline: `wandb sync` uploads it)" if offline else self.run.url
        self.run.finish()
        return f"wandb: {where}"


class WandbTracker:
    name = "wandb"

    def check(self, options: TrackerOptions) -> None:
        wandb = require("wandb", self.name)
        if os.environ.get("WANDB_MODE", "").lower() in LOCAL_MODES:
            return
        if not wandb.login(prompt=False, verify=False):
            raise EvalkitError(
                "--log wandb: W&B has no credentials: run `wandb login`, set WANDB_API_KEY, "
                "or set WANDB_MODE=offline to keep the records local"
            )

    def open(
        self,
        run_name: str,
        config: dict[str, Scalar],
        options: TrackerOptions,
        run_dir: Path,
        resume: str | None = None,
    ) -> WandbSession:
        import wandb

        directory = options.log_dir if options.log_dir is not None else run_dir
        directory.mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=options.log_project,
            name=run_name,
            dir=str(directory),
            config=dict(config),
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
            **({"id": resume, "resume": "allow"} if resume else {}),
        )
        return WandbSession(run)
