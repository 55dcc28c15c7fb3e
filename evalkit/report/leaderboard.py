"""`evalkit leaderboard`: checkpoints x suites, one table per set of comparable protocols.

Runs share a table only where their protocol fingerprints agree suite by suite (from each manifest). A run whose
suite was measured under another protocol goes to another table, whose heading names the protocol differences.
Within a table, the episodes of one checkpoint on one suite are pooled over runs (deduplicated by episode
identity, newest run wins). Published reference numbers are listed in their own section and never pooled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.core.errors import EvalkitError
from evalkit.report.formatting import fmt_ci, fmt_pct, html_table, markdown_table
from evalkit.report.published import LIBERO_SUITES, PUBLISHED_LIBERO
from evalkit.report.stats import wilson
from evalkit.rundir.run import EPISODE_KEY, Run, find_run_dirs, load_run

SUITE_ORDER = (*LIBERO_SUITES, "libero_90")


def comparable_protocol(run: Run, suite: str) -> dict[str, Any]:
    """The protocol as it enters the fingerprint, flattened for diffs (episodes_per_task left out)."""
    record = run.manifest.suites.get(suite)
    if record is None:
        return {}
    flat: dict[str, Any] = {"kind": record.kind}
    for key, value in record.protocol.items():
        if key != "episodes_per_task":
            flat[key] = value
    for key, value in record.simulator.items():
        flat[f"simulator.{key}"] = value
    return flat


def protocol_diff(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(key, a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


@dataclass
class Board:
    """One leaderboard table: a fingerprint per suite and the runs (per suite) measured under it."""

    fingerprints: dict[str, str] = field(default_factory=dict)
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)
    units: list[tuple[Run, str]] = field(default_factory=list)  # (run, suite)

    def accepts(self, suite: str, fp: str) -> bool:
        return self.fingerprints.get(suite, fp) == fp

    def add(self, run: Run, suite: str, fp: str) -> None:
        self.fingerprints[suite] = fp
        self.protocols.setdefault(suite, comparable_protocol(run, suite))
        self.units.append((run, suite))

    def suites(self) -> list[str]:
        known = [s for s in SUITE_ORDER if s in self.fingerprints]
        return known + sorted(s for s in self.fingerprints if s not in SUITE_ORDER)


def group_boards(runs: list[Run]) -> list[Board]:
    """Assign each (run, suite) to the first table that has no other fingerprint for that suite."""
    boards: list[Board] = []
    ordered = sorted(runs, key=lambda r: (r.manifest.created_at, str(r.path)))
    for run in ordered:
        for suite, fp in sorted(run.suite_fingerprints().items()):
            if run.episodes[run.episodes["suite"] == suite].empty:
                continue
            board = next((b for b in boards if b.accepts(suite, fp)), None)
            if board is None:
                board = Board()
                boards.append(board)
            board.add(run, suite, fp)
    return boards


def board_frame(board: Board, table: int) -> pd.DataFrame:
    """Long format: one row per (checkpoint, suite) plus an `average` row per checkpoint with every suite."""
    pooled: dict[tuple[str, str], list[pd.DataFrame]] = {}
    run_ids: dict[tuple[str, str], list[str]] = {}
    for run, suite in board.units:
        key = (run.policy_label(), suite)
        eps = run.episodes[run.episodes["suite"] == suite].assign(_created=run.manifest.created_at)
        pooled.setdefault(key, []).append(eps)
        run_ids.setdefault(key, []).append(run.run_id)
    rows = []
    for (label, suite), frames in pooled.items():
        eps = pd.concat(frames).sort_values("_created").drop_duplicates(EPISODE_KEY, keep="last")
        usable = eps[eps["termination"] != "error"]
        r = wilson(int(usable["success"].sum()), len(usable))
        rows.append(
            {
                "table": table,
                "checkpoint": label,
                "suite": suite,
                "protocol_fingerprint": board.fingerprints[suite],
                "episodes": r.n,
                "successes": r.k,
                "success_pct": 100 * r.rate,
                "ci95_low_pct": 100 * r.low,
                "ci95_high_pct": 100 * r.high,
                "errors": int((eps["termination"] == "error").sum()),
                "runs": ",".join(sorted(set(run_ids[(label, suite)]))),
            }
        )
    frame = pd.DataFrame(rows)
    suites = board.suites()
    averages = []
    for label, group in frame.groupby("checkpoint", sort=True):
        tested = group[group["episodes"] > 0]
        if len(suites) > 1 and set(tested["suite"]) == set(suites):
            averages.append(
                {
                    "table": table,
                    "checkpoint": label,
                    "suite": "average",
                    "protocol_fingerprint": "",
                    "episodes": int(tested["episodes"].sum()),
                    "successes": int(tested["successes"].sum()),
                    "success_pct": float(tested["success_pct"].mean()),
                    "ci95_low_pct": math.nan,
                    "ci95_high_pct": math.nan,
                    "errors": int(group["errors"].sum()),
                    "runs": "",
                }
            )
    return pd.concat([frame, pd.DataFrame(averages)], ignore_index=True) if averages else frame


def wide_table(long: pd.DataFrame, suites: list[str]) -> pd.DataFrame:
    """Checkpoints as rows, suites (+ average) as columns, cells 'rate [low, high] n=N'."""
    columns = suites + (["average"] if (long["suite"] == "average").any() else [])
    rows = []
    for label, group in long.groupby("checkpoint", sort=False):
        row: dict[str, Any] = {"checkpoint": label}
        by_suite = {r.suite: r for r in group.itertuples()}
        for suite in columns:
            r = by_suite.get(suite)
            if r is None:
                row[suite] = "—"
            elif suite == "average":
                row[suite] = f"{fmt_pct(r.success_pct)}"
            else:
                row[suite] = (
                    f"{fmt_pct(r.success_pct)} {fmt_ci(r.ci95_low_pct, r.ci95_high_pct)} n={r.episodes}"
                )
        rows.append(row)
    wide = pd.DataFrame(rows, columns=["checkpoint", *columns])
    # Best first: by the average where a checkpoint has one, then by the mean of the suites it was measured on.
    measured = long[long["suite"] != "average"].groupby("checkpoint")["success_pct"].mean()
    average = long[long["suite"] == "average"].set_index("checkpoint")["success_pct"]
    wide["_has_avg"] = wide["checkpoint"].isin(average.index)
    wide["_key"] = wide["checkpoint"].map(average).fillna(wide["checkpoint"].map(measured)).fillna(-1)
    wide = wide.sort_values(["_has_avg", "_key", "checkpoint"], ascending=[False, False, True])
    return wide.drop(columns=["_has_avg", "_key"]).reset_index(drop=True)


def published_frame() -> pd.DataFrame:
    rows = []
    for p in PUBLISHED_LIBERO:
        row: dict[str, Any] = {"source": p.source, "model / protocol": p.model}
        for suite in LIBERO_SUITES:
            row[suite] = p.success_pct.get(suite)
        row["average"] = p.average_pct
        row["episodes/suite"] = p.episodes_per_suite
        row["note"] = p.note
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["episodes/suite"] = frame["episodes/suite"].astype("Int64")
    return frame


@dataclass
class Leaderboard:
    boards: list[Board]
    long: pd.DataFrame  # every measured cell of every table
    tables: list[pd.DataFrame]  # wide, one per board
    headings: list[str]
    differences: list[list[str]]  # per board: how its protocol differs from table 1 on shared suites
    published: pd.DataFrame


def describe_differences(board: Board, first: Board) -> list[str]:
    lines = []
    for suite in board.suites():
        if suite not in first.protocols:
            continue
        diff = protocol_diff(first.protocols[suite], board.protocols[suite])
        changes = (
            ", ".join(f"{key}: {b!r} (table 1: {a!r})" for key, a, b in diff) or "manifests give no diff"
        )
        lines.append(f"{suite}: {changes}")
    return lines or ["no suite in common with table 1"]


def build_leaderboard(roots: list[Path]) -> Leaderboard:
    dirs = find_run_dirs(roots)
    if not dirs:
        raise EvalkitError(f"no run directories under {', '.join(str(r) for r in roots)}")
    runs = [load_run(d) for d in dirs]
    boards = group_boards(runs)
    if not boards:
        raise EvalkitError("the run directories hold no finished episodes")
    longs, tables, headings, differences = [], [], [], []
    for i, board in enumerate(boards, start=1):
        long = board_frame(board, i)
        longs.append(long)
        tables.append(wide_table(long, board.suites()))
        fps = ", ".join(f"{s} `{board.fingerprints[s]}`" for s in board.suites())
        headings.append(f"Table {i}: protocol {fps}")
        differences.append([] if i == 1 else describe_differences(board, boards[0]))
    return Leaderboard(
        boards, pd.concat(longs, ignore_index=True), tables, headings, differences, published_frame()
    )


PUBLISHED_NOTE = (
    "Published numbers, copied from their sources (each row names it); not measured here, under their own protocols. "
    "No measured statistic above is computed from them."
)


def render_markdown(board: Leaderboard) -> str:
    parts = [
        "# evalkit leaderboard",
        "",
        "Cells: success % [Wilson 95% interval] n=episodes (errors excluded). "
        "Average: mean of suite rates (openpi), only for checkpoints measured on every suite of the table.",
        "",
    ]
    for heading, table, diffs in zip(board.headings, board.tables, board.differences, strict=True):
        parts += [f"## {heading}", ""]
        if diffs:
            parts += ["Differs from table 1:", *[f"- {d}" for d in diffs], ""]
        parts += [markdown_table(table), ""]
    parts += ["## Published reference numbers (LIBERO, not measured here)", "", f"> {PUBLISHED_NOTE}", ""]
    parts += [markdown_table(board.published, floatfmt="g"), ""]
    return "\n".join(parts)


def render_html(board: Leaderboard) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("evalkit.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    sections = [
        {"heading": h.replace("`", ""), "differences": d, "table": html_table(t, f"table-{i}")}
        for i, (h, t, d) in enumerate(
            zip(board.headings, board.tables, board.differences, strict=True), start=1
        )
    ]
    return env.get_template("leaderboard.html.j2").render(
        sections=sections, published=html_table(board.published, "published"), published_note=PUBLISHED_NOTE
    )


def write_leaderboard(roots: list[Path], out_dir: Path | None, formats: list[str]) -> tuple[str, list[Path]]:
    board = build_leaderboard(roots)
    markdown = render_markdown(board)
    files: list[Path] = []
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EvalkitError(f"cannot create {out_dir}: {exc}") from exc
        if "md" in formats:
            files.append(out_dir / "leaderboard.md")
            files[-1].write_text(markdown)
        if "csv" in formats:
            files.append(out_dir / "leaderboard.csv")
            board.long.to_csv(files[-1], index=False)
            files.append(out_dir / "published.csv")
            board.published.to_csv(files[-1], index=False)
        if "parquet" in formats:
            files.append(out_dir / "leaderboard.parquet")
            board.long.to_parquet(files[-1], index=False)
        if "html" in formats:
            files.append(out_dir / "leaderboard.html")
            files[-1].write_text(render_html(board))
    return markdown, files
