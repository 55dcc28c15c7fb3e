"""`evalkit leaderboard`: checkpoints x suites, one table per set of comparable protocols.

Runs share a table only where their protocol fingerprints agree suite by suite (from each manifest). A run whose
suite was measured under another protocol goes to another table, whose heading names the protocol differences.
Within a table, the episodes of one checkpoint on one suite are pooled over runs (deduplicated by episode
identity, newest run wins, and the page says where runs overlapped and which one counted). A table with two or more
checkpoints gets a paired ranking with a confidence set on each rank (`evalkit.report.ranking`). Published
reference numbers are listed in their own section and never pooled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.core.errors import EvalkitError
from evalkit.report.formatting import fmt_ci, fmt_pct, html_table, markdown_table, md_text
from evalkit.report.output import make_out_dir, render_page, text_writer, write_files
from evalkit.report.published import LIBERO_SUITES, PUBLISHED_LIBERO
from evalkit.report.ranking import GUARANTEE, Ranking, rank_checkpoints
from evalkit.report.stats import wilson
from evalkit.rundir.manifest import SuiteRecord
from evalkit.rundir.run import IDENTITY, Run, find_run_dirs, is_run_dir, load_run

SUITE_ORDER = (*LIBERO_SUITES, "libero_90")


def comparable_protocol(run: Run, suite: str) -> dict[str, Any]:
    """The protocol as it enters the fingerprint, flattened for diffs (episodes_per_task left out)."""
    record = run.manifest.suites.get(suite)
    return {} if record is None else flat_protocol(record)


def flat_protocol(record: SuiteRecord) -> dict[str, Any]:
    """A suite record's protocol as it enters the fingerprint, flattened for diffs (episodes_per_task left out)."""
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


@dataclass
class Cell:
    """The episodes of one checkpoint on one suite of a table, pooled over the runs that measured them."""

    label: str
    suite: str
    # one row per episode identity: where runs overlap, the newest run's
    episodes: pd.DataFrame
    runs: list[Run]
    # episode identities measured by more than one run
    overlap: int


def board_cells(board: Board) -> list[Cell]:
    grouped: dict[tuple[str, str], list[Run]] = {}
    for run, suite in board.units:
        grouped.setdefault((run.policy_label(), suite), []).append(run)
    cells = []
    for (label, suite), runs in grouped.items():
        runs = sorted(runs, key=lambda r: (r.manifest.created_at, str(r.path)))
        frames = [r.episodes[r.episodes["suite"] == suite] for r in runs]
        eps = pd.concat(frames, ignore_index=True)
        overlap = len(eps.loc[eps.duplicated(IDENTITY, keep=False), IDENTITY].drop_duplicates())
        # stable: concatenated oldest first, so the last of each identity is the newest run's
        cells.append(Cell(label, suite, eps.drop_duplicates(IDENTITY, keep="last"), runs, overlap))
    return cells


def duplicate_notes(cells: list[Cell]) -> list[str]:
    """Where runs of one checkpoint measured the same episodes under one protocol: which run's outcomes count (one
    note per checkpoint and set of runs, naming its suites)."""
    grouped: dict[tuple[str, tuple[str, ...]], list[Cell]] = {}
    for c in cells:
        if c.overlap:
            grouped.setdefault((c.label, tuple(r.run_id for r in c.runs)), []).append(c)
    notes = []
    for (label, _), group in grouped.items():
        runs = group[0].runs
        listed = ", ".join(f"{r.run_id} ({r.path.name}, {str(r.manifest.created_at)[:19]})" for r in runs)
        suites = ", ".join(sorted(c.suite for c in group))
        newest = runs[-1]
        notes.append(
            f"{label} on {suites}: {sum(c.overlap for c in group)} episode(s) were measured by {len(runs)} runs "
            f"({listed}); each counts once, with the newest run's outcome ({newest.run_id}, {newest.path.name})"
        )
    return notes


def board_frame(cells: list[Cell], board: Board, table: int) -> pd.DataFrame:
    """Long format: one row per (checkpoint, suite) plus an `average` row per checkpoint with every suite."""
    rows = []
    for cell in cells:
        eps = cell.episodes
        usable = eps[eps["termination"] != "error"]
        r = wilson(int(usable["success"].sum()), len(usable))
        rows.append(
            {
                "table": table,
                "checkpoint": cell.label,
                "suite": cell.suite,
                "protocol_fingerprint": board.fingerprints[cell.suite],
                "episodes": r.n,
                "successes": r.k,
                "success_pct": 100 * r.rate,
                "ci95_low_pct": 100 * r.low,
                "ci95_high_pct": 100 * r.high,
                "errors": int((eps["termination"] == "error").sum()),
                "runs": ",".join(sorted({run.run_id for run in cell.runs})),
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
    # every measured cell of every table
    long: pd.DataFrame
    # wide, one per board
    tables: list[pd.DataFrame]
    headings: list[str]
    # per board: how its protocol differs from table 1 on shared suites
    differences: list[list[str]]
    # per board: where runs of one checkpoint measured the same episodes, which run counts
    duplicates: list[list[str]]
    # per board with two or more checkpoints: the paired ranking
    rankings: list[Ranking | None]
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


def board_ranking(cells: list[Cell], alpha: float) -> Ranking | None:
    """The paired ranking of a table's checkpoints on the episodes (all its suites) every one of them finished."""
    outcomes: dict[str, list[pd.DataFrame]] = {}
    for cell in cells:
        usable = cell.episodes[cell.episodes["termination"] != "error"]
        outcomes.setdefault(cell.label, []).append(usable)
    if len(outcomes) < 2:
        return None
    series = {
        label: pd.concat(frames).set_index(IDENTITY)["success"].astype(bool)
        for label, frames in outcomes.items()
    }
    return rank_checkpoints(series, alpha)


def build_leaderboard(roots: list[Path], alpha: float = 0.05) -> Leaderboard:
    dirs = find_run_dirs(roots)
    if not dirs:
        raise EvalkitError(f"no run directories under {', '.join(str(r) for r in roots)}")
    runs = [load_run(d) for d in dirs]
    boards = group_boards(runs)
    if not boards:
        raise EvalkitError("the run directories hold no finished episodes")
    longs, tables, headings, differences, duplicates, rankings = [], [], [], [], [], []
    for i, board in enumerate(boards, start=1):
        cells = board_cells(board)
        long = board_frame(cells, board, i)
        longs.append(long)
        tables.append(wide_table(long, board.suites()))
        fps = ", ".join(f"{s} {board.fingerprints[s]}" for s in board.suites())
        headings.append(f"Table {i}: protocol {fps}")
        differences.append([] if i == 1 else describe_differences(board, boards[0]))
        duplicates.append(duplicate_notes(cells))
        rankings.append(board_ranking(cells, alpha))
    return Leaderboard(
        boards,
        pd.concat(longs, ignore_index=True),
        tables,
        headings,
        differences,
        duplicates,
        rankings,
        published_frame(),
    )


PUBLISHED_NOTE = (
    "Published numbers, copied from their sources (each row names it); not measured here, under their own protocols. "
    "No measured statistic above is computed from them."
)
CELLS_NOTE = (
    "Cells: success % [Wilson 95% interval] n=episodes (errors excluded). "
    "Average: mean of suite rates (openpi), only for checkpoints measured on every suite of the table. "
    "Rows are ordered by the observed rates; the paired ranking below says which order the data support."
)


def render_markdown(board: Leaderboard) -> str:
    parts = ["# evalkit leaderboard", "", CELLS_NOTE, ""]
    sections = zip(
        board.headings, board.tables, board.differences, board.duplicates, board.rankings, strict=True
    )
    for heading, table, diffs, dups, ranking in sections:
        parts += [f"## {heading}", ""]
        if diffs:
            parts += ["Differs from table 1:", *[f"- {md_text(d)}" for d in diffs], ""]
        parts += [markdown_table(table), ""]
        if dups:
            parts += ["Runs that measured the same episodes:", *[f"- {md_text(d)}" for d in dups], ""]
        if ranking is not None:
            parts += ["### Paired ranking", "", f"**{md_text(ranking.statement)}**", ""]
            if not ranking.table.empty:
                parts += [markdown_table(ranking.table), "", GUARANTEE, ""]
    parts += ["## Published reference numbers (LIBERO, not measured here)", "", f"> {PUBLISHED_NOTE}", ""]
    parts += [markdown_table(board.published, floatfmt="g"), ""]
    return "\n".join(parts)


def render_html(board: Leaderboard) -> str:
    sections = [
        {
            "heading": h,
            "differences": d,
            "duplicates": dups,
            "table": html_table(t, f"table-{i}"),
            "ranking": ranking,
            "ranking_table": None
            if ranking is None or ranking.table.empty
            else html_table(ranking.table, f"ranking-{i}"),
        }
        for i, (h, t, d, dups, ranking) in enumerate(
            zip(
                board.headings, board.tables, board.differences, board.duplicates, board.rankings, strict=True
            ),
            start=1,
        )
    ]
    return render_page(
        "leaderboard.html.j2",
        cells_note=CELLS_NOTE,
        sections=sections,
        guarantee=GUARANTEE,
        published=html_table(board.published, "published"),
        published_note=PUBLISHED_NOTE,
    )


def default_out_dir(roots: list[Path]) -> Path:
    """<first root>/leaderboard, or beside it when the first root is a run directory itself."""
    first = Path(roots[0])
    return (first.parent if is_run_dir(first) else first) / "leaderboard"


def write_leaderboard(
    roots: list[Path], out_dir: Path | None, formats: list[str], alpha: float = 0.05
) -> tuple[Path, str, list[Path]]:
    if not 0 < alpha < 0.5:
        raise EvalkitError(f"--alpha must be in (0, 0.5), got {alpha}")
    board = build_leaderboard(roots, alpha)
    markdown = render_markdown(board)
    out = make_out_dir(Path(out_dir) if out_dir is not None else default_out_dir(roots))
    writers: dict[str, Callable[[Path], Any]] = {}
    if "md" in formats:
        writers["leaderboard.md"] = text_writer(markdown)
    if "csv" in formats:
        writers["leaderboard.csv"] = lambda path: board.long.to_csv(path, index=False)
        writers["published.csv"] = lambda path: board.published.to_csv(path, index=False)
    if "parquet" in formats:
        writers["leaderboard.parquet"] = lambda path: board.long.to_parquet(path, index=False)
    if "html" in formats:
        writers["leaderboard.html"] = text_writer(render_html(board))
    return out, markdown, write_files(out, writers)


def leaderboard_link(out: Path, files: list[Path]) -> str:
    """A file:// link to the HTML page, else the output directory."""
    html = out / "leaderboard.html"
    return html.resolve().as_uri() if html in files else str(out)
