"""Episode videos for the HTML report: embedded as data URIs up to a byte budget, linked beyond it."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DEFAULT_EMBED_BUDGET = 50 * 1024 * 1024  # bytes of mp4 embedded in one HTML page


@dataclass
class VideoEntry:
    label: str
    outcome: str  # "success" | "failure" | "error"
    href: str  # relative link from the report directory to the file (always set)
    data_uri: str | None  # set when embedded
    size: int
    missing: bool = False


def _outcome(row) -> str:
    if row.termination == "error":
        return "error"
    return "success" if row.success else "failure"


def collect_videos(
    episodes: pd.DataFrame, run_dir: Path, out_dir: Path, budget: int = DEFAULT_EMBED_BUDGET
) -> list[VideoEntry]:
    """Videos of the run, one per task and outcome first, then the rest; embedded while they fit in `budget`."""
    with_video = episodes[episodes["video"].notna() & (episodes["video"] != "")]
    ordered = with_video.sort_values(["suite", "task_id", "init_state", "seed"])
    rows = list(ordered.itertuples())
    seen: set[tuple] = set()
    first, rest = [], []
    for row in rows:
        key = (row.suite, row.task_id, _outcome(row))
        (rest if key in seen else first).append(row)
        seen.add(key)
    run_root = run_dir.resolve()
    entries: list[VideoEntry] = []
    used = 0
    for row in first + rest:
        path = (run_dir / str(row.video)).resolve()
        outcome = _outcome(row)
        label = f"{row.suite} task {row.task_id} · init {row.init_state} · seed {row.seed} · {outcome} ({row.steps} steps)"
        href = os.path.relpath(path, out_dir.resolve())
        if not path.is_relative_to(run_root) or not path.is_file():  # never read outside the run directory
            entries.append(VideoEntry(label, outcome, href, None, 0, missing=True))
            continue
        size = path.stat().st_size
        data_uri = None
        if used + size <= budget:
            data_uri = "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
            used += size
        entries.append(VideoEntry(label, outcome, href, data_uri, size))
    return entries
