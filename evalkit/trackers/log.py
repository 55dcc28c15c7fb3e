"""Log a finished run to the trackers `--log` named, from its run directory."""

from __future__ import annotations

from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.trackers.base import Tracker
from evalkit.trackers.config import TrackerOptions
from evalkit.trackers.record import run_record


def log_run(
    trackers: list[Tracker], run_dir: str | Path, options: TrackerOptions, step: int = 0
) -> list[str]:
    """Log the stored run to each tracker; returns one line per tracker saying where its records are.

    A tracker that fails is one EvalkitError naming it; the run directory is untouched either way."""
    if not trackers:
        return []
    record = run_record(run_dir, options.log_videos_per_task)
    lines = []
    for tracker in trackers:
        try:
            session = tracker.open(record.name, record.config, options, Path(run_dir))
            try:
                session.log(record, step)
            finally:
                lines.append(session.close())
        except EvalkitError:
            raise
        except Exception as exc:  # a tracker's own error (network, store): one line, the run is kept
            raise EvalkitError(f"logging to {tracker.name} failed: {type(exc).__name__}: {exc}") from exc
    return lines
