"""The watch state: which checkpoints of a training run are done, failed or being evaluated, in
`<watch dir>/watch.json` (replaced atomically), so that a restarted watch skips finished checkpoints, resumes the one
it was evaluating (its run directory resumes on its own) and does not retry one that failed to load.

Each checkpoint is evaluated into an ordinary run directory, `<watch dir>/step_<step>`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from evalkit.core.errors import EvalkitError
from evalkit.rundir.manifest import now
from evalkit.watch.discover import Checkpoint

STATE_NAME = "watch.json"
Status = Literal["running", "done", "failed"]


@dataclass
class CheckpointRecord:
    step: int
    path: str
    layout: str
    run_dir: str
    status: Status = "running"
    error: str | None = None
    started_at: str = field(default_factory=now)
    finished_at: str | None = None


@dataclass
class WatchState:
    root: str
    suite: str
    checkpoints: dict[str, CheckpointRecord] = field(default_factory=dict)

    def record(self, checkpoint: Checkpoint) -> CheckpointRecord | None:
        return self.checkpoints.get(str(checkpoint.path))

    def todo(self, complete: list[Checkpoint]) -> list[Checkpoint]:
        """The complete checkpoints still to evaluate, in step order: one that was running (interrupted) resumes
        where its step puts it; done and failed ones are skipped."""
        pending = [c for c in complete if (r := self.record(c)) is None or r.status == "running"]
        return sorted(pending)

    def run_dir(self, watch_dir: Path, checkpoint: Checkpoint) -> Path:
        """`step_<step>`; a second checkpoint of the same step (another layout, another path) is an error."""
        run_dir = watch_dir / checkpoint.name
        for path, record in self.checkpoints.items():
            if record.run_dir == str(run_dir) and path != str(checkpoint.path):
                raise EvalkitError(f"step {checkpoint.step} is already evaluated from {path}")
        return run_dir

    def start(self, checkpoint: Checkpoint, run_dir: Path) -> None:
        previous = self.record(checkpoint)
        started = previous.started_at if previous is not None else now()
        self.checkpoints[str(checkpoint.path)] = CheckpointRecord(
            checkpoint.step, str(checkpoint.path), checkpoint.layout, str(run_dir), started_at=started
        )

    def finish(self, checkpoint: Checkpoint, error: str | None = None) -> None:
        record = self.checkpoints[str(checkpoint.path)]
        record.status, record.error, record.finished_at = ("failed" if error else "done"), error, now()

    def by_status(self, status: Status) -> list[CheckpointRecord]:
        return sorted((r for r in self.checkpoints.values() if r.status == status), key=lambda r: r.step)


def state_path(watch_dir: Path) -> Path:
    return Path(watch_dir) / STATE_NAME


def load_state(watch_dir: Path, root: Path, suite: str) -> WatchState:
    """The stored state of this watch directory, or a new one; one that watched another root or suite is refused."""
    path = state_path(watch_dir)
    if not path.exists():
        return WatchState(str(Path(root).resolve()), suite)
    try:
        data = json.loads(path.read_text())
        state = WatchState(
            data["root"],
            data["suite"],
            {key: CheckpointRecord(**value) for key, value in data["checkpoints"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvalkitError(f"unreadable watch state {path}: {exc}") from None
    if (state.root, state.suite) != (str(Path(root).resolve()), suite):
        raise EvalkitError(
            f"{watch_dir} watches {state.root} on {state.suite}, not {Path(root).resolve()} on {suite}: "
            "choose another --out"
        )
    return state


def save_state(watch_dir: Path, state: WatchState) -> None:
    path = state_path(watch_dir)
    tmp = path.with_suffix(".json.tmp")
    try:
        Path(watch_dir).mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EvalkitError(f"cannot write {path}: {exc.strerror or exc}") from exc
