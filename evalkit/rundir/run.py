"""A run directory, loaded for reading: the typed manifest plus the episode store as a pandas DataFrame."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.core.errors import EvalkitError
from evalkit.rundir.manifest import MANIFEST_NAME, Manifest, read_manifest
from evalkit.rundir.store import COLUMNS, DB_NAME, EpisodeStore

EPISODE_KEY = ["suite", "task_id", "init_state", "seed"]


@dataclass
class Run:
    """One run directory, loaded."""

    path: Path
    manifest: Manifest
    episodes: pd.DataFrame  # one row per stored episode, store columns + `progress` parsed into a dict

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def usable(self) -> pd.DataFrame:
        """Episodes with a final outcome (success or max_steps): the ones rates are computed from."""
        return self.episodes[self.episodes["termination"] != "error"]

    @property
    def errors(self) -> pd.DataFrame:
        return self.episodes[self.episodes["termination"] == "error"]

    def suite_fingerprints(self) -> dict[str, str]:
        """Protocol fingerprint per suite, from the manifest."""
        return self.manifest.suite_fingerprints()

    def suite_protocol(self, suite: str) -> dict[str, Any]:
        record = self.manifest.suites.get(suite)
        return dict(record.protocol) if record else {}

    def policy_label(self) -> str:
        """Checkpoint identity: policy name, checkpoint path (if any) and the policy fingerprint."""
        policy = self.manifest.policy
        label = policy.name
        checkpoint = self.manifest.config.get("checkpoint")
        if checkpoint:
            label += f" @ {checkpoint}"
        if policy.fingerprint:
            label += f" [{policy.fingerprint[:12]}]"
        return label


def is_run_dir(path: Path) -> bool:
    return (path / DB_NAME).is_file() and (path / MANIFEST_NAME).is_file()


# SQLite stores any value in any column, so an edited or damaged store can hold text where the schema says INTEGER.
INTEGER_COLUMNS = ("task_id", "init_state", "seed", "success", "steps", "policy_calls")
REAL_COLUMNS = ("wall_s", "latency_mean_ms", "latency_p50_ms", "latency_p99_ms", "latency_max_ms")
NULLABLE_COLUMNS = ("error", "video", "latency_mean_ms", "latency_p50_ms", "latency_p99_ms", "latency_max_ms")


def check_row_types(row: dict[str, Any], where: Path) -> None:
    """Refuse a row whose values do not have the schema's types (one line naming the column)."""
    for column, value in row.items():
        if value is None and column in NULLABLE_COLUMNS:
            continue
        if column in INTEGER_COLUMNS:
            ok = isinstance(value, int)
        elif column in REAL_COLUMNS:
            ok = isinstance(value, int | float) and math.isfinite(value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise EvalkitError(
                f"{where}: corrupt episode store: column {column} holds {repr(value)[:40]} "
                f"(episode {row.get('suite')!r:.60}/{row.get('task_id')!r}/{row.get('init_state')!r})"
            )


def read_episodes(run_dir: Path) -> pd.DataFrame:
    store = EpisodeStore(Path(run_dir))
    try:
        rows = store.rows()
    finally:
        store.close()
    for row in rows:
        check_row_types(row, store.path)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["success"] = frame["success"].astype(bool)

    def parse_progress(text: Any) -> dict[str, Any]:
        try:
            value = json.loads(text or "{}")
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise EvalkitError(f"{run_dir}: malformed progress JSON in the episode store: {reason}") from None
        return value if isinstance(value, dict) else {}

    frame["progress"] = frame["progress"].map(parse_progress)
    return frame


def load_run(run_dir: str | Path) -> Run:
    path = Path(run_dir)
    if not path.is_dir():
        raise EvalkitError(f"run directory {path} does not exist")
    if not (path / DB_NAME).is_file():
        raise EvalkitError(f"{path} is not a run directory: no {DB_NAME}")
    manifest = read_manifest(path)
    if manifest is None:
        raise EvalkitError(f"{path} is not a run directory: no {MANIFEST_NAME}")
    return Run(path=path, manifest=manifest, episodes=read_episodes(path))


def find_run_dirs(roots: list[Path]) -> list[Path]:
    """Run directories at or below each root (a root may be a run directory itself)."""
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            raise EvalkitError(f"results directory {root} does not exist")
        if is_run_dir(root):
            found.append(root)
            continue
        found.extend(sorted(p.parent for p in root.rglob(DB_NAME) if is_run_dir(p.parent)))
    return list(dict.fromkeys(p.resolve() for p in found))
