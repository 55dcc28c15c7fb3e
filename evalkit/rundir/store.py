"""The episode store: one SQLite file per run directory, written the moment each episode ends.

Rows are keyed by the episode identity (suite, task, init state, seed), so re-running the same command skips what is
done and never duplicates a row. Error rows are retried on resume and replaced. Every row carries the protocol
fingerprint it ran under and the policy identity that produced it, and a writer refuses a store that holds rows of
another protocol or policy, with or without a manifest beside it. A file that is not an evalkit store is never
touched: it is checked read-only before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from evalkit.core.episode import EpisodeResult, EpisodeSpec, Termination
from evalkit.core.errors import EvalkitError

DB_NAME = "episodes.sqlite"
# "EVK1" in the SQLite header: marks a file as an evalkit episode store
APPLICATION_ID = 0x45564B31
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Column:
    """One column of the `episodes` table: the one description the SQL schema, the insert and the readers'
    type checks are generated from."""

    name: str
    type: Literal["TEXT", "INTEGER", "REAL"]
    nullable: bool = False
    # SQL after the type and NOT NULL, e.g. a CHECK or a DEFAULT
    extra: str = ""

    def sql(self) -> str:
        return " ".join(
            p for p in (self.name, self.type, "" if self.nullable else "NOT NULL", self.extra) if p
        )


TERMINATIONS: tuple[str, ...] = get_args(Termination)
TABLE = (
    Column("run_id", "TEXT"),
    Column("suite", "TEXT"),
    Column("task_id", "INTEGER"),
    Column("task", "TEXT"),
    Column("init_state", "INTEGER"),
    Column("seed", "INTEGER"),
    Column("protocol_fingerprint", "TEXT"),
    Column("policy", "TEXT"),
    Column("success", "INTEGER"),
    Column("steps", "INTEGER"),
    Column("termination", "TEXT", extra=f"CHECK (termination IN {TERMINATIONS!r})"),
    Column("error", "TEXT", nullable=True),
    Column("wall_s", "REAL"),
    Column("policy_calls", "INTEGER"),
    Column("latency_mean_ms", "REAL", nullable=True),
    Column("latency_p50_ms", "REAL", nullable=True),
    Column("latency_p99_ms", "REAL", nullable=True),
    Column("latency_max_ms", "REAL", nullable=True),
    Column("progress", "TEXT", extra="DEFAULT '{}'"),
    Column("video", "TEXT", nullable=True),
    Column("finished_at", "TEXT"),
)
KEY = ("suite", "task_id", "init_state", "seed")
COLUMNS = tuple(c.name for c in TABLE)
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS episodes (\n    "
    + ",\n    ".join([*(c.sql() for c in TABLE), f"PRIMARY KEY ({', '.join(KEY)})"])
    + "\n);\n"
)


@dataclass(frozen=True)
class RunIdentity:
    """What every row a writer adds is stamped with, and what rows already stored must match."""

    run_id: str
    # PolicyMeta.identity: name@fingerprint
    policy: str
    # suite -> protocol fingerprint
    protocols: dict[str, str]


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


def stored_run_id(run_dir: Path) -> str | None:
    """The run id the store's rows carry (read-only), or None when there is no store or no row yet. A run whose
    manifest was lost keeps its identity: a new manifest takes the id its rows were stamped with."""
    path = Path(run_dir) / DB_NAME
    if not path.exists():
        return None
    check_ours(path)
    db = _connect(path, readonly=True)
    try:
        ids = [r[0] for r in db.execute("SELECT DISTINCT run_id FROM episodes LIMIT 2").fetchall()]
    except sqlite3.Error as exc:
        raise EvalkitError(f"cannot read episode store {path}: {exc}") from exc
    finally:
        db.close()
    if len(ids) > 1:
        raise EvalkitError(
            f"{path} holds rows of several runs ({', '.join(map(str, ids))}): choose another --out"
        )
    return str(ids[0]) if ids else None


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
        latency = {
            "latency_mean_ms": float(lat.mean()) if lat.size else None,
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
            "latency_max_ms": float(lat.max()) if lat.size else None,
        }
        row = {
            "run_id": self.identity.run_id,
            "suite": spec.suite,
            "task_id": spec.task_id,
            "task": result.task,
            "init_state": spec.init_state,
            "seed": spec.seed,
            "protocol_fingerprint": self.identity.protocols[spec.suite],
            "policy": self.identity.policy,
            "success": int(result.success),
            "steps": result.steps,
            "termination": result.termination,
            "error": result.error,
            "wall_s": result.wall_s,
            "policy_calls": result.policy_calls,
            **latency,
            "progress": json.dumps(result.progress, sort_keys=True),
            "video": result.video,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            self._db.execute(
                f"INSERT OR REPLACE INTO episodes ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                tuple(row[name] for name in COLUMNS),
            )
        # e.g. disk full: earlier rows stay intact (WAL, one transaction per row)
        except sqlite3.Error as exc:
            raise EvalkitError(f"cannot write episode {spec.episode_id} to {self.path}: {exc}") from exc

    def finished(self) -> set[EpisodeSpec]:
        """Episodes with a final (non-error) outcome; error rows are retried on resume."""
        rows = self._query(
            "SELECT suite, task_id, init_state, seed FROM episodes WHERE termination != 'error'"
        )
        return {EpisodeSpec(*row) for row in rows}

    def rows(self) -> list[dict]:
        cur = self._query(f"SELECT {', '.join(COLUMNS)} FROM episodes ORDER BY {', '.join(KEY)}")
        return [dict(zip(COLUMNS, row, strict=True)) for row in cur]

    def close(self) -> None:
        """Close; a writer first leaves WAL mode, so a finished run holds only `episodes.sqlite` and readers,
        which open it read-only and so cannot remove WAL files, create none."""
        if self.identity is not None:
            # a reader still inside it: the WAL stays until the next writer closes, nothing is lost
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.close()
