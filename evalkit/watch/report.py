"""The report of a watch directory (`<watch dir>/report/`: report.md, report.html, curve.csv, checkpoints.csv):
success against training step with Wilson intervals, per suite and overall; the gate's verdict per checkpoint
(with --against); the selected checkpoint with its selection rate next to its held-out re-evaluation, so that the
selection bias shows; the checkpoints that failed to load and those still being written.

Numbers are read from each checkpoint's run directory with the reporter's own summary (`evalkit.report.summary`),
so a checkpoint's row here is the headline of its own report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.report.formatting import fmt_ci, fmt_pct, html_table, markdown_table, md_text, with_ci_column
from evalkit.report.output import make_out_dir, render_page, text_writer, write_files
from evalkit.report.summary import RunSummary, summarize
from evalkit.rundir.run import is_run_dir, load_run
from evalkit.watch.gate import Gate, GateVerdict
from evalkit.watch.state import CheckpointRecord, HeldoutRecord, WatchState

RATE = ["episodes", "successes", "success_pct", "ci95_low_pct", "ci95_high_pct"]


@dataclass
class Evaluated:
    """One checkpoint's evaluation, read back from its run directory."""

    record: CheckpointRecord
    summary: RunSummary
    gate: GateVerdict | None = None

    def overall(self) -> dict[str, Any]:
        return {**{k: self.summary.overall[k] for k in RATE}, "errors": len(self.summary.errors)}


@dataclass
class Selection:
    record: CheckpointRecord
    # how many complete evaluations it was picked from
    among: int
    # its rate on the episodes it was selected on (RATE columns)
    selected: dict[str, Any]
    heldout: HeldoutRecord | None = None
    # its rate on the held-out episodes (None: not run yet, or failed)
    heldout_rate: dict[str, Any] | None = None


@dataclass
class WatchReport:
    watch_dir: Path
    state: WatchState
    evaluated: list[Evaluated]
    # step, scope (a suite, or "overall" over several), RATE columns, errors
    curve: pd.DataFrame
    selection: Selection | None
    gated: bool
    suites: list[str] = field(default_factory=list)


def read_run(run_dir: str) -> RunSummary | None:
    path = Path(run_dir)
    if not is_run_dir(path):
        return None
    run = load_run(path)
    return None if run.episodes.empty else summarize(run)


def curve_rows(item: Evaluated) -> list[dict[str, Any]]:
    step = item.record.step
    rows = [
        {"step": step, "scope": row["suite"], **{k: row[k] for k in RATE}, "errors": row["errors"]}
        for _, row in item.summary.suites.iterrows()
    ]
    if len(rows) > 1:
        rows.append({"step": step, "scope": "overall", **item.overall()})
    return rows


def selection_of(state: WatchState, evaluated: list[Evaluated]) -> Selection | None:
    best = state.selected()
    if best is None:
        return None
    item = next(e for e in evaluated if e.record.step == best.step)
    heldout = state.heldout.get(str(best.step))
    summary = read_run(heldout.run_dir) if heldout is not None and heldout.status == "done" else None
    rate = {k: summary.overall[k] for k in RATE} if summary is not None else None
    among = len([r for r in state.by_status("done") if r.episodes])
    return Selection(best, among, {k: item.summary.overall[k] for k in RATE}, heldout, rate)


def collect(watch_dir: Path, state: WatchState, gate: Gate | None = None) -> WatchReport:
    evaluated = []
    for record in sorted(state.checkpoints.values(), key=lambda r: r.step):
        if record.status not in ("done", "incomplete"):
            continue
        summary = read_run(record.run_dir)
        if summary is None:
            continue
        verdict = gate.judge(Path(record.run_dir), complete=record.status == "done") if gate else None
        evaluated.append(Evaluated(record, summary, verdict))
    rows = [row for item in evaluated for row in curve_rows(item)]
    curve = pd.DataFrame(rows, columns=["step", "scope", *RATE, "errors"])
    suites = sorted({str(s) for item in evaluated for s in item.summary.suites["suite"]})
    return WatchReport(
        Path(watch_dir), state, evaluated, curve, selection_of(state, evaluated), gate is not None, suites
    )


# -- tables ------------------------------------------------------------------------------------------------------
def checkpoint_table(report: WatchReport) -> pd.DataFrame:
    """One row per evaluated checkpoint: its overall rate, its suites' rates (several suites), the gate's verdict."""
    rows = []
    for item in report.evaluated:
        row: dict[str, Any] = {"step": item.record.step, "status": item.record.status, **item.overall()}
        if len(report.suites) > 1:
            for _, suite in item.summary.suites.iterrows():
                row[f"{suite['suite']} %"] = fmt_pct(suite["success_pct"])
        if item.gate is not None:
            row["gate"] = item.gate.verdict
        if report.selection is not None and item.record.step == report.selection.record.step:
            row["status"] += " (selected)"
        row["checkpoint"] = item.record.path
        rows.append(row)
    return pd.DataFrame(rows)


def shown_rates(frame: pd.DataFrame) -> pd.DataFrame:
    return with_ci_column(frame) if not frame.empty else frame


def rate_text(rate: dict[str, Any]) -> str:
    return (
        f"{fmt_pct(rate['success_pct'])}% {fmt_ci(rate['ci95_low_pct'], rate['ci95_high_pct'])} "
        f"({rate['successes']}/{rate['episodes']}, Wilson 95%)"
    )


def selection_lines(report: WatchReport) -> list[str]:
    s = report.selection
    if s is None:
        return ["No checkpoint has a complete evaluation yet: nothing to select."]
    lines = [
        f"Selected: step {s.record.step:,} ({s.record.path}), the highest success rate of {s.among} complete "
        "evaluation(s) (a tie goes to the later step).",
        f"On the episodes it was selected on: {rate_text(s.selected)}. This number is biased upward: it is the "
        f"largest of {s.among} noisy rates.",
    ]
    h = s.heldout
    if h is None or h.status == "running":
        lines.append(
            "Held-out re-evaluation: not run yet (the watch runs it when no new checkpoint is waiting)."
        )
        return lines
    lines.append(f"Held-out episodes: {h.episodes}.")
    if s.heldout_rate is None:
        lines.append(f"Held-out re-evaluation {h.status}: {h.error or 'no episodes with an outcome'}.")
        return lines
    diff = s.selected["success_pct"] - s.heldout_rate["success_pct"]
    lines.append(f"On held-out episodes: {rate_text(s.heldout_rate)}.")
    lines.append(
        f"Selected minus held-out: {diff:+.1f} percentage points (a positive difference is the selection's "
        "optimism, plus sampling noise: both rates carry their own interval)."
    )
    if h.status != "done":
        lines.append(f"The held-out run is incomplete: {h.error}")
    return lines


def heldout_table(report: WatchReport) -> pd.DataFrame:
    """Every held-out re-evaluation the watch ran (one per checkpoint that was the selected one at some time), its
    selection rate next to its held-out rate."""
    by_step = {e.record.step: e for e in report.evaluated}
    rows = []
    for record in sorted(report.state.heldout.values(), key=lambda r: r.step):
        summary = read_run(record.run_dir) if record.status != "running" else None
        item = by_step.get(record.step)
        rows.append(
            {
                "step": record.step,
                "selection %": fmt_pct(item.summary.overall["success_pct"]) if item else "—",
                "held-out %": fmt_pct(summary.overall["success_pct"]) if summary else "—",
                "held-out 95% CI (Wilson)": fmt_ci(
                    summary.overall["ci95_low_pct"], summary.overall["ci95_high_pct"]
                )
                if summary
                else "—",
                "held-out episodes": summary.overall["episodes"] if summary else 0,
                "status": record.status,
            }
        )
    return pd.DataFrame(rows)


def failed_table(state: WatchState) -> pd.DataFrame:
    rows = [
        {"step": r.step, "status": r.status, "checkpoint": r.path, "reason": r.error}
        for r in sorted(state.checkpoints.values(), key=lambda r: r.step)
        if r.status in ("failed", "incomplete") and r.error
    ]
    return pd.DataFrame(rows)


def waiting_table(state: WatchState) -> pd.DataFrame:
    return pd.DataFrame(
        [{"checkpoint": path, "not taken yet because": why} for path, why in state.waiting.items()]
    )


def gate_lines(report: WatchReport) -> list[str]:
    return [f"step {e.record.step:,}: {e.gate.line}" for e in report.evaluated if e.gate is not None]


def heading_lines(report: WatchReport) -> list[str]:
    state = report.state
    done = len(state.by_status("done"))
    return [
        f"training run: {state.root}",
        f"suite: {state.suite}; watch directory: {report.watch_dir.resolve()}",
        f"checkpoints: {done} evaluated in full, {len(state.by_status('incomplete'))} incomplete, "
        f"{len(state.by_status('failed'))} failed, {len(state.by_status('running'))} in progress, "
        f"{len(state.waiting)} not complete yet",
    ]


# -- pages -------------------------------------------------------------------------------------------------------
def render_markdown(report: WatchReport) -> str:
    parts = [f"# evalkit watch: {md_text(Path(report.state.root).name)} on {md_text(report.state.suite)}", ""]
    parts += [f"- {md_text(line)}" for line in heading_lines(report)] + [""]
    parts += ["## Success by training step", ""]
    parts += ["Error episodes are left out of every rate; intervals are Wilson 95%.", ""]
    parts += [markdown_table(shown_rates(checkpoint_table(report))), ""]
    if len(report.suites) > 1:
        parts += ["### Per suite and overall", "", markdown_table(shown_rates(report.curve)), ""]
    parts += ["## Selected checkpoint", "", *[f"- {md_text(line)}" for line in selection_lines(report)], ""]
    if len(report.state.heldout) > 1:
        parts += ["### Every held-out re-evaluation", "", markdown_table(heldout_table(report)), ""]
    if report.gated:
        parts += ["## Gate (paired regression test against the baseline)", ""]
        parts += [f"- {md_text(line)}" for line in gate_lines(report)] or ["_(no checkpoint evaluated yet)_"]
        parts.append("")
    failed = failed_table(report.state)
    if not failed.empty:
        parts += ["## Failed and incomplete checkpoints", "", markdown_table(failed), ""]
    if report.state.waiting:
        parts += ["## Not complete yet", "", markdown_table(waiting_table(report.state)), ""]
    return "\n".join(parts)


def render_html(report: WatchReport) -> str:
    from evalkit.report.plots import success_curve

    s = report.selection
    plot = success_curve(
        report.curve,
        float(s.record.step) if s is not None else None,
        pd.Series(s.heldout_rate) if s is not None and s.heldout_rate is not None else None,
    )
    failed = failed_table(report.state)
    return render_page(
        "watch.html.j2",
        title=f"{Path(report.state.root).name} on {report.state.suite}",
        headline=heading_lines(report),
        curve_plot=plot,
        checkpoints_table=html_table(shown_rates(checkpoint_table(report)), "checkpoints"),
        curve_table=html_table(shown_rates(report.curve), "curve") if len(report.suites) > 1 else None,
        selection=selection_lines(report),
        heldout_table=html_table(heldout_table(report), "heldout") if len(report.state.heldout) > 1 else None,
        gate=gate_lines(report) if report.gated else None,
        failed_table=None if failed.empty else html_table(failed, "failed"),
        waiting_table=html_table(waiting_table(report.state), "waiting") if report.state.waiting else None,
    )


def write_watch_report(watch_dir: Path, state: WatchState, gate: Gate | None = None) -> str:
    """Write `<watch dir>/report/`; returns the file:// link of its HTML page."""
    report = collect(watch_dir, state, gate)
    out = make_out_dir(Path(watch_dir) / "report")
    writers = {
        "report.md": text_writer(render_markdown(report)),
        "report.html": text_writer(render_html(report)),
        "curve.csv": lambda path: report.curve.to_csv(path, index=False),
        "checkpoints.csv": lambda path: checkpoint_table(report).to_csv(path, index=False),
    }
    write_files(out, writers)
    return (out / "report.html").resolve().as_uri()
