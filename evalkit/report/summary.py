"""The numbers of one run: success per task and suite with Wilson intervals, terminations, steps, latency, progress.

Rates count only episodes with a final outcome (success or max_steps); error episodes are reported separately.
The average across suites follows openpi's convention: the plain mean of the suite success rates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.report.stats import wilson
from evalkit.rundir.run import Run
from evalkit.rundir.store import TERMINATIONS

CONSOLE_TASK_WIDTH = 60  # characters of an instruction in the console tables


def pct(x: float) -> float:
    return round(100.0 * x, 2) if not math.isnan(x) else math.nan


def rate_columns(k: int, n: int) -> dict[str, Any]:
    r = wilson(k, n)
    return {
        "episodes": n,
        "successes": k,
        "success_pct": pct(r.rate),
        "ci95_low_pct": pct(r.low),
        "ci95_high_pct": pct(r.high),
    }


@dataclass
class RunSummary:
    run_id: str
    policy: str
    tasks: pd.DataFrame  # suite, task_id, task, episodes, successes, success_pct, ci95_*, errors, steps
    suites: pd.DataFrame  # suite, tasks, episodes, successes, success_pct, ci95_*, errors
    average_pct: float  # mean of suite success rates (openpi), nan without usable episodes
    overall: dict[str, Any]  # pooled over every usable episode: episodes, successes, success_pct, ci95_*
    terminations: pd.DataFrame  # suite x termination counts
    steps: pd.DataFrame  # distribution of steps to success per suite
    latency: pd.DataFrame  # policy latency per suite
    progress: (
        pd.DataFrame
    )  # per task: success, mean progress and each flag's share of episodes (may be empty)
    progress_stages: pd.DataFrame  # long form: per task and flag, the share of episodes that reached it
    errors: pd.DataFrame  # the error episodes: identity and message
    episodes: pd.DataFrame  # every episode, flat (progress as JSON text), for CSV/Parquet
    provenance: dict[str, Any] = field(default_factory=dict)


def task_table(run: Run) -> pd.DataFrame:
    rows = []
    for (suite, task_id), group in run.episodes.groupby(["suite", "task_id"], sort=True):
        usable = group[group["termination"] != "error"]
        won = usable[usable["success"]]
        rows.append(
            {
                "suite": suite,
                "task_id": int(task_id),
                "task": str(group["task"].iloc[0]),
                **rate_columns(int(usable["success"].sum()), len(usable)),
                "errors": int((group["termination"] == "error").sum()),
                "median_steps_to_success": float(won["steps"].median()) if len(won) else math.nan,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "suite",
            "task_id",
            "task",
            "episodes",
            "successes",
            "success_pct",
            "ci95_low_pct",
            "ci95_high_pct",
            "errors",
            "median_steps_to_success",
        ],
    )


def suite_table(run: Run) -> pd.DataFrame:
    rows = []
    for suite, group in run.episodes.groupby("suite", sort=True):
        usable = group[group["termination"] != "error"]
        rows.append(
            {
                "suite": suite,
                "tasks": int(group["task_id"].nunique()),
                **rate_columns(int(usable["success"].sum()), len(usable)),
                "errors": int((group["termination"] == "error").sum()),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "suite",
            "tasks",
            "episodes",
            "successes",
            "success_pct",
            "ci95_low_pct",
            "ci95_high_pct",
            "errors",
        ],
    )


def termination_table(run: Run) -> pd.DataFrame:
    counts = pd.crosstab(run.episodes["suite"], run.episodes["termination"])
    counts = counts.reindex(columns=list(TERMINATIONS), fill_value=0)
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index().rename_axis(columns=None)


def steps_table(run: Run) -> pd.DataFrame:
    won = run.usable[run.usable["success"]]
    rows = []
    for suite, group in won.groupby("suite", sort=True):
        s = group["steps"].astype(float)
        rows.append(
            {
                "suite": suite,
                "successes": len(s),
                "min": s.min(),
                "p25": s.quantile(0.25),
                "median": s.median(),
                "p75": s.quantile(0.75),
                "max": s.max(),
                "mean": round(s.mean(), 1),
            }
        )
    return pd.DataFrame(rows, columns=["suite", "successes", "min", "p25", "median", "p75", "max", "mean"])


def latency_table(run: Run) -> pd.DataFrame:
    """Per suite: calls, call-weighted mean, median of episode medians, worst episode p99 and the maximum (ms)."""
    eps = run.episodes[run.episodes["latency_mean_ms"].notna()]
    rows = []
    for suite, group in eps.groupby("suite", sort=True):
        calls = group["policy_calls"].astype(float)
        weighted = (group["latency_mean_ms"] * calls).sum() / calls.sum() if calls.sum() else math.nan
        rows.append(
            {
                "suite": suite,
                "episodes": len(group),
                "policy_calls": int(calls.sum()),
                "mean_ms": round(float(weighted), 2),
                "median_of_p50_ms": round(float(group["latency_p50_ms"].median()), 2),
                "worst_p99_ms": round(float(group["latency_p99_ms"].max()), 2),
                "max_ms": round(float(group["latency_max_ms"].max()), 2),
                "mean_episode_wall_s": round(float(group["wall_s"].mean()), 2),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "suite",
            "episodes",
            "policy_calls",
            "mean_ms",
            "median_of_p50_ms",
            "worst_p99_ms",
            "max_ms",
            "mean_episode_wall_s",
        ],
    )


def merge_orders(sequences: list[list[str]]) -> list[str]:
    """One order consistent with every sequence: a new item goes before the first of its successors already
    placed (["reached", "grasped", "success"] + ["reached", "moved", "success"] -> reached, grasped, moved, success).
    """
    merged: list[str] = []
    for seq in sorted(sequences, key=len, reverse=True):  # the longest chain first: the others slot into it
        for i, item in enumerate(seq):
            if item in merged:
                continue
            later = [merged.index(s) for s in seq[i + 1 :] if s in merged]
            merged.insert(min(later) if later else len(merged), item)
    return merged


def stage_order(run: Run) -> list[str]:
    """Partial-progress flags in the order the suites' tasks reach them (recorded in the manifest), then any
    other stored flag in the order episodes first report it."""
    declared = [
        [str(s) for s in task.get("progress_stages") or []]
        for record in run.manifest.suites.values()
        for task in record.tasks
    ]
    order = merge_orders(declared)
    for progress in run.usable["progress"]:
        order += [key for key in progress if key not in order]
    return order


def stage_table(run: Run) -> pd.DataFrame:
    """Long form: per task and partial-progress flag (in stage order), the share (%) of usable episodes that reached
    it; a task has only the flags its episodes record (a drawer has no "grasped")."""
    usable = run.usable
    order = {flag: i for i, flag in enumerate(stage_order(run))}
    rows = []
    for (suite, task_id), group in usable.groupby(["suite", "task_id"], sort=True):
        flags = sorted({key for p in group["progress"] for key in p}, key=lambda f: order.get(f, len(order)))
        for flag in flags:
            reached = sum(bool(p.get(flag)) for p in group["progress"])
            rows.append(
                {
                    "suite": suite,
                    "task_id": int(task_id),
                    "stage": flag,
                    "episodes": len(group),
                    "reached_pct": pct(reached / len(group)),
                }
            )
    return pd.DataFrame(rows, columns=["suite", "task_id", "stage", "episodes", "reached_pct"])


def progress_table(run: Run, stages: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per task: success and mean progress (each episode's mean of its progress flags, `evalkit.report.outcomes`)
    side by side, and the share of episodes reaching each of the task's flags as one text column (LIBERO-10 alone
    has about 20 distinct goal predicates: a column per flag would not fit). Empty when no episode records
    progress."""
    from evalkit.report.outcomes import PROGRESS_SCORE, with_progress_scores

    stages = stage_table(run) if stages is None else stages
    if stages.empty:
        return pd.DataFrame()
    usable = with_progress_scores(run.usable)
    rows = []
    for (suite, task_id), group in usable.groupby(["suite", "task_id"], sort=True):
        mine = stages[(stages["suite"] == suite) & (stages["task_id"] == task_id)]
        scores = group[PROGRESS_SCORE].dropna()
        rows.append(
            {
                "suite": suite,
                "task_id": int(task_id),
                "episodes": len(group),
                "success_pct": pct(group["success"].mean()),
                "mean_progress_pct": pct(scores.mean()) if len(scores) else math.nan,
                "stages_reached_pct": " · ".join(f"{r.stage} {r.reached_pct:g}" for r in mine.itertuples()),
            }
        )
    return pd.DataFrame(rows)


def suite_progress_lines(progress: pd.DataFrame) -> list[str]:
    """One line per suite: success and mean progress over its episodes (episode-weighted)."""
    lines = []
    for suite, group in progress.groupby("suite", sort=True):
        n = group["episodes"].sum()
        success = (group["success_pct"] * group["episodes"]).sum() / n
        mean = (group["mean_progress_pct"] * group["episodes"]).sum() / n
        lines.append(f"{suite}: success {success:.1f}%, mean progress {mean:.1f}% ({n} episodes)")
    return lines


def error_table(run: Run) -> pd.DataFrame:
    cols = ["suite", "task_id", "init_state", "seed", "steps", "error"]
    return run.errors[cols].reset_index(drop=True)


def flat_episodes(run: Run) -> pd.DataFrame:
    import json

    flat = run.episodes.copy()
    flat["progress"] = flat["progress"].map(lambda p: json.dumps(p, sort_keys=True))
    return flat


def provenance(run: Run) -> dict[str, Any]:
    m = run.manifest
    return {
        "run_id": run.run_id,
        "run_dir": str(run.path),
        "created_at": m.created_at,
        "command": m.command,
        "policy": m.policy.name,
        "policy_fingerprint": m.policy.fingerprint,
        "policy_provenance": m.policy.provenance,
        "checkpoint": m.config.get("checkpoint"),
        "protocol_fingerprint": m.protocol_fingerprint,
        "suite_protocols": m.suite_fingerprints(),
        "config": m.config,
        "versions": m.versions,
        "git_commit": m.git_commit,
        "host": m.host,
        "execution": m.execution,
        "sessions": [asdict(s) for s in m.sessions],
    }


def summarize(run: Run) -> RunSummary:
    suites = suite_table(run)
    tested = suites[suites["episodes"] > 0]
    rates = 100.0 * tested["successes"] / tested["episodes"]
    usable = run.usable
    stages = stage_table(run)
    return RunSummary(
        run_id=run.run_id,
        policy=run.policy_label(),
        tasks=task_table(run),
        suites=suites,
        average_pct=round(float(rates.mean()), 2) if len(rates) else math.nan,
        overall=rate_columns(int(usable["success"].sum()), len(usable)),
        terminations=termination_table(run),
        steps=steps_table(run),
        latency=latency_table(run),
        progress=progress_table(run, stages),
        progress_stages=stages,
        errors=error_table(run),
        episodes=flat_episodes(run),
        provenance=provenance(run),
    )


def console_summary(run_dir: str | Path) -> str:
    """The per-task and per-suite tables `evalkit eval` prints when a run ends (errors left out of rates)."""
    from evalkit.report.formatting import markdown_table, shorten_middle, with_ci_column
    from evalkit.rundir.run import load_run

    run = load_run(run_dir)
    tasks, suites = task_table(run), suite_table(run)
    tasks["task"] = tasks["task"].map(lambda text: shorten_middle(text, CONSOLE_TASK_WIDTH))
    parts = [markdown_table(with_ci_column(tasks)), "", markdown_table(with_ci_column(suites))]
    if len(suites) > 1:
        parts.append(f"\naverage over suites (mean of suite rates): {suites['success_pct'].mean():.1f}%")
    return "\n".join(parts)
