"""The episode store: one SQLite file per run directory, written the moment each episode ends.

Rows are keyed by the episode identity (suite, task, init state, seed), so re-running the same command skips what is
done and never duplicates a row. Error rows are retried on resume and replaced.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from evalkit.episode import EpisodeResult, EpisodeSpec
from evalkit.errors import EvalkitError

DB_NAME = "episodes.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    run_id TEXT NOT NULL,
    suite TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    task TEXT NOT NULL,
    init_state INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    success INTEGER NOT NULL,
    steps INTEGER NOT NULL,
    termination TEXT NOT NULL CHECK (termination IN ('success', 'max_steps', 'error')),
    error TEXT,
    wall_s REAL NOT NULL,
    policy_calls INTEGER NOT NULL,
    latency_mean_ms REAL,
    latency_p50_ms REAL,
    latency_p99_ms REAL,
    latency_max_ms REAL,
    progress TEXT NOT NULL DEFAULT '{}',
    video TEXT,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (suite, task_id, init_state, seed)
);
"""

COLUMNS = (
    "run_id",
    "suite",
    "task_id",
    "task",
    "init_state",
    "seed",
    "success",
    "steps",
    "termination",
    "error",
    "wall_s",
    "policy_calls",
    "latency_mean_ms",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "progress",
    "video",
    "finished_at",
)


class EpisodeStore:
    """Append-only (per episode identity) record of finished episodes."""

    def __init__(self, run_dir: Path, run_id: str | None = None, readonly: bool = False):
        self.path = Path(run_dir) / DB_NAME
        self.run_id = run_id
        if readonly and not self.path.exists():
            raise EvalkitError(f"no episode store at {self.path}")
        try:
            uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
            self._db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise EvalkitError(f"cannot open episode store {self.path}: {exc}") from exc

    def add(self, result: EpisodeResult) -> None:
        spec = result.spec
        lat = np.asarray(result.latency_ms, dtype=float)
        stats = (
            (
                float(lat.mean()),
                float(np.percentile(lat, 50)),
                float(np.percentile(lat, 99)),
                float(lat.max()),
            )
            if lat.size
            else (None, None, None, None)
        )
        row = (
            self.run_id,
            spec.suite,
            spec.task_id,
            result.task,
            spec.init_state,
            spec.seed,
            int(result.success),
            result.steps,
            result.termination,
            result.error,
            result.wall_s,
            result.policy_calls,
            *stats,
            json.dumps(result.progress, sort_keys=True),
            result.video,
            datetime.now(UTC).isoformat(timespec="seconds"),
        )
        try:
            self._db.execute(
                f"INSERT OR REPLACE INTO episodes ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                row,
            )
        except (
            sqlite3.Error
        ) as exc:  # e.g. disk full: earlier rows stay intact (WAL, one transaction per row)
            raise EvalkitError(f"cannot write episode {spec.episode_id} to {self.path}: {exc}") from exc

    def finished(self) -> set[EpisodeSpec]:
        """Episodes with a final (non-error) outcome; error rows are retried on resume."""
        rows = self._db.execute(
            "SELECT suite, task_id, init_state, seed FROM episodes WHERE termination != 'error'"
        ).fetchall()
        return {EpisodeSpec(*row) for row in rows}

    def rows(self) -> list[dict]:
        cur = self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM episodes ORDER BY suite, task_id, init_state, seed"
        )
        return [dict(zip(COLUMNS, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        self._db.close()
