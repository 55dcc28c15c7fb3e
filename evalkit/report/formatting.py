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


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".1f") -> str:
    """A pipe table; every text cell and header is literal text (`md_text`)."""
    if frame.empty:
        return "_(none)_"
    escaped = frame.map(lambda v: md_text(v) if isinstance(v, str) else v)
    # NaN -> None, which tabulate prints as missingval
    shown = escaped.astype(object).where(frame.notna(), None)
    shown.columns = [md_text(c) for c in shown.columns]
    return shown.to_markdown(index=False, floatfmt=floatfmt, missingval="—")


def html_table(frame: pd.DataFrame, table_id: str | None = None) -> str:
    if frame.empty:
        return "<p><em>(none)</em></p>"
    return frame.to_html(index=False, escape=True, na_rep="—", table_id=table_id, classes="data", border=0)


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


def wrap_label(text: str, width: int = 38, max_lines: int = 2) -> str:
    """A plot label: `text` wrapped at words into at most `max_lines` lines, the last one shortened with "…"."""
    import textwrap

    lines = textwrap.wrap(" ".join(str(text).split()), width) or [""]
    if len(lines) > max_lines:
        rest = " ".join(lines[max_lines - 1 :])
        lines = [*lines[: max_lines - 1], shorten_at_word(rest, width)]
    return "\n".join(lines)
