"""A run directory, loaded for reading: the typed manifest plus the episode store as a pandas DataFrame."""

from __future__ import annotations

import json
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


def read_episodes(run_dir: Path) -> pd.DataFrame:
    store = EpisodeStore(Path(run_dir))
    try:
        rows = store.rows()
    finally:
        store.close()
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["success"] = frame["success"].astype(bool)

    def parse_progress(text: Any) -> dict[str, Any]:
        try:
            value = json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            raise EvalkitError(f"{run_dir}: malformed progress JSON in the episode store: {exc}") from exc
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
