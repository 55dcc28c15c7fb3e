"""Report plots drawn with matplotlib (no pyplot state) and returned as inline SVG markup."""

from __future__ import annotations

import io

import pandas as pd

from evalkit.report.formatting import wrap_label


def _svg(fig) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: smaller, searchable
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype so it can sit inside HTML


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def task_success_bars(tasks: pd.DataFrame) -> str:
    """Horizontal bars of per-task success (%) with Wilson 95% whiskers."""
    tested = tasks[tasks["episodes"] > 0].reset_index(drop=True)
    several = tested["suite"].nunique() > 1
    labels = [
        wrap_label(f"{row.suite}: {row.task}" if several else str(row.task)) for row in tested.itertuples()
    ]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig = _figure(9.0, max(1.6, 0.2 * lines + 0.12 * len(labels) + 0.9))
    ax = fig.add_subplot()
    y = list(range(len(tested)))
    rate = tested["success_pct"].to_numpy(dtype=float)
    err = [
        rate - tested["ci95_low_pct"].to_numpy(dtype=float),
        tested["ci95_high_pct"].to_numpy(dtype=float) - rate,
    ]
    ax.barh(y, rate, xerr=err, color="#4c78a8", ecolor="#333333", capsize=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("success (%), whiskers: Wilson 95% interval")
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def steps_histogram(episodes: pd.DataFrame) -> str:
    """Histogram of steps to success, one series per suite."""
    fig = _figure(8.0, 3.0)
    ax = fig.add_subplot()
    won = episodes[(episodes["termination"] == "success")]
    series = [(suite, group["steps"].to_numpy()) for suite, group in won.groupby("suite", sort=True)]
    if series:
        ax.hist([s for _, s in series], bins=20, label=[name for name, _ in series], stacked=True)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no successful episodes", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("control steps to success")
    ax.set_ylabel("episodes")
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig)
