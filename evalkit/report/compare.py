"""`evalkit report RUN_A RUN_B ...`: several runs side by side. The first run is the reference.

Per task: each run's success rate with its Wilson 95% interval. Where episodes pair (same suite, task, init state
and seed in both runs, neither an error) the difference to the reference is paired: Newcombe's paired interval
(method 10) on the pairs, as `evalkit regress` uses. Episodes that one run solved and the other did not are shown
as two videos next to each other: what people look at when a new checkpoint regresses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from evalkit.core.errors import EvalkitError
from evalkit.report.formatting import fmt_ci, fmt_pct, html_table, markdown_table, md_text
from evalkit.report.output import make_out_dir, render_page, text_writer, write_files
from evalkit.report.robustness_deltas import DeltaSection, has_base, has_perturbed, robustness_deltas
from evalkit.report.robustness_deltas import html as robustness_deltas_html
from evalkit.report.robustness_deltas import markdown as robustness_deltas_markdown
from evalkit.report.stats import PairedCounts, compare_paired, wilson
from evalkit.report.videos import DEFAULT_EMBED_BUDGET, VideoEntry, video_entry
from evalkit.rundir.run import IDENTITY, Run, load_run

TASK_KEY = ["suite", "task_id"]


@dataclass
class EpisodePair:
    """One episode identity that two runs finished with different outcomes, with both videos (if recorded)."""

    suite: str
    task_id: int
    init_state: int
    seed: int
    instruction: str
    reference: VideoEntry | None
    other: VideoEntry | None
    reference_success: bool
    other_label: str


@dataclass
class Comparison:
    labels: list[str]
    runs: list[Run]
    rates: pd.DataFrame  # suite, task_id, task, then "<label>" = "rate% [lo, hi] (k/n)" per run
    paired: dict[str, pd.DataFrame]  # other label -> per task and overall paired difference to the reference
    protocol_notes: list[str]  # suites whose protocol differs between runs
    pairs: list[EpisodePair]
    title: str
    # paired robustness deltas where one run holds perturbed suites and another plain LIBERO of the same checkpoint:
    # (perturbed label, base label, section)
    deltas: list[tuple[str, str, DeltaSection]] = field(default_factory=list)


def run_label(run: Run) -> str:
    label = run.manifest.policy.name
    checkpoint = run.manifest.config.get("checkpoint")
    if checkpoint:
        label += f" ({Path(str(checkpoint)).name or checkpoint})"
    return label


def unique_labels(runs: list[Run]) -> list[str]:
    """Policy (checkpoint) per run; the run directory's name is added where that alone would repeat."""
    labels = [run_label(r) for r in runs]
    out = []
    for run, label in zip(runs, labels, strict=True):
        out.append(f"{label} [{run.path.name}]" if labels.count(label) > 1 else label)
    if len(set(out)) < len(out):
        out = [f"{label} #{i + 1}" for i, label in enumerate(out)]
    return out


def rate_text(k: int, n: int) -> str:
    r = wilson(k, n)
    if not n:
        return "—"
    return f"{fmt_pct(100 * r.rate)}% {fmt_ci(100 * r.low, 100 * r.high)} ({k}/{n})"


def rates_table(runs: list[Run], labels: list[str]) -> pd.DataFrame:
    """One row per task any run has; per run its success rate, interval and counts (errors left out)."""
    tasks: dict[tuple[str, int], str] = {}
    for run in runs:
        for (suite, task_id), group in run.episodes.groupby(TASK_KEY, sort=True):
            tasks.setdefault((str(suite), int(task_id)), str(group["task"].iloc[0]))
    rows = []
    for (suite, task_id), text in sorted(tasks.items()):
        row = {"suite": suite, "task_id": task_id, "task": text}
        for run, label in zip(runs, labels, strict=True):
            usable = run.usable[(run.usable["suite"] == suite) & (run.usable["task_id"] == task_id)]
            row[label] = rate_text(int(usable["success"].sum()), len(usable)) if len(usable) else "—"
        rows.append(row)
    overall = {"suite": "all", "task_id": "", "task": "pooled over all episodes"}
    for run, label in zip(runs, labels, strict=True):
        overall[label] = rate_text(int(run.usable["success"].sum()), len(run.usable))
    frame = pd.DataFrame([*rows, overall])
    frame["task_id"] = frame["task_id"].astype(str)
    return frame


def paired_outcomes(reference: Run, other: Run) -> pd.DataFrame:
    """Episodes both runs finished (no error), joined on the episode identity."""
    cols = [*IDENTITY, "task", "success"]
    return reference.usable[cols].merge(
        other.usable[[*IDENTITY, "success"]], on=IDENTITY, suffixes=("_ref", "_other")
    )


def paired_row(group: pd.DataFrame) -> dict:
    ref, oth = group["success_ref"].astype(bool), group["success_other"].astype(bool)
    counts = PairedCounts(
        both=int((ref & oth).sum()),
        lost=int((ref & ~oth).sum()),
        gained=int((~ref & oth).sum()),
        neither=int((~ref & ~oth).sum()),
    )
    c = compare_paired(counts)
    return {
        "pairs": counts.n,
        "both": counts.both,
        "reference only": counts.lost,
        "other only": counts.gained,
        "neither": counts.neither,
        "diff_pp": 100 * c.diff,
        "low_pp": 100 * c.diff_low,
        "high_pp": 100 * c.diff_high,
    }


def paired_table(reference: Run, other: Run) -> pd.DataFrame:
    """Per task and overall: the paired 2x2 counts and other minus reference (percentage points), with Newcombe's
    paired 95% interval (low_pp, high_pp)."""
    joined = paired_outcomes(reference, other)
    rows = []
    for (suite, task_id), group in joined.groupby(TASK_KEY, sort=True):
        rows.append(
            {"suite": suite, "task_id": int(task_id), "task": group["task"].iloc[0], **paired_row(group)}
        )
    if len(joined):
        rows.append({"suite": "all", "task_id": "", "task": "all paired episodes", **paired_row(joined)})
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["task_id"] = frame["task_id"].astype(str)
    return frame


def paired_display(table: pd.DataFrame) -> pd.DataFrame:
    """The paired table as shown: the difference and its interval as text, the instruction left to the rates."""
    if table.empty:
        return table
    shown = table.drop(columns=["task", "diff_pp", "low_pp", "high_pp"])
    shown["difference (pp)"] = [f"{d:+.1f}" for d in table["diff_pp"]]
    shown["95% CI (paired)"] = [
        fmt_ci(lo, hi) for lo, hi in zip(table["low_pp"], table["high_pp"], strict=True)
    ]
    return shown


def paired_chart(c: Comparison) -> str | None:
    """Every compared run's paired difference to the reference per task and overall, with intervals."""
    from evalkit.report.plots import paired_differences

    rows = []
    for label, table in c.paired.items():
        for row in table.itertuples(index=False):
            name = "all paired episodes" if row.suite == "all" else f"{row.suite} {row.task_id}: {row.task}"
            rows.append(
                {
                    "label": name,
                    "series": label,
                    "diff_pp": row.diff_pp,
                    "low_pp": row.low_pp,
                    "high_pp": row.high_pp,
                }
            )
    return paired_differences(pd.DataFrame(rows))


def protocol_notes(runs: list[Run], labels: list[str]) -> list[str]:
    notes = []
    suites = sorted({s for run in runs for s in run.suite_fingerprints()})
    for suite in suites:
        prints = {label: run.suite_fingerprints().get(suite) for run, label in zip(runs, labels, strict=True)}
        if len({p for p in prints.values() if p}) > 1:
            listed = ", ".join(f"{label}: {p or '—'}" for label, p in prints.items())
            notes.append(f"{suite} ran under different protocols ({listed}); its rates are not comparable")
    return notes


def differing_pairs(
    reference: Run, other: Run, other_label: str, out_dir: Path, budget: list[int]
) -> list[EpisodePair]:
    """Episodes one run solved and the other did not, with both runs' videos where they were recorded."""
    cols = [*IDENTITY, "task", "success", "termination", "steps", "video"]
    joined = reference.usable[cols].merge(other.usable[cols], on=IDENTITY, suffixes=("_ref", "_other"))
    differ = joined[joined["success_ref"] != joined["success_other"]].sort_values(IDENTITY)
    pairs = []
    for row in differ.itertuples(index=False):
        entries = []
        for run, suffix in ((reference, "_ref"), (other, "_other")):
            video = getattr(row, f"video{suffix}")
            if not isinstance(video, str) or not video:
                entries.append(None)
                continue
            episode = pd.Series(
                {
                    **{k: getattr(row, k) for k in IDENTITY},
                    "task": getattr(row, f"task{suffix}"),
                    "success": getattr(row, f"success{suffix}"),
                    "termination": getattr(row, f"termination{suffix}"),
                    "steps": getattr(row, f"steps{suffix}"),
                    "video": video,
                }
            )
            entry = video_entry(episode, run.path, out_dir, budget[0])
            budget[0] -= entry.size if entry.data_uri else 0
            entries.append(entry)
        pairs.append(
            EpisodePair(
                str(row.suite),
                int(row.task_id),
                int(row.init_state),
                int(row.seed),
                str(row.task_ref),
                entries[0],
                entries[1],
                bool(row.success_ref),
                other_label,
            )
        )
    return pairs


def comparison_title(runs: list[Run], labels: list[str]) -> str:
    suites = sorted({s for run in runs for s in run.suite_fingerprints()})
    suite_text = ", ".join(suites) if len(suites) <= 4 else f"{len(suites)} suites"
    latest = max(str(run.manifest.created_at)[:10] for run in runs)
    return f"{' vs '.join(labels)} on {suite_text}, {latest or date.today().isoformat()}"


def compare(
    run_dirs: list[str | Path], out_dir: Path, embed_budget: int = DEFAULT_EMBED_BUDGET
) -> Comparison:
    if len(run_dirs) < 2:
        raise EvalkitError("a comparison needs at least two run directories")
    runs = [load_run(d) for d in run_dirs]
    for run in runs:
        if run.episodes.empty:
            raise EvalkitError(f"{run.path} has no finished episodes yet")
    labels = unique_labels(runs)
    budget = [embed_budget]
    pairs: list[EpisodePair] = []
    for other, label in zip(runs[1:], labels[1:], strict=True):
        pairs += differing_pairs(runs[0], other, label, out_dir, budget)
    return Comparison(
        labels=labels,
        runs=runs,
        rates=rates_table(runs, labels),
        paired={
            label: paired_table(runs[0], other) for other, label in zip(runs[1:], labels[1:], strict=True)
        },
        protocol_notes=protocol_notes(runs, labels),
        pairs=pairs,
        title=comparison_title(runs, labels),
        deltas=comparison_deltas(runs, labels),
    )


def delta_title(perturbed: str, base: str) -> str:
    return f"Paired robustness deltas: {perturbed}'s perturbed episodes against {base}"


def comparison_deltas(runs: list[Run], labels: list[str]) -> list[tuple[str, str, DeltaSection]]:
    """Each run's perturbed episodes paired with the reference's plain LIBERO episodes, or the reference's with
    another run's, where both are of the same checkpoint."""
    out = []
    reference, ref_label = runs[0], labels[0]
    for other, label in zip(runs[1:], labels[1:], strict=True):
        for (perturbed, p_label), (base, b_label) in (
            ((other, label), (reference, ref_label)),
            ((reference, ref_label), (other, label)),
        ):
            same = perturbed.manifest.policy.identity == base.manifest.policy.identity
            if same and has_perturbed(perturbed) and has_base(base):
                section = robustness_deltas(perturbed, base)
                assert section is not None
                out.append((p_label, b_label, section))
    return out


def render_markdown(c: Comparison) -> str:
    parts = [f"# evalkit comparison: {md_text(c.title)}", ""]
    for run, label in zip(c.runs, c.labels, strict=True):
        parts.append(
            f"- {md_text(label)}: {md_text(run.path)} (run {md_text(run.run_id)}, created "
            f"{md_text(run.manifest.created_at)})"
        )
    parts.append("")
    for note in c.protocol_notes:
        parts += [f"> **Warning:** {md_text(note)}", ""]
    parts += ["## Success by task (Wilson 95%)", "", markdown_table(c.rates), ""]
    for label, table in c.paired.items():
        parts += [f"## Paired difference: {md_text(label)} minus {md_text(c.labels[0])}", ""]
        parts += [markdown_table(paired_display(table)) if len(table) else "_no episodes pair_", ""]
    for p_label, b_label, section in c.deltas:
        parts += [robustness_deltas_markdown(section, b_label, delta_title(p_label, b_label)), ""]
    parts += [f"## Same episode, different outcome ({len(c.pairs)})", ""]
    for p in c.pairs:
        won = c.labels[0] if p.reference_success else p.other_label
        parts.append(
            f"- {md_text(p.suite)} task {p.task_id} init {p.init_state} seed {p.seed} ({md_text(p.instruction)}): "
            f"solved by {md_text(won)}"
        )
    return "\n".join(parts) + "\n"


def render_html(c: Comparison) -> str:
    return render_page(
        "compare.html.j2",
        c=c,
        runs=list(zip(c.runs, c.labels, strict=True)),
        rates_table=html_table(c.rates, "rates"),
        paired_tables={
            label: html_table(paired_display(t), f"paired-{i}")
            for i, (label, t) in enumerate(c.paired.items())
        },
        paired_plot=paired_chart(c),
        deltas_html=[
            robustness_deltas_html(section, b_label, delta_title(p_label, b_label), i + 1)
            for i, (p_label, b_label, section) in enumerate(c.deltas)
        ],
        manifests=json.dumps(
            {label: run.manifest.to_json() for run, label in zip(c.runs, c.labels, strict=True)},
            indent=2,
            default=str,
        ),
    )


def default_out_dir(run_dirs: list[Path]) -> Path:
    names = "__vs__".join(Path(d).resolve().name for d in run_dirs)
    return Path(run_dirs[0]).resolve().parent / "compare" / names[:200]


def write_comparison(
    run_dirs: list[Path], out_dir: Path | None = None, embed_budget: int = DEFAULT_EMBED_BUDGET
) -> tuple[Comparison, str, list[Path]]:
    out = make_out_dir(Path(out_dir) if out_dir is not None else default_out_dir(run_dirs))
    c = compare(run_dirs, out, embed_budget)
    markdown = render_markdown(c)
    files = write_files(
        out, {"compare.md": text_writer(markdown), "compare.html": text_writer(render_html(c))}
    )
    return c, markdown, files
