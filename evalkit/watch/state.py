"""The watch state: which checkpoints of a training run are done, failed or being evaluated, in
`<watch dir>/watch.json` (replaced atomically), so that a restarted watch skips finished checkpoints, resumes the one
it was evaluating (its run directory resumes on its own) and does not retry one that failed to load.

Each checkpoint is evaluated into an ordinary run directory, `<watch dir>/step_<step>`; the selected checkpoint's
held-out re-evaluation into `<watch dir>/heldout/step_<step>`. The state also says what the last poll saw waiting
(a checkpoint still being written, and why it is not taken yet) and which tracker runs the watch logs to, so that
a restarted watch continues them.
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
MESSAGE_CHARS = 400
# running: started, not finished (a restart resumes it); done: every episode has an outcome; incomplete: episodes in
# error after their retries or not run (a restart retries them, as re-running `evalkit eval` does); failed: the
# checkpoint did not load or does not fit the suite (not retried unless --retry-failed)
Status = Literal["running", "done", "incomplete", "failed"]


@dataclass
class CheckpointRecord:
    step: int
    path: str
    layout: str
    run_dir: str
    status: Status = "running"
    # why it failed, or what an incomplete run lacks (one line)
    error: str | None = None
    started_at: str = field(default_factory=now)
    finished_at: str | None = None
    # pooled over the run's episodes with an outcome (the selection reads these)
    successes: int | None = None
    episodes: int | None = None
    # the trackers this checkpoint's numbers were logged to
    logged: list[str] = field(default_factory=list)


@dataclass
class HeldoutRecord:
    """The selected checkpoint re-evaluated on episodes it was not selected on."""

    step: int
    run_dir: str
    # which episodes, in words (init states and seeds), and how they differ from the selection's
    episodes: str
    status: Status = "running"
    error: str | None = None
    started_at: str = field(default_factory=now)
    finished_at: str | None = None


@dataclass
class WatchState:
    root: str
    suite: str
    checkpoints: dict[str, CheckpointRecord] = field(default_factory=dict)
    # by step (as text: JSON keys)
    heldout: dict[str, HeldoutRecord] = field(default_factory=dict)
    # checkpoint path -> why it is not taken yet (as of the last poll)
    waiting: dict[str, str] = field(default_factory=dict)
    # tracker name -> its run id (W&B, MLflow), so a restarted watch logs to the same run
    trackers: dict[str, str] = field(default_factory=dict)

    def record(self, checkpoint: Checkpoint) -> CheckpointRecord | None:
        return self.checkpoints.get(str(checkpoint.path))

    def todo(self, complete: list[Checkpoint], retry_failed: bool = False) -> list[Checkpoint]:
        """The complete checkpoints still to evaluate, in step order: new ones, one that was running (interrupted)
        and incomplete ones (their missing episodes are retried); done ones are skipped, failed ones unless
        `retry_failed`."""
        again = ("running", "incomplete", "failed") if retry_failed else ("running", "incomplete")
        pending = [c for c in complete if (r := self.record(c)) is None or r.status in again]
        return sorted(pending)

    def run_dir(self, watch_dir: Path, checkpoint: Checkpoint) -> Path:
        """`step_<step>`; a second checkpoint of the same step (another layout, another path) is an error, unless
        the first one failed to load (e.g. a JAX checkpoint, then its conversion)."""
        run_dir = watch_dir / checkpoint.name
        for path, record in self.checkpoints.items():
            if record.run_dir == str(run_dir) and path != str(checkpoint.path) and record.status != "failed":
                raise EvalkitError(f"step {checkpoint.step} is already evaluated from {path}")
        return run_dir

    def start(self, checkpoint: Checkpoint, run_dir: Path | None) -> None:
        """`run_dir` None: refused before it had one (see `run_dir`)."""
        previous = self.record(checkpoint)
        started = previous.started_at if previous is not None else now()
        self.checkpoints[str(checkpoint.path)] = CheckpointRecord(
            checkpoint.step,
            str(checkpoint.path),
            checkpoint.layout,
            str(run_dir) if run_dir is not None else "",
            started_at=started,
            logged=previous.logged if previous is not None else [],
        )

    def finish(
        self,
        checkpoint: Checkpoint,
        error: str | None = None,
        *,
        counts: tuple[int, int] | None = None,
        status: Status | None = None,
    ) -> None:
        """`error` alone: failed; `counts` (successes, episodes): done, or `status` (incomplete, with `error`)."""
        record = self.checkpoints[str(checkpoint.path)]
        record.status = status or ("failed" if error else "done")
        record.error, record.finished_at = error, now()
        if counts is not None:
            record.successes, record.episodes = counts

    def by_status(self, status: Status) -> list[CheckpointRecord]:
        return sorted((r for r in self.checkpoints.values() if r.status == status), key=lambda r: r.step)

    def selected(self) -> CheckpointRecord | None:
        """The checkpoint a user would pick: the highest success rate (pooled over its episodes with an outcome)
        among the complete evaluations; a tie goes to the later step (more training for the same number)."""
        done = [r for r in self.by_status("done") if r.episodes]
        return max(done, key=lambda r: (r.successes / r.episodes, r.step), default=None)


def one_line(exc: BaseException) -> str:
    """An exception as the one line recorded for it (a checkpoint that failed, a tracker that could not log)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not isinstance(exc, EvalkitError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:MESSAGE_CHARS]


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
            {key: HeldoutRecord(**value) for key, value in data.get("heldout", {}).items()},
            dict(data.get("waiting", {})),
            dict(data.get("trackers", {})),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
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
