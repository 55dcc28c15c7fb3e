"""Episode videos for the HTML report: embedded as data URIs up to a byte budget, linked beyond it."""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
    poster: str | None = None  # JPEG data URI of the first informative frame
    instruction: str = ""
    wide: bool = False  # several camera views side by side: shown across the whole row


POSTER_MIN_STD = 8.0  # pixel standard deviation below which a frame is blank (a flat grey or black render)
POSTER_SCAN_FRAMES = 150


def poster_frame(path: Path) -> np.ndarray | None:
    """The first informative frame of a video: the first whose picture below the caption band is not flat
    (renders can start grey or black); the most varied of the first frames if none is; None if unreadable."""
    import imageio.v2 as imageio

    best, best_std = None, -1.0
    try:
        reader = imageio.get_reader(path)
    except (OSError, ValueError, RuntimeError):
        return None
    try:
        for i, frame in enumerate(reader):
            picture = np.asarray(frame)[frame.shape[0] // 3 :]  # below the burned-in caption
            std = float(picture.std())
            if std >= POSTER_MIN_STD:
                return np.asarray(frame)
            if std > best_std:
                best, best_std = np.asarray(frame), std
            if i + 1 >= POSTER_SCAN_FRAMES:
                break
    except (OSError, ValueError, RuntimeError, IndexError):
        pass
    finally:
        reader.close()
    return best


def poster_uri(frame: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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
    entries: list[VideoEntry] = []
    used = 0
    for row in first + rest:
        entry = video_entry(row, run_dir, out_dir, budget - used)
        used += entry.size if entry.data_uri else 0
        entries.append(entry)
    return entries


def video_entry(row, run_dir: Path, out_dir: Path, budget: int) -> VideoEntry:
    """One episode's video, embedded if it fits in `budget` bytes, with its poster; never read outside the run."""
    path = (run_dir / str(row.video)).resolve()
    outcome = _outcome(row)
    label = f"{row.suite} task {row.task_id} · init {row.init_state} · seed {row.seed} · {outcome} ({row.steps} steps)"
    href = os.path.relpath(path, out_dir.resolve())
    if not path.is_relative_to(run_dir.resolve()) or not path.is_file():
        return VideoEntry(label, outcome, href, None, 0, missing=True, instruction=str(row.task))
    size = path.stat().st_size
    data_uri = None
    if size <= budget:
        data_uri = "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    frame = poster_frame(path) if data_uri else None  # linked videos stay links: a page of 2,000 stays light
    return VideoEntry(
        label,
        outcome,
        href,
        data_uri,
        size,
        poster=None if frame is None else poster_uri(frame),
        instruction=str(row.task),
        wide=frame is not None and frame.shape[1] > 2 * frame.shape[0],
    )


@dataclass
class Gallery:
    """The videos of a page as a thumbnail grid: the entries, one sentence on what is embedded or linked, and
    whether the frames are wide camera strips (DROID-style three views side by side), which get wider tiles."""

    entries: list[VideoEntry]
    note: str
    wide: bool


def gallery(entries: list[VideoEntry], budget: int) -> Gallery:
    embedded = [v for v in entries if v.data_uri]
    missing = [v for v in entries if v.missing]
    linked = len(entries) - len(embedded) - len(missing)
    mb = sum(v.size for v in embedded) / 2**20
    parts = [f"{len(entries)} video(s)"]
    if embedded:
        parts.append(f"{len(embedded)} embedded ({mb:.2f} MB)")
    if linked:
        parts.append(f"{linked} linked: over the {budget / 2**20:.0f} MB embedding budget (--embed-mb)")
    if missing:
        parts.append(f"{len(missing)} missing on disk")
    note = f"{parts[0]}: {', '.join(parts[1:])}. Click a video to play it." if entries else ""
    wide = sum(v.wide for v in entries) * 2 > len(embedded) > 0
    return Gallery(entries, note, wide)
