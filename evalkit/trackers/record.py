"""What a tracker logs about one run, computed from its run directory (never from the runner): success with Wilson
intervals per suite, overall and per task, episodes per hour, policy latency, the run's config and provenance, and
a few of its episode videos."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from evalkit.report.summary import RunSummary, summarize
from evalkit.rundir.run import Run, load_run

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class EpisodeVideo:
    # e.g. videos/droid_demo/task03/init000
    tag: str
    path: Path
    caption: str


@dataclass
class RunRecord:
    # the run directory's name
    name: str
    # finite values only
    metrics: dict[str, float]
    # flat: protocol fingerprint, policy and checkpoint provenance, run options
    config: dict[str, Scalar]
    videos: list[EpisodeVideo] = field(default_factory=list)


def rate_metrics(prefix: str, row: Any) -> dict[str, float]:
    return {
        prefix: row["success_pct"],
        f"{prefix}_ci95_low": row["ci95_low_pct"],
        f"{prefix}_ci95_high": row["ci95_high_pct"],
    }


def episodes_per_hour(run: Run) -> float:
    """Episodes run per hour of session time (sessions that recorded their end)."""
    seconds, episodes = 0.0, 0
    for session in run.manifest.sessions:
        if session.ended_at is None:
            continue
        span = datetime.fromisoformat(session.ended_at) - datetime.fromisoformat(session.started_at)
        seconds += span.total_seconds()
        episodes += session.episodes_run
    return 3600.0 * episodes / seconds if seconds > 0 else math.nan


def run_metrics(run: Run, summary: RunSummary) -> dict[str, float]:
    metrics = rate_metrics("success_pct/overall", summary.overall)
    metrics["success_pct/average_of_suites"] = summary.average_pct
    for _, row in summary.suites.iterrows():
        metrics |= rate_metrics(f"success_pct/{row['suite']}", row)
    for _, row in summary.tasks.iterrows():
        metrics[f"task_success_pct/{row['suite']}/task{int(row['task_id']):02d}"] = row["success_pct"]
    metrics["episodes"] = float(len(run.usable))
    metrics["error_episodes"] = float(len(run.errors))
    metrics["episodes_per_hour"] = episodes_per_hour(run)
    for _, row in summary.latency.iterrows():
        suite = row["suite"]
        metrics[f"latency_ms/{suite}/mean"] = row["mean_ms"]
        metrics[f"latency_ms/{suite}/median_of_p50"] = row["median_of_p50_ms"]
        metrics[f"latency_ms/{suite}/worst_p99"] = row["worst_p99_ms"]
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def run_config(run: Run) -> dict[str, Scalar]:
    """The run's options and provenance, flat (secrets never reach the manifest, so none reach a tracker)."""
    m = run.manifest
    config: dict[str, Scalar] = {
        "run_id": m.run_id,
        "run_dir": str(run.path),
        "policy": m.policy.name,
        "policy_fingerprint": m.policy.fingerprint,
        "checkpoint": m.config.get("checkpoint"),
        "protocol_fingerprint": m.protocol_fingerprint,
        "git_commit": m.git_commit,
        "evalkit_version": m.versions.get("evalkit"),
    }
    config |= {f"protocol/{suite}": fp for suite, fp in m.suite_fingerprints().items()}
    config |= {f"loaded/{name}": fp for name, fp in m.policy.provenance.items()}
    for key, value in m.config.items():
        if key not in config and (value is None or isinstance(value, str | int | float | bool)):
            config[f"option/{key}"] = value
    return config


def run_videos(run: Run, per_task: int) -> list[EpisodeVideo]:
    """The first `per_task` filmed episodes of each task (by init state) whose file exists."""
    filmed = run.episodes[run.episodes["video"].notna()].sort_values(["suite", "task_id", "init_state"])
    videos = []
    for _, group in filmed.groupby(["suite", "task_id"], sort=True):
        for _, row in group.head(max(0, per_task)).iterrows():
            path = run.path / str(row["video"])
            if path.is_file():
                outcome = "success" if row["success"] else row["termination"]
                videos.append(
                    EpisodeVideo(
                        tag=f"videos/{row['suite']}/task{int(row['task_id']):02d}/init{int(row['init_state']):03d}",
                        path=path,
                        caption=f"{row['task']} ({outcome}, {int(row['steps'])} steps)",
                    )
                )
    return videos


def run_record(run_dir: str | Path, videos_per_task: int = 1) -> RunRecord:
    run = load_run(run_dir)
    return RunRecord(
        name=run.path.resolve().name,
        metrics=run_metrics(run, summarize(run)),
        config=run_config(run),
        videos=run_videos(run, videos_per_task),
    )
