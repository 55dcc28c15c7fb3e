"""The episode store: one SQLite file per run directory, written the moment each episode ends.

Rows are keyed by the episode identity (suite, task, init state, seed), so re-running the same command skips what is
done and never duplicates a row. Error rows are retried on resume and replaced. Every row carries the protocol
fingerprint it ran under and the policy identity that produced it, and a writer refuses a store that holds rows of
another protocol or policy, with or without a manifest beside it. A file that is not an evalkit store is never
touched: it is checked read-only before anything is written.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from evalkit.core.episode import EpisodeResult, EpisodeSpec
from evalkit.core.errors import EvalkitError

DB_NAME = "episodes.sqlite"
APPLICATION_ID = 0x45564B31  # "EVK1" in the SQLite header: marks a file as an evalkit episode store
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    run_id TEXT NOT NULL,
    suite TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    task TEXT NOT NULL,
    init_state INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    protocol_fingerprint TEXT NOT NULL,
    policy TEXT NOT NULL,
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
    "protocol_fingerprint",
    "policy",
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


@dataclass(frozen=True)
class RunIdentity:
    """What every row a writer adds is stamped with, and what rows already stored must match."""

    run_id: str
    policy: str  # PolicyMeta.identity: name@fingerprint
    protocols: dict[str, str]  # suite -> protocol fingerprint


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    return sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)


def check_ours(path: Path) -> None:
    """Refuse, read-only, a file that is not an evalkit episode store (or is unreadable)."""
    try:
        db = _connect(path, readonly=True)
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise EvalkitError(f"cannot read episode store {path}: {exc}") from exc
    if app_id != APPLICATION_ID:
        raise EvalkitError(
            f"{path} is not an evalkit episode store (or one written before store schema {SCHEMA_VERSION}); "
            "nothing was changed: choose another --out"
        )
    if version != SCHEMA_VERSION:
        raise EvalkitError(f"{path} has store schema {version}; this evalkit reads schema {SCHEMA_VERSION}")


class EpisodeStore:
    """Append-only (per episode identity) record of finished episodes.

    With an `identity` it is the run's writer; without one it opens read-only (reports).
    """

    def __init__(self, run_dir: Path, identity: RunIdentity | None = None):
        self.path = Path(run_dir) / DB_NAME
        self.identity = identity
        exists = self.path.exists()
        if identity is None and not exists:
            raise EvalkitError(f"no episode store at {self.path}")
        if exists:
            check_ours(self.path)
        try:
            self._db = _connect(self.path, readonly=identity is None)
            if identity is not None:
                if not exists:  # marked as ours in the same transaction that creates it
                    self._db.executescript(
                        f"BEGIN; PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={SCHEMA_VERSION};"
                        f"{SCHEMA} COMMIT;"
                    )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise EvalkitError(f"cannot open episode store {self.path}: {exc}") from exc
        if identity is not None:
            self._check_rows(identity)

    def _check_rows(self, identity: RunIdentity) -> None:
        """A store holding rows of another protocol or policy is another experiment: refuse to mix."""
        groups = self._query(
            "SELECT suite, protocol_fingerprint, policy, COUNT(*) FROM episodes GROUP BY 1, 2, 3"
        )
        for suite, protocol, policy, count in groups:
            if policy != identity.policy:
                raise EvalkitError(
                    f"{self.path} holds {count} episode(s) of policy {policy}; this run is {identity.policy}: "
                    "choose another --out"
                )
            expected = identity.protocols.get(suite)
            if expected is not None and protocol != expected:
                raise EvalkitError(
                    f"{self.path} holds {count} episode(s) of {suite} under protocol {protocol}; this run is "
                    f"{expected}: choose another --out"
                )

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise EvalkitError(f"cannot read episode store {self.path}: {exc}") from exc

    def add(self, result: EpisodeResult) -> None:
        if self.identity is None:
            raise EvalkitError(f"episode store {self.path} is open read-only")
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
            self.identity.run_id,
            spec.suite,
            spec.task_id,
            result.task,
            spec.init_state,
            spec.seed,
            self.identity.protocols[spec.suite],
            self.identity.policy,
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
        rows = self._query(
            "SELECT suite, task_id, init_state, seed FROM episodes WHERE termination != 'error'"
        )
        return {EpisodeSpec(*row) for row in rows}

    def rows(self) -> list[dict]:
        cur = self._query(
            f"SELECT {', '.join(COLUMNS)} FROM episodes ORDER BY suite, task_id, init_state, seed"
        )
        return [dict(zip(COLUMNS, row, strict=True)) for row in cur]

    def close(self) -> None:
        self._db.close()
