"""Report plots drawn with matplotlib (no pyplot state) and returned as inline SVG markup; None where there is
nothing to draw (the page then says so in words instead of showing an empty chart)."""

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


def load_matplotlib() -> None:
    """Import matplotlib with its file backend (lazily: commands that draw no plot never pay for it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure  # noqa: F401


def _figure(width: float, height: float):
    load_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _label_height(labels: list[str]) -> float:
    """Inches for a bar chart with these (wrapped) labels."""
    lines = sum(label.count("\n") + 1 for label in labels)
    return max(1.6, 0.2 * lines + 0.12 * len(labels) + 0.9)


def task_success_bars(tasks: pd.DataFrame) -> str | None:
    """Horizontal bars of per-task success (%) with Wilson 95% whiskers."""
    tested = tasks[tasks["episodes"] > 0].reset_index(drop=True)
    if tested.empty:
        return None
    several = tested["suite"].nunique() > 1
    labels = [
        wrap_label(f"{row.suite}: {row.task}" if several else str(row.task)) for row in tested.itertuples()
    ]
    fig = _figure(9.0, _label_height(labels))
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


def steps_histogram(episodes: pd.DataFrame) -> str | None:
    """Histogram of steps to success, one series per suite; integer counts on the y axis."""
    from matplotlib.ticker import MaxNLocator

    won = episodes[episodes["termination"] == "success"]
    if won.empty:
        return None
    fig = _figure(8.0, 3.0)
    ax = fig.add_subplot()
    series = [(suite, group["steps"].to_numpy()) for suite, group in won.groupby("suite", sort=True)]
    ax.hist([s for _, s in series], bins=20, label=[name for name, _ in series], stacked=True)
    ax.legend(fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("control steps to success")
    ax.set_ylabel("episodes")
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig)


def paired_differences(rows: pd.DataFrame) -> str | None:
    """A forest plot of paired differences (percentage points) with their 95% intervals: one row per task and the
    overall one, one marker series per compared run. `rows`: label (y axis), series, diff_pp, low_pp, high_pp."""
    if rows.empty:
        return None
    labels = list(dict.fromkeys(rows["label"]))
    series = list(dict.fromkeys(rows["series"]))
    wrapped = [wrap_label(label) for label in labels]
    fig = _figure(9.0, _label_height(wrapped))
    ax = fig.add_subplot()
    step = 0.6 / max(1, len(series))
    for k, name in enumerate(series):
        part = rows[rows["series"] == name]
        y = [labels.index(label) + (k - (len(series) - 1) / 2) * step for label in part["label"]]
        diff = part["diff_pp"].to_numpy(dtype=float)
        err = [diff - part["low_pp"].to_numpy(dtype=float), part["high_pp"].to_numpy(dtype=float) - diff]
        ax.errorbar(diff, y, xerr=err, fmt="o", capsize=3, label=name)
    ax.axvline(0, color="#333333", linewidth=1)
    ax.set_yticks(range(len(labels)), wrapped, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-105, 105)
    ax.set_xlabel("difference to the reference (percentage points), whiskers: Newcombe paired 95% interval")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _svg(fig)


def success_curve(
    curve: pd.DataFrame, selected: float | None = None, heldout: pd.Series | None = None
) -> str | None:
    """Success (%) against training step with Wilson 95% whiskers, one line per scope (suite, or "overall").
    `curve`: step, scope, success_pct, ci95_low_pct, ci95_high_pct. `selected` marks the selected checkpoint's step;
    `heldout` (success_pct, ci95_low_pct, ci95_high_pct) draws its held-out re-evaluation at that step."""
    tested = curve[curve["episodes"] > 0]
    if tested.empty:
        return None
    fig = _figure(9.0, 3.6)
    ax = fig.add_subplot()
    for scope, part in tested.groupby("scope", sort=False):
        part = part.sort_values("step")
        rate = part["success_pct"].to_numpy(dtype=float)
        err = [
            rate - part["ci95_low_pct"].to_numpy(dtype=float),
            part["ci95_high_pct"].to_numpy(dtype=float) - rate,
        ]
        ax.errorbar(part["step"], rate, yerr=err, fmt="o-", capsize=3, label=str(scope))
    if selected is not None:
        ax.axvline(selected, color="#333333", linestyle=":", linewidth=1, label="selected checkpoint")
    if selected is not None and heldout is not None:
        rate = float(heldout["success_pct"])
        err = [[rate - float(heldout["ci95_low_pct"])], [float(heldout["ci95_high_pct"]) - rate]]
        ax.errorbar(
            [selected], [rate], yerr=err, fmt="D", color="#b42318", capsize=4, label="held-out re-evaluation"
        )
    ax.set_ylim(-2, 102)
    ax.set_xlabel("training step")
    ax.set_ylabel("success (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig)
