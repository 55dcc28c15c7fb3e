"""The LIBERO-plus robustness section of a report: success by perturbation dimension and by level.

Episodes of `liberoplus` suites are grouped by their task's `dimension` and `level` tags (what the variant name
encodes), as the run's manifest records them, pooled across suites, with Wilson 95% intervals, beside the
published pi0.5 figures (community runs, LIBERO-plus issue #57), which are shown, never pooled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from evalkit.report.stats import wilson
from evalkit.rundir.run import Run

KIND = "liberoplus"
PUBLISHED_SOURCE = "LIBERO-plus issue #57 (community runs of pi05_libero over the 10,030 variants; 84.2 overall, 84.7 with replan 5)"
PUBLISHED_PI05 = {
    "camera": 67.3,
    "robot": 78.8,
    "language": 86.3,
    "light": 95.8,
    "background": 93.8,
    "noise": 87.3,
    "layout": 86.4,
    "overall": 84.2,
}
# LIBERO-plus's perturbation dimensions, in the paper's order
DIMENSIONS = tuple(d for d in PUBLISHED_PI05 if d != "overall")
LEVEL_MEANING = {
    "noise": "severity 1-10 within the noise type (motion, Gaussian, zoom, fog, glass)",
    "layout": "target displacement level 1-5 (`_levelL_`); added-object variants carry no level",
}


@dataclass
class RobustnessSection:
    # dimension, variants, successes, success_pct, ci95_*, published_pi05_pct
    by_dimension: pd.DataFrame
    # dimension, level, variants, successes, success_pct, ci95_*
    by_level: pd.DataFrame


def _variant_episodes(run: Run) -> pd.DataFrame:
    """Usable episodes of LIBERO-plus suites with their task's dimension and level tags."""
    tags = {
        (suite, int(task["task_id"])): task.get("tags") or {}
        for suite, record in run.manifest.suites.items()
        if record.kind == KIND
        for task in record.tasks
    }
    rows = []
    for row in run.usable.itertuples():
        tag = tags.get((row.suite, int(row.task_id)), {})
        if tag.get("dimension") in DIMENSIONS:
            rows.append(
                {"dimension": tag["dimension"], "level": tag.get("level"), "success": bool(row.success)}
            )
    return pd.DataFrame(rows, columns=["dimension", "level", "success"])


def _rate_row(k: int, n: int) -> dict:
    r = wilson(k, n)
    pct = lambda x: round(100 * x, 1) if not math.isnan(x) else math.nan  # noqa: E731
    return {
        "variants": n,
        "successes": k,
        "success_pct": pct(r.rate),
        "ci95_low_pct": pct(r.low),
        "ci95_high_pct": pct(r.high),
    }


def robustness_section(run: Run) -> RobustnessSection | None:
    """The section's tables, or None when the run has no LIBERO-plus episode."""
    episodes = _variant_episodes(run)
    if episodes.empty:
        return None
    rows = []
    for dimension in (*DIMENSIONS, "overall"):
        group = episodes if dimension == "overall" else episodes[episodes["dimension"] == dimension]
        rows.append(
            {
                "dimension": dimension,
                **_rate_row(int(group["success"].sum()), len(group)),
                "published_pi05_pct": PUBLISHED_PI05[dimension],
            }
        )
    levels = []
    leveled = episodes.dropna(subset=["level"])
    for (dimension, level), group in leveled.groupby(["dimension", "level"], sort=True):
        levels.append(
            {
                "dimension": dimension,
                "level": int(level),
                **_rate_row(int(group["success"].sum()), len(group)),
            }
        )
    by_level = pd.DataFrame(
        levels,
        columns=[
            "dimension",
            "level",
            "variants",
            "successes",
            "success_pct",
            "ci95_low_pct",
            "ci95_high_pct",
        ],
    )
    return RobustnessSection(pd.DataFrame(rows), by_level)


def _display(section: RobustnessSection) -> tuple[pd.DataFrame, pd.DataFrame]:
    from evalkit.report.formatting import with_ci_column

    dims = with_ci_column(section.by_dimension).rename(columns={"published_pi05_pct": "pi05 published %"})
    return dims, with_ci_column(section.by_level)


def markdown(section: RobustnessSection) -> str:
    from evalkit.report.formatting import markdown_table

    dims, levels = _display(section)
    parts = [
        "## LIBERO-plus robustness",
        "",
        "Success by perturbation dimension, pooled over the run's LIBERO-plus suites (Wilson 95%). "
        f"*pi05 published* is not measured here: {PUBLISHED_SOURCE}; dimensions with 0 variants were not run "
        "(see `evalkit suites` for what this machine can run).",
        "",
        markdown_table(dims),
        "",
        "### By level",
        "",
        "Levels are what the variant names encode: "
        + "; ".join(f"{d}: {m}" for d, m in LEVEL_MEANING.items())
        + ". "
        "Camera, robot, language, light and background names carry a variant number, not a severity.",
        "",
        markdown_table(levels) if not levels.empty else "_No variant with a level was run._",
        "",
    ]
    return "\n".join(parts)


def level_plot(section: RobustnessSection) -> str | None:
    """Success (%) against level, one line per dimension, Wilson whiskers; None without a leveled variant."""
    from evalkit.report.plots import _figure, _svg

    if section.by_level.empty:
        return None
    fig = _figure(7.0, 3.2)
    ax = fig.add_subplot()
    for dimension, group in section.by_level.groupby("dimension", sort=True):
        rate = group["success_pct"].to_numpy(dtype=float)
        err = [
            rate - group["ci95_low_pct"].to_numpy(dtype=float),
            group["ci95_high_pct"].to_numpy(dtype=float) - rate,
        ]
        ax.errorbar(group["level"], rate, yerr=err, marker="o", capsize=3, label=dimension)
        published = PUBLISHED_PI05.get(dimension)
        if published is not None:
            ax.axhline(published, linestyle=":", linewidth=1, color=ax.lines[-1].get_color())
    ax.set_ylim(0, 100)
    ax.set_xlabel("perturbation level (as the variant name encodes it)")
    ax.set_ylabel("success (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="dotted: pi05 published (all levels)", title_fontsize=7)
    return _svg(fig)


def html(section: RobustnessSection) -> str:
    from evalkit.report.formatting import html_table

    dims, levels = _display(section)
    plot = level_plot(section)
    figure = (
        f'<figure id="plot-robustness-levels">{plot}<figcaption>Success against perturbation level with Wilson 95% '
        "intervals.</figcaption></figure>"
        if plot
        else "<p><em>No variant with a level was run.</em></p>"
    )
    return (
        '<section id="robustness"><h2>LIBERO-plus robustness</h2>'
        f"<p>Success by perturbation dimension (Wilson 95%). pi05 published: {PUBLISHED_SOURCE}; not measured here.</p>"
        f"{html_table(dims, 'robustness-dimensions')}<h3>By level</h3>"
        f"<p>{'; '.join(f'{d}: {m}' for d, m in LEVEL_MEANING.items())}.</p>"
        f"{html_table(levels, 'robustness-levels') if not levels.empty else ''}{figure}</section>"
    )
