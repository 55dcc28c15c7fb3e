"""The Python API: `from evalkit import evaluate`, for notebooks and training loops.

    result = evaluate(model_fn, suite="libero_spatial", episodes_per_task=5, workers=4)
    result.summary      # per suite: episodes, successes, success_pct, 95% Wilson interval, errors
    result.episodes     # one row per episode (pandas DataFrame, the store's columns)

`policy` is an evalkit `Policy`, a `PolicyOptions`, a policy name (`zero`, `oracle`, ...), a `ws://` address, a
checkpoint directory or hub id (a pi0.5 checkpoint), or a plain function / torch module called on batched wire
observations (`evalkit.policies.function`). Every `evalkit eval` option is a keyword argument (`tasks=[0, 1]`,
`max_steps=...`, `seed=...`, `video="failures"`, `checkpoint`'s `config=...`, `log=["wandb"]`, ...). With `out` the run
directory (store, manifest, report) is the one `evalkit eval --out` writes, and re-running resumes it; without it the
run goes to a temporary directory, removed afterwards unless `keep=True`.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Policy, PolicyOptions
from evalkit.runner.config import EvalConfig
from evalkit.trackers.config import TrackerOptions

POLICY_OPTION_NAMES = {f.name for f in dataclasses.fields(PolicyOptions)} - {
    "name",
    "embodiment",
    "action_dim",
}
# `training_step` is `step` here
RUN_OPTION_NAMES = {f.name for f in dataclasses.fields(EvalConfig)} - {
    "suite",
    "policy",
    "out",
    "training_step",
}
TRACKER_OPTION_NAMES = {f.name for f in dataclasses.fields(TrackerOptions)}


@dataclass
class EvalResult:
    """What `evaluate` returns; the frames are read back from the run's store, as the reports read them."""

    # one row per episode: suite, task_id, init_state, seed, success, steps, termination, ...
    episodes: pd.DataFrame
    # per suite: tasks, episodes, successes, success_pct, ci95_low_pct, ci95_high_pct, errors
    summary: pd.DataFrame
    # the same per task
    tasks: pd.DataFrame
    # pooled over all episodes with an outcome: episodes, successes, success_pct, ci95_*
    overall: dict[str, Any]
    # mean of the suite rates (openpi's convention)
    average_pct: float
    # None when the temporary run directory was removed
    run_dir: Path | None
    # where each tracker's records went
    logged: list[str]

    @property
    def success_pct(self) -> float:
        return float(self.overall["success_pct"])


def split_options(
    options: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Keyword arguments -> (policy options, run options, tracker options, function-policy options)."""
    groups: tuple[dict[str, Any], ...] = ({}, {}, {}, {})
    function_names = {"policy_name", "cameras", "fingerprint"}
    for key, value in options.items():
        for group, names in zip(
            groups, (POLICY_OPTION_NAMES, RUN_OPTION_NAMES, TRACKER_OPTION_NAMES, function_names), strict=True
        ):
            if key in names:
                group[key] = value
                break
        else:
            known = sorted(POLICY_OPTION_NAMES | RUN_OPTION_NAMES | TRACKER_OPTION_NAMES | function_names)
            raise TypeError(
                f"evaluate() got an unexpected keyword argument {key!r}; options: {', '.join(known)}"
            )
    return groups  # type: ignore[return-value]


def policy_of(
    policy: Any, policy_options: dict[str, Any], function_options: dict[str, Any], cameras: Sequence[str]
):
    """(a ready-made Policy or None, the PolicyOptions to record) for what the caller passed."""
    from evalkit.policies.function import FunctionPolicy
    from evalkit.policies.registry import policy_names

    if isinstance(policy, PolicyOptions):
        return None, dataclasses.replace(policy, **policy_options)
    if isinstance(policy, str | Path):
        text = str(policy)
        if text.startswith(("ws://", "wss://")) or text in policy_names():
            return None, PolicyOptions(name=text, **policy_options)
        return None, PolicyOptions(name="pi05", checkpoint=text, **policy_options)
    if policy_options:
        raise TypeError(
            f"{', '.join(policy_options)} apply to a named policy or checkpoint, not to {type(policy).__name__}"
        )
    if isinstance(policy, Policy):
        return policy, PolicyOptions(name=policy.meta.name)
    if callable(policy):
        fn = FunctionPolicy(
            policy,
            cameras=function_options.get("cameras", cameras),
            name=function_options.get("policy_name", "function"),
            fingerprint=function_options.get("fingerprint"),
        )
        return fn, PolicyOptions(name=fn.meta.name)
    raise TypeError(
        f"policy must be a Policy, a name, a checkpoint path, a ws:// address or a callable, not {type(policy).__name__}"
    )


def evaluate(
    policy: Any,
    suite: str = "libero_spatial",
    episodes_per_task: int | None = 5,
    workers: int | None = 4,
    out: str | Path | None = None,
    *,
    keep: bool = False,
    progress: bool = False,
    step: int = 0,
    **options: Any,
) -> EvalResult:
    """Evaluate `policy` on `suite` and return its episodes and rates (see the module docstring).

    `episodes_per_task=None` runs the protocol's own number (50 for openpi LIBERO). `step` is the training step the
    trackers log the numbers at. Raises EvalkitError (with the CLI's one-line message) on bad input."""
    from evalkit.report.report import write_report
    from evalkit.report.summary import summarize
    from evalkit.rundir.run import load_run
    from evalkit.runner.evaluate import evaluate as run_evaluation
    from evalkit.runner.evaluate import resolve_suites
    from evalkit.trackers.base import check_trackers
    from evalkit.trackers.log import log_run

    policy_options, run_options, tracker_options, function_options = split_options(options)
    if "tasks" in run_options and run_options["tasks"] is not None:
        run_options["tasks"] = tuple(run_options["tasks"])
    tracking = TrackerOptions(**tracker_options)
    trackers = check_trackers(tracking)
    probe = EvalConfig(suite=suite, policy="zero", episodes_per_task=episodes_per_task, **run_options)
    cameras = [c for s in resolve_suites(probe) for c in s.protocol.wire_cameras]
    ready, recorded = policy_of(policy, policy_options, function_options, list(dict.fromkeys(cameras)))
    if out is None and trackers and tracking.log_dir is None:
        raise EvalkitError(
            "without out=, pass log_dir= too: tracker files must outlive the temporary run directory"
        )
    temporary = Path(tempfile.mkdtemp(prefix="evalkit-")) if out is None else None
    run_dir = Path(out) if out is not None else temporary / "run"
    config = probe.replace(policy=recorded, out=run_dir, workers=workers)
    try:
        run_evaluation(config, progress=progress, command=["evalkit.evaluate", suite], policy=ready)
        run = load_run(run_dir)
        summary = summarize(run)
        if temporary is None or keep:
            write_report(run_dir)
        logged = log_run(trackers, run_dir, tracking, step=step)
    finally:
        if temporary is not None and not keep:
            shutil.rmtree(temporary, ignore_errors=True)
    return EvalResult(
        episodes=run.episodes,
        summary=summary.suites,
        tasks=summary.tasks,
        overall=summary.overall,
        average_pct=summary.average_pct,
        run_dir=run_dir if temporary is None or keep else None,
        logged=logged,
    )


__all__ = ["EvalResult", "EvalkitError", "evaluate"]
