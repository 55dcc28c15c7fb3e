"""`evalkit report RUN`: one run's numbers as markdown (printed too), CSV, Parquet and a self-contained HTML page."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.core.errors import EvalkitError
from evalkit.report import robustness, robustness_deltas
from evalkit.report.formatting import (
    fmt_ci,
    fmt_pct,
    html_table,
    markdown_table,
    md_text,
    plain,
    with_ci_column,
)
from evalkit.report.output import make_out_dir, render_page, text_writer, write_files
from evalkit.report.summary import RunSummary, suite_progress_lines, summarize
from evalkit.report.videos import DEFAULT_EMBED_BUDGET
from evalkit.rundir.run import Run, load_run

FORMATS = ("md", "csv", "parquet", "html")


@dataclass
class ReportFiles:
    out_dir: Path
    markdown: str
    files: list[Path]


def error_warning(summary: RunSummary) -> str | None:
    n = len(summary.errors)
    if not n:
        return None
    return (
        f"{n} episode(s) ended in an error and are left out of every rate in this report "
        "(see Errors); re-running the same command retries them."
    )


def run_title(provenance: dict) -> str:
    """What a reader needs first: the policy (and checkpoint), the suites and the date; the run id is in the details."""
    policy = str(provenance["policy"])
    checkpoint = provenance.get("checkpoint")
    if checkpoint:
        policy += f" ({Path(str(checkpoint)).name or checkpoint})"
    suites = provenance["config"].get("suite") or ", ".join(provenance["suite_protocols"])
    return f"{policy} on {suites}, {str(provenance['created_at'])[:10]}"


def percent(value: float) -> str:
    text = fmt_pct(value)
    return text if text == "—" else f"{text}%"


def policy_line(provenance: dict, esc: Callable[[Any], str]) -> str:
    """The policy by name with what it loaded: its checkpoint and fingerprint, or that it has none (a scripted or
    built-in policy such as oracle or zero)."""
    text = esc(provenance["policy"])
    checkpoint = provenance.get("checkpoint")
    fingerprint = str(provenance.get("policy_fingerprint") or "")
    if checkpoint:
        text += f", checkpoint {esc(checkpoint)}"
    if fingerprint and fingerprint != "none":
        text += f" (fingerprint {esc(fingerprint[:12])})"
    if not checkpoint and fingerprint in ("", "none"):
        text += " (no checkpoint)"
    return f"policy: {text}"


def headline(summary: RunSummary, esc: Callable[[Any], str]) -> list[tuple[str, bool]]:
    """The first lines of a report, each with whether it is the one to stand out."""
    o = summary.overall
    return [
        (policy_line(summary.provenance, esc), False),
        (f"episodes: {o['episodes']} with an outcome, {len(summary.errors)} error(s)", False),
        (
            f"average across suites (mean of suite rates, as openpi reports it): {percent(summary.average_pct)}",
            True,
        ),
        (
            f"pooled over all episodes: {percent(o['success_pct'])} {fmt_ci(o['ci95_low_pct'], o['ci95_high_pct'])} "
            f"({o['successes']}/{o['episodes']}, Wilson 95%)",
            False,
        ),
    ]


def provenance_lines(summary: RunSummary, esc: Callable[[Any], str]) -> list[str]:
    p = summary.provenance
    versions = ", ".join(f"{k} {esc(v)}" for k, v in sorted(p["versions"].items())) or "—"
    suites = ", ".join(f"{esc(k)}: {esc(v)}" for k, v in p["suite_protocols"].items()) or "—"
    command = p["command"]
    if isinstance(command, list):
        command = " ".join(str(c) for c in command)
    loaded = ", ".join(f"{esc(k)} {esc(v)}" for k, v in p["policy_provenance"].items())
    return [
        f"run: {esc(p['run_id'])} created {esc(plain(p['created_at']))} on {esc(plain(p['host']))}",
        f"command: {esc(plain(command))}",
        f"policy: {esc(plain(p['policy']))}, fingerprint {esc(plain(p['policy_fingerprint']))}, "
        f"checkpoint {esc(plain(p['checkpoint']))}",
        *([f"loaded: {loaded}"] if loaded else []),
        f"protocol fingerprint: {esc(plain(p['protocol_fingerprint']))} ({suites})",
        f"git commit: {esc(plain(p['git_commit']))}",
        f"versions: {versions}",
        f"sessions: {len(p['sessions'])}",
    ]


PROGRESS_TITLE = "Partial progress: a second statistic beside success"
PROGRESS_NOTE = (
    "Success is binary. Progress gives partial credit: each episode's mean of its progress flags (LIBERO: the share "
    "of the BDDL goal's predicates that held at the episode's best step; DROID: the rubric's stages reached, success "
    "included), so a near miss scores above doing nothing. `evalkit regress --outcome progress` and "
    "`evalkit eval --against RUN --outcome progress` test it paired; every rate elsewhere in this report is success. "
    "Stages: the share of episodes that reached each of the task's flags."
)


def progress_display(progress: pd.DataFrame) -> pd.DataFrame:
    return progress.rename(
        columns={
            "success_pct": "success %",
            "mean_progress_pct": "mean progress %",
            "stages_reached_pct": "stages reached (% of episodes)",
        }
    )


def render_markdown(summary: RunSummary) -> str:
    title = md_text(run_title(summary.provenance))
    lines = [f"- **{text}**" if bold else f"- {text}" for text, bold in headline(summary, md_text)]
    parts = [f"# evalkit report: {title}", "", *lines, ""]
    warning = error_warning(summary)
    if warning:
        parts += [f"> **Warning:** {warning}", ""]
    parts += ["## Success by suite", "", markdown_table(with_ci_column(summary.suites)), ""]
    parts += ["## Success by task", "", markdown_table(with_ci_column(summary.tasks)), ""]
    parts += ["## Episodes by termination", "", markdown_table(summary.terminations), ""]
    parts += ["## Steps to success", "", markdown_table(summary.steps), ""]
    parts += ["## Policy latency (as seen by the env workers)", "", markdown_table(summary.latency), ""]
    if not summary.progress.empty:
        parts += [
            f"## {PROGRESS_TITLE}",
            "",
            PROGRESS_NOTE,
            "",
            *[f"- {md_text(line)}" for line in suite_progress_lines(summary.progress)],
            "",
            markdown_table(progress_display(summary.progress)),
            "",
        ]
    if not summary.errors.empty:
        parts += ["## Errors (excluded from rates)", "", markdown_table(summary.errors), ""]
    parts += ["## Provenance", "", *[f"- {line}" for line in provenance_lines(summary, md_text)], ""]
    return "\n".join(parts)


def render_html(
    summary: RunSummary, run: Run, out_dir: Path, embed_budget: int, deltas_html: str | None = None
) -> str:
    from evalkit.report.plots import steps_histogram, task_success_bars
    from evalkit.report.videos import collect_videos, gallery

    videos = collect_videos(run.episodes, run.path, out_dir, embed_budget)
    return render_page(
        "report.html.j2",
        title=run_title(summary.provenance),
        summary=summary,
        headline=[text for text, _ in headline(summary, str)],
        warning=error_warning(summary),
        suites_table=html_table(with_ci_column(summary.suites), "suites"),
        tasks_table=html_table(with_ci_column(summary.tasks), "tasks"),
        terminations_table=html_table(summary.terminations, "terminations"),
        steps_table=html_table(summary.steps, "steps"),
        latency_table=html_table(summary.latency, "latency"),
        progress_table=None
        if summary.progress.empty
        else html_table(progress_display(summary.progress), "progress"),
        progress_title=PROGRESS_TITLE,
        progress_note=PROGRESS_NOTE,
        progress_suites=suite_progress_lines(summary.progress) if not summary.progress.empty else [],
        errors_table=None if summary.errors.empty else html_table(summary.errors, "errors"),
        task_plot=task_success_bars(summary.tasks),
        steps_plot=steps_histogram(summary.episodes),
        gallery=gallery(videos, embed_budget),
        provenance=provenance_lines(summary, str),
        manifest_json=json.dumps(run.manifest.to_json(), indent=2, sort_keys=True, default=str),
        robustness_html=robustness.html(robust) if (robust := robustness.robustness_section(run)) else None,
        deltas_html=deltas_html,
    )


def report_link(result: ReportFiles) -> str:
    """A file:// link to the HTML page (terminals make it clickable), else the report directory's path."""
    html = result.out_dir / "report.html"
    return html.resolve().as_uri() if html in result.files else str(result.out_dir)


def parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise EvalkitError(f"unknown report format(s) {unknown or text!r}; choose from {','.join(FORMATS)}")
    return formats


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    formats: list[str] | tuple[str, ...] = FORMATS,
    embed_budget: int = DEFAULT_EMBED_BUDGET,
    base_dir: str | Path | None = None,
) -> ReportFiles:
    """`base_dir`: a plain LIBERO run of the same checkpoint to pair the run's perturbed episodes with (paired
    robustness deltas, `evalkit.report.robustness_deltas`)."""
    run = load_run(run_dir)
    if run.episodes.empty:
        raise EvalkitError(f"{run.path} has no finished episodes yet")
    deltas = robustness_deltas.deltas_for_report(run, load_run(base_dir) if base_dir is not None else None)
    out = make_out_dir(Path(out_dir) if out_dir is not None else run.path / "report")
    summary = summarize(run)
    markdown = render_markdown(summary)
    robust = robustness.robustness_section(run)  # LIBERO-plus runs only
    if robust is not None:
        markdown += "\n" + robustness.markdown(robust)
    if deltas is not None:
        markdown += "\n" + robustness_deltas.markdown(*deltas)
    tables = {
        "suites": summary.suites,
        "tasks": summary.tasks,
        "terminations": summary.terminations,
        "steps": summary.steps,
        "latency": summary.latency,
        "errors": summary.errors,
        "episodes": summary.episodes,
    }
    if not summary.progress.empty:
        tables["progress"] = summary.progress
        tables["progress_stages"] = summary.progress_stages
    if robust is not None:
        tables.update(robustness_dimensions=robust.by_dimension, robustness_levels=robust.by_level)
    if deltas is not None:
        tables["robustness_deltas"] = deltas[0].table
    writers: dict[str, Callable[[Path], Any]] = {}
    if "md" in formats:
        writers["report.md"] = text_writer(markdown)
    for fmt in ("csv", "parquet"):
        if fmt in formats:
            for name, frame in tables.items():
                writers[f"{name}.{fmt}"] = table_writer(frame, fmt)
    if "html" in formats:
        deltas_html = robustness_deltas.html(*deltas) if deltas is not None else None
        writers["report.html"] = text_writer(render_html(summary, run, out, embed_budget, deltas_html))
    return ReportFiles(out, markdown, write_files(out, writers))


def table_writer(frame: pd.DataFrame, fmt: str) -> Callable[[Path], Any]:
    if fmt == "csv":
        return lambda path: frame.to_csv(path, index=False)
    return lambda path: frame.to_parquet(path, index=False)
