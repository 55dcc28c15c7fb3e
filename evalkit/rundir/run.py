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
from evalkit.rundir.store import COLUMNS, DB_NAME, KEY, TABLE, Column, EpisodeStore

# The columns that identify an episode (suite, task_id, init_state, seed): runs pair on them.
IDENTITY = list(KEY)


@dataclass
class Run:
    """One run directory, loaded."""

    path: Path
    manifest: Manifest
    # one row per stored episode: the store's columns, `progress` parsed into a dict
    episodes: pd.DataFrame

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
        """Checkpoint identity: policy name, checkpoint path (if any) and the policy fingerprint (if it has one:
        built-in policies such as oracle and zero have none)."""
        policy = self.manifest.policy
        label = policy.name
        checkpoint = self.manifest.config.get("checkpoint")
        if checkpoint:
            label += f" @ {checkpoint}"
        if policy.fingerprint and policy.fingerprint != "none":
            label += f" [{policy.fingerprint[:12]}]"
        return label


def is_run_dir(path: Path) -> bool:
    return (path / DB_NAME).is_file() and (path / MANIFEST_NAME).is_file()


# SQLite stores any value in any column, so an edited or damaged store can hold text where the schema says INTEGER.
def _type_ok(column: Column, value: Any) -> bool:
    if value is None:
        return column.nullable
    if column.type == "INTEGER":
        return isinstance(value, int)
    if column.type == "REAL":
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, str)


def check_row_types(row: dict[str, Any], where: Path) -> None:
    """Refuse a row whose values do not have the schema's types (one line naming the column)."""
    for column in TABLE:
        value = row.get(column.name)
        if not _type_ok(column, value):
            raise EvalkitError(
                f"{where}: corrupt episode store: column {column.name} holds {repr(value)[:40]} "
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
    episodes = read_episodes(path)
    check_rows_match_manifest(episodes, manifest, path)
    return Run(path=path, manifest=manifest, episodes=episodes)


def check_rows_match_manifest(episodes: pd.DataFrame, manifest: Manifest, where: Path) -> None:
    """Every row is stamped with its run id, policy identity and protocol fingerprint when it is written; a
    manifest that disagrees with them was edited or copied from another run, and is not trusted."""
    expected = {
        "run_id": lambda suite: manifest.run_id,
        "policy": lambda suite: manifest.policy.identity,
        "protocol_fingerprint": lambda suite: manifest.suite_fingerprints().get(suite),
    }
    for column, value_for in expected.items():
        for (suite, stamped), count in episodes.groupby(["suite", column]).size().items():
            claimed = value_for(suite)
            if stamped != claimed:
                raise EvalkitError(
                    f"{where}: {count} episode row(s) of {str(suite)[:60]} carry {column} {str(stamped)[:80]}, "
                    f"but {MANIFEST_NAME} says {str(claimed)[:80]}: the manifest was edited or belongs to another run"
                )


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
