"""How numbers look in markdown and HTML tables."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def fmt_pct(value: float, digits: int = 1) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def fmt_ci(low: float, high: float) -> str:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (low, high)):
        return "—"
    return f"[{low:.1f}, {high:.1f}]"


def with_ci_column(frame: pd.DataFrame) -> pd.DataFrame:
    """Replace success_pct / ci95_low_pct / ci95_high_pct by two display columns."""
    out = frame.copy()
    out["success %"] = [fmt_pct(v) for v in frame["success_pct"]]
    out["95% CI (Wilson)"] = [
        fmt_ci(lo, hi) for lo, hi in zip(frame["ci95_low_pct"], frame["ci95_high_pct"], strict=True)
    ]
    out = out.drop(columns=["success_pct", "ci95_low_pct", "ci95_high_pct"])
    cols = [c for c in out.columns if c not in ("success %", "95% CI (Wilson)")]
    at = cols.index("successes") + 1 if "successes" in cols else len(cols)
    return out[cols[:at] + ["success %", "95% CI (Wilson)"] + cols[at:]]


# Text from outside evalkit (task instructions from suite files, a policy name a remote server sends, checkpoint
# paths, error messages) must show as text in markdown as it does in HTML: no raw HTML, no links or code spans
# opened, no table cell split. `&` first, so that the entities added after it stay as written.
MARKDOWN_ESCAPES = (
    ("&", "&amp;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    ("\\", "\\\\"),
    ("`", "\\`"),
    ("*", "\\*"),
    ("|", "\\|"),
    ("](", "]\\("),
    ("\r", " "),
    ("\n", " "),
)


def md_text(value: Any) -> str:
    """`value` as literal markdown text (see MARKDOWN_ESCAPES)."""
    text = str(value)
    for raw, escaped in MARKDOWN_ESCAPES:
        text = text.replace(raw, escaped)
    return text


# How the data files' column names (CSV, Parquet: snake_case, units in the suffix) read in md and HTML tables.
HEADERS = {
    "task_id": "task id",
    "init_state": "init state",
    "median_steps_to_success": "median steps to success",
    "policy_calls": "policy calls",
    "mean_ms": "mean (ms)",
    "median_of_p50_ms": "median episode p50 (ms)",
    "worst_p99_ms": "worst episode p99 (ms)",
    "max_ms": "max (ms)",
    "mean_episode_wall_s": "mean episode wall time (s)",
    "max_steps": "max steps",
    "protocol_fingerprint": "protocol fingerprint",
    "success_pct": "success %",
    "ci95_low_pct": "95% CI low %",
    "ci95_high_pct": "95% CI high %",
}


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns=HEADERS)


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".1f") -> str:
    """A pipe table with readable headers; every text cell and header is literal text (`md_text`)."""
    if frame.empty:
        return "_(none)_"
    frame = readable(frame)
    escaped = frame.map(lambda v: md_text(v) if isinstance(v, str) else v)
    # NaN -> None, which tabulate prints as missingval
    shown = escaped.astype(object).where(frame.notna(), None)
    shown.columns = [md_text(c) for c in shown.columns]
    return shown.to_markdown(index=False, floatfmt=floatfmt, missingval="—")


def html_table(frame: pd.DataFrame, table_id: str | None = None) -> str:
    """An HTML table with readable headers, every cell escaped."""
    if frame.empty:
        return "<p><em>(none)</em></p>"
    return readable(frame).to_html(
        index=False, escape=True, na_rep="—", table_id=table_id, classes="data", border=0
    )


def plain(value: Any) -> str:
    return "—" if value is None or value == "" else str(value)


def shorten_at_word(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut between words with "…" (a single longer word is cut in it)."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if text[width - 1] != " " and " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut between words in the middle ("pick up the bowl … initstate 1"):
    instructions of task variants (LIBERO-plus) differ at their end, so about half the room goes to the end."""
    words = " ".join(str(text).split()).split(" ")
    if len(" ".join(words)) <= width:
        return " ".join(words)
    tail: list[str] = []
    while len(words) > 1 and len(" ".join([words[-1], *tail])) <= (width - 2) // 2:
        tail.insert(0, words.pop())
    head: list[str] = []
    while words and len(" ".join([*head, words[0], "…", *tail])) <= width:
        head.append(words.pop(0))
    if not head or not tail:
        return shorten_at_word(str(text), width)
    return " ".join([*head, "…", *tail])


def wrap_label(text: str, width: int = 38, max_lines: int = 3) -> str:
    """A plot label: `text` wrapped at words into at most `max_lines` lines; a longer text keeps its first lines
    and its end ("… view 0 0 100 0 0 initstate 1"), where task variants differ."""
    import textwrap

    lines = textwrap.wrap(" ".join(str(text).split()), width) or [""]
    if len(lines) > max_lines:
        words = " ".join(lines[max_lines - 1 :]).split(" ")
        tail: list[str] = []
        while words and len(" ".join(["…", words[-1], *tail])) <= width:
            tail.insert(0, words.pop())
        lines = [*lines[: max_lines - 1], " ".join(["…", *tail])]
    return "\n".join(lines)
