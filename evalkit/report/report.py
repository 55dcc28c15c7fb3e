"""`evalkit report RUN`: one run's numbers as markdown (printed too), CSV, Parquet and a self-contained HTML page."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.report import robustness
from evalkit.report.formatting import fmt_ci, fmt_pct, html_table, markdown_table, plain, with_ci_column
from evalkit.report.summary import RunSummary, summarize
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


def headline(summary: RunSummary) -> list[str]:
    o = summary.overall
    lines = [
        f"- policy: `{summary.policy}`",
        f"- episodes: {o['episodes']} with an outcome, {len(summary.errors)} error(s)",
        f"- **average across suites (mean of suite rates, as openpi reports it): {percent(summary.average_pct)}**",
        f"- pooled over all episodes: {percent(o['success_pct'])} {fmt_ci(o['ci95_low_pct'], o['ci95_high_pct'])} "
        f"({o['successes']}/{o['episodes']}, Wilson 95%)",
    ]
    return lines


def provenance_lines(summary: RunSummary) -> list[str]:
    p = summary.provenance
    versions = ", ".join(f"{k} {v}" for k, v in sorted(p["versions"].items())) or "—"
    suites = ", ".join(f"{k}: `{v}`" for k, v in p["suite_protocols"].items()) or "—"
    command = p["command"]
    if isinstance(command, list):
        command = " ".join(str(c) for c in command)
    return [
        f"- run: `{p['run_id']}` created {plain(p['created_at'])} on {plain(p['host'])}",
        f"- command: `{plain(command)}`",
        f"- policy: {plain(p['policy'])}, fingerprint `{plain(p['policy_fingerprint'])}`, "
        f"checkpoint `{plain(p['checkpoint'])}`",
        *(
            [f"- loaded: {', '.join(f'{k} `{v}`' for k, v in p['policy_provenance'].items())}"]
            if p["policy_provenance"]
            else []
        ),
        f"- protocol fingerprint: `{plain(p['protocol_fingerprint'])}` ({suites})",
        f"- git commit: `{plain(p['git_commit'])}`",
        f"- versions: {versions}",
        f"- sessions: {len(p['sessions'])}",
    ]


def render_markdown(summary: RunSummary) -> str:
    parts = [f"# evalkit report: {run_title(summary.provenance)}", "", *headline(summary), ""]
    warning = error_warning(summary)
    if warning:
        parts += [f"> **Warning:** {warning}", ""]
    parts += ["## Success by suite", "", markdown_table(with_ci_column(summary.suites)), ""]
    parts += ["## Success by task", "", markdown_table(with_ci_column(summary.tasks)), ""]
    parts += ["## Episodes by termination", "", markdown_table(summary.terminations), ""]
    parts += ["## Steps to success", "", markdown_table(summary.steps), ""]
    parts += ["## Policy latency (ms, as seen by the env workers)", "", markdown_table(summary.latency), ""]
    if not summary.progress.empty:
        parts += [
            "## Partial progress (% of episodes reaching each stage)",
            "",
            markdown_table(summary.progress),
            "",
        ]
    if not summary.errors.empty:
        parts += ["## Errors (excluded from rates)", "", markdown_table(summary.errors), ""]
    parts += ["## Provenance", "", *provenance_lines(summary), ""]
    return "\n".join(parts)


def render_html(summary: RunSummary, run: Run, out_dir: Path, embed_budget: int) -> str:
    import jinja2

    from evalkit.report.plots import steps_histogram, task_success_bars
    from evalkit.report.videos import collect_videos

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("evalkit.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    videos = collect_videos(run.episodes, run.path, out_dir, embed_budget)
    return env.get_template("report.html.j2").render(
        title=run_title(summary.provenance),
        summary=summary,
        headline=[line.removeprefix("- ").replace("**", "").replace("`", "") for line in headline(summary)],
        warning=error_warning(summary),
        suites_table=html_table(with_ci_column(summary.suites), "suites"),
        tasks_table=html_table(with_ci_column(summary.tasks), "tasks"),
        terminations_table=html_table(summary.terminations, "terminations"),
        steps_table=html_table(summary.steps, "steps"),
        latency_table=html_table(summary.latency, "latency"),
        progress_table=None if summary.progress.empty else html_table(summary.progress, "progress"),
        errors_table=None if summary.errors.empty else html_table(summary.errors, "errors"),
        task_plot=task_success_bars(summary.tasks),
        steps_plot=steps_histogram(summary.episodes),
        videos=videos,
        embedded_mb=sum(v.size for v in videos if v.data_uri) / 2**20,
        budget_mb=embed_budget / 2**20,
        provenance=[line.removeprefix("- ").replace("`", "") for line in provenance_lines(summary)],
        manifest_json=json.dumps(run.manifest.to_json(), indent=2, sort_keys=True, default=str),
        robustness_html=robustness.html(robust) if (robust := robustness.robustness_section(run)) else None,
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
) -> ReportFiles:
    run = load_run(run_dir)
    if run.episodes.empty:
        raise EvalkitError(f"{run.path} has no finished episodes yet")
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvalkitError(f"cannot create report directory {out}: {exc}") from exc
    summary = summarize(run)
    markdown = render_markdown(summary)
    robust = robustness.robustness_section(run)  # LIBERO-plus runs only
    if robust is not None:
        markdown += "\n" + robustness.markdown(robust)
    files: list[Path] = []
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
    if robust is not None:
        tables.update(robustness_dimensions=robust.by_dimension, robustness_levels=robust.by_level)
    if "md" in formats:
        files.append(out / "report.md")
        files[-1].write_text(markdown)
    if "csv" in formats:
        for name, frame in tables.items():
            files.append(out / f"{name}.csv")
            frame.to_csv(files[-1], index=False)
    if "parquet" in formats:
        for name, frame in tables.items():
            files.append(out / f"{name}.parquet")
            frame.to_parquet(files[-1], index=False)
    if "html" in formats:
        files.append(out / "report.html")
        files[-1].write_text(render_html(summary, run, out, embed_budget))
    return ReportFiles(out, markdown, files)
