"""Small helpers shared by tests: read a run directory as the reporter would."""

import json
import sqlite3
from pathlib import Path


def read_rows(run_dir: Path) -> list[dict]:
    db = sqlite3.connect(run_dir / "episodes.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [
            dict(r) for r in db.execute("SELECT * FROM episodes ORDER BY suite, task_id, init_state, seed")
        ]
    finally:
        db.close()


def read_manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


# what makes two runs of the same episodes the same: identity and outcome (not wall time, latency or run id)
OUTCOME_COLUMNS = [
    "suite",
    "task_id",
    "init_state",
    "seed",
    "task",
    "success",
    "steps",
    "termination",
    "policy_calls",
]
