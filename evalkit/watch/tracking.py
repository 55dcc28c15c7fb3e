"""A watch's tracker runs: one run per tracker for the whole watch, each checkpoint's numbers logged at its training
step, so every tracker draws the success curve the way its users read training curves:

- TensorBoard: one log directory, scalars against the step (TensorBoard's x-axis); a restarted watch adds an event
  file to the same directory, which TensorBoard reads as the same run.
- W&B: one run whose metrics are plotted against `training_step` (W&B's custom x-axis), so a checkpoint that arrives
  late still lands at its step; a restarted watch resumes the same run (its id is kept in watch.json).
- MLflow: one run, metrics at their step (MLflow's metric history); a restarted watch reopens the same run.

One run per checkpoint would leave each tracker with a scatter of one-point runs and no curve. What changes per
checkpoint (its path, weights fingerprint, run directory) is logged as text at its step (`describe`); the run config
holds what the whole watch shares (the root, suite, protocol fingerprints, options).
"""

from __future__ import annotations

from pathlib import Path

from evalkit.trackers.base import Tracker, TrackerSession
from evalkit.trackers.config import TrackerOptions
from evalkit.trackers.record import RunRecord, Scalar, run_record
from evalkit.watch.state import WatchState, one_line

# keys of a run's config that belong to one checkpoint, not to the watch
PER_CHECKPOINT = (
    "run_id",
    "run_dir",
    "checkpoint",
    "policy_fingerprint",
    "option/out",
    "option/training_step",
)


def split_config(record: RunRecord) -> tuple[dict[str, Scalar], dict[str, Scalar]]:
    """A checkpoint run's config -> (what the watch shares, what is this checkpoint's)."""
    shared, own = {}, {}
    for key, value in record.config.items():
        mine = key in PER_CHECKPOINT or key.startswith("loaded/")
        (own if mine else shared)[key] = value
    return shared, own


class WatchTrackers:
    """The trackers' runs of one watch, opened when the first checkpoint is logged and kept until `close`."""

    def __init__(self, trackers: list[Tracker], options: TrackerOptions, watch_dir: Path, state: WatchState):
        self.trackers = trackers
        self.options = options
        self.watch_dir = Path(watch_dir)
        self.state = state
        self.sessions: dict[str, TrackerSession] = {}

    def log(
        self, run_dir: Path, step: int, watch_config: dict[str, Scalar], done: list[str]
    ) -> tuple[list[str], list[str]]:
        """Log one checkpoint's run at `step` to every tracker not in `done`; returns (the trackers it is now logged
        to, one line per tracker that failed). A failure (network, store) does not stop the watch: the checkpoint
        is logged again after the next one, or by the next watch."""
        todo = [tracker for tracker in self.trackers if tracker.name not in done]
        if not todo:
            return done, []
        record = run_record(run_dir, self.options.log_videos_per_task)
        shared, own = split_config(record)
        logged, errors = list(done), []
        for tracker in todo:
            try:
                session = self._session(tracker, {**shared, **watch_config})
                session.log(record, step)
                session.describe(step, own)
            except Exception as exc:
                errors.append(f"logging step {step:,} to {tracker.name} failed: {one_line(exc)}")
                continue
            logged.append(tracker.name)
        return logged, errors

    def _session(self, tracker: Tracker, config: dict[str, Scalar]) -> TrackerSession:
        if tracker.name not in self.sessions:
            resume = self.state.trackers.get(tracker.name)
            name = self.watch_dir.resolve().name
            session = tracker.open(name, config, self.options, self.watch_dir, resume=resume)
            self.sessions[tracker.name] = session
            if session.ident is not None:
                self.state.trackers[tracker.name] = session.ident
        return self.sessions[tracker.name]

    def close(self) -> list[str]:
        """Finish every open run; one line per tracker saying where its records are."""
        lines = []
        for session in self.sessions.values():
            try:
                lines.append(session.close())
            except Exception as exc:
                lines.append(f"closing a tracker run failed: {type(exc).__name__}: {exc}")
        self.sessions = {}
        return lines
