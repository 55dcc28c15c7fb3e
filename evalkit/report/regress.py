"""`evalkit regress`: is the candidate run worse than the baseline? A paired gate with exact tests.

Rules (also in `evalkit regress --help`):
- Only episodes with a final outcome count; error episodes are left out of pairing (with a warning).
- Episodes pair on their identity (suite, task_id, init_state, seed). A row (each suite, and "overall" over all
  suites both runs share) with at least `min_episodes` pairs is tested with the exact McNemar test (a binomial test
  of the discordant pairs); episodes without a partner are then reported with Fisher's exact test, separately,
  and do not enter the verdict. A row with fewer pairs but at least `min_episodes` episodes in each run is tested
  unpaired with Fisher's exact test on all its episodes (the output says so). Otherwise the row is inconclusive.
- The interval of the difference (candidate - baseline) is Newcombe's hybrid score interval: paired (method 10 with
  the continuity-adjusted phi) for McNemar rows, independent for Fisher rows. See `evalkit.report.stats`.
- A tested row is a regression when the one-sided p-value for a drop is below alpha (per-suite rows use alpha / the
  number of suites, Bonferroni, so that a regression confined to one suite is caught without inflating the false
  alarm rate), or when the measured drop exceeds `max_drop` percentage points.
- Exit codes: 0 no regression; 1 regression in any tested row; 2 usage error or refusal (different protocol
  fingerprints without --force); 3 inconclusive (no regression found and the overall row had too few episodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from evalkit.core.errors import EvalkitError
from evalkit.report.formatting import markdown_table
from evalkit.report.leaderboard import comparable_protocol, protocol_diff
from evalkit.report.stats import Comparison, PairedCounts, compare_paired, compare_unpaired
from evalkit.rundir.run import EPISODE_KEY, Run

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
Decision = Literal["regression", "no regression", "improvement", "inconclusive"]


@dataclass
class RowVerdict:
    scope: str  # a suite name or "overall"
    pairs: int
    baseline_only: int
    candidate_only: int
    alpha: float
    comparison: Comparison | None  # None: inconclusive
    leftover: Comparison | None  # Fisher on the unpaired episodes of a paired row (reported, not decisive)
    decision: Decision
    reasons: list[str] = field(default_factory=list)


@dataclass
class RegressionResult:
    rows: list[RowVerdict]
    warnings: list[str]
    exit_code: int


def paired_counts(pairs: pd.DataFrame) -> PairedCounts:
    a, b = pairs["success_base"].astype(bool), pairs["success_cand"].astype(bool)
    return PairedCounts(
        both=int((a & b).sum()),
        lost=int((a & ~b).sum()),
        gained=int((~a & b).sum()),
        neither=int((~a & ~b).sum()),
    )


def judge_row(
    scope: str,
    base: pd.DataFrame,
    cand: pd.DataFrame,
    alpha: float,
    max_drop: float | None,
    min_episodes: int,
) -> RowVerdict:
    keys = EPISODE_KEY
    merged = base[[*keys, "success"]].merge(
        cand[[*keys, "success"]], on=keys, how="outer", suffixes=("_base", "_cand"), indicator=True
    )
    pairs = merged[merged["_merge"] == "both"]
    base_only = merged[merged["_merge"] == "left_only"]
    cand_only = merged[merged["_merge"] == "right_only"]
    verdict = RowVerdict(scope, len(pairs), len(base_only), len(cand_only), alpha, None, None, "inconclusive")
    if len(pairs) >= min_episodes:
        verdict.comparison = compare_paired(paired_counts(pairs))
        if len(base_only) and len(cand_only):
            verdict.leftover = compare_unpaired(
                int(base_only["success_base"].astype(bool).sum()),
                len(base_only),
                int(cand_only["success_cand"].astype(bool).sum()),
                len(cand_only),
            )
    elif min(len(base), len(cand)) >= min_episodes:
        verdict.comparison = compare_unpaired(
            int(base["success"].sum()), len(base), int(cand["success"].sum()), len(cand)
        )
        verdict.reasons.append(f"only {len(pairs)} pairs: unpaired Fisher test on all episodes")
    else:
        verdict.reasons.append(f"too few episodes: {len(pairs)} pairs < --min-episodes {min_episodes}")
        return verdict
    c = verdict.comparison
    drop_pp = -100.0 * c.diff
    if c.p_drop < alpha:
        verdict.reasons.append(f"significant drop: one-sided p={c.p_drop:.3g} < {alpha:.3g}")
    if max_drop is not None and drop_pp > max_drop:
        verdict.reasons.append(f"drop {drop_pp:.1f} pp > --max-drop {max_drop:g} pp")
    if any(r.startswith(("significant drop", "drop ")) for r in verdict.reasons):
        verdict.decision = "regression"
    elif c.diff > 0 and c.p_two_sided < alpha:
        verdict.decision = "improvement"
    else:
        verdict.decision = "no regression"
    return verdict


def check_protocols(baseline: Run, candidate: Run, force: bool) -> tuple[list[str], list[str]]:
    """The suites both runs measured, and warnings. Different fingerprints are refused unless forced."""
    fa, fb = baseline.suite_fingerprints(), candidate.suite_fingerprints()
    measured_a, measured_b = set(baseline.episodes["suite"]), set(candidate.episodes["suite"])
    common = sorted(s for s in fa.keys() & fb.keys() if s in measured_a and s in measured_b)
    warnings = []
    only = sorted((measured_a | measured_b) - set(common))
    if only:
        warnings.append(f"suites measured by only one run are not compared: {', '.join(only)}")
    if not common:
        raise EvalkitError("the two runs share no measured suite; nothing to compare")
    for suite in common:
        if fa[suite] != fb[suite]:
            diff = protocol_diff(comparable_protocol(baseline, suite), comparable_protocol(candidate, suite))
            what = "; ".join(f"{k}: {a!r} vs {b!r}" for k, a, b in diff) or "manifest protocols give no diff"
            message = f"{suite}: protocol fingerprints differ ({fa[suite]} vs {fb[suite]}): {what}"
            if not force:
                raise EvalkitError(
                    f"refusing to compare runs under different protocols: {message}; --force overrides"
                )
            warnings.append(f"--force: comparing across protocols: {message}")
    return common, warnings


def compare_runs(
    baseline: Run,
    candidate: Run,
    alpha: float = 0.05,
    max_drop: float | None = None,
    min_episodes: int = 10,
    force: bool = False,
) -> RegressionResult:
    if not 0 < alpha < 1:
        raise EvalkitError(f"--alpha must be in (0, 1), got {alpha}")
    if min_episodes < 1:
        raise EvalkitError(f"--min-episodes must be at least 1, got {min_episodes}")
    if max_drop is not None and max_drop < 0:
        raise EvalkitError(f"--max-drop must be >= 0 percentage points, got {max_drop}")
    common, warnings = check_protocols(baseline, candidate, force)
    for name, run in (("baseline", baseline), ("candidate", candidate)):
        errors = run.errors[run.errors["suite"].isin(common)]
        if len(errors):
            warnings.append(
                f"{name}: {len(errors)} error episode(s) excluded from pairing and from the rates"
            )
    base = baseline.usable[baseline.usable["suite"].isin(common)]
    cand = candidate.usable[candidate.usable["suite"].isin(common)]
    overall = judge_row("overall", base, cand, alpha, max_drop, min_episodes)
    if len(common) == 1:
        overall.scope = f"overall ({common[0]})"
        rows = [overall]
    else:
        suite_alpha = alpha / len(common)  # Bonferroni over the per-suite rows
        rows = [
            judge_row(
                s, base[base["suite"] == s], cand[cand["suite"] == s], suite_alpha, max_drop, min_episodes
            )
            for s in common
        ] + [overall]
    if any(r.decision == "regression" for r in rows):
        code = EXIT_REGRESSION
    elif overall.decision == "inconclusive":
        code = EXIT_INCONCLUSIVE
    else:
        code = EXIT_OK
    return RegressionResult(rows, warnings, code)


def _rate(r) -> str:
    return f"{100 * r.rate:.1f}% ({r.k}/{r.n})"


def _diff(c: Comparison) -> str:
    return f"{100 * c.diff:+.1f} [{100 * c.diff_low:+.1f}, {100 * c.diff_high:+.1f}]"


def verdict_frame(result: RegressionResult) -> pd.DataFrame:
    rows = []
    for r in result.rows:
        c = r.comparison
        rows.append(
            {
                "scope": r.scope,
                "test": c.test if c else "—",
                "pairs": r.pairs,
                "unpaired (base/cand)": f"{r.baseline_only}/{r.candidate_only}",
                "baseline": _rate(c.baseline) if c else "—",
                "candidate": _rate(c.candidate) if c else "—",
                "diff pp [95% CI]": _diff(c) if c else "—",
                "p drop (1-sided)": f"{c.p_drop:.3g}" if c else "—",
                "p (2-sided)": f"{c.p_two_sided:.3g}" if c else "—",
                "alpha": f"{r.alpha:.3g}",
                "verdict": r.decision.upper() if r.decision == "regression" else r.decision,
            }
        )
    return pd.DataFrame(rows)


def render(result: RegressionResult, baseline: Run, candidate: Run) -> str:
    verdict = {
        EXIT_OK: "PASS: no regression",
        EXIT_REGRESSION: "FAIL: regression",
        EXIT_INCONCLUSIVE: "INCONCLUSIVE: too few episodes",
    }[result.exit_code]
    lines = [
        "# evalkit regress",
        "",
        f"- baseline: `{baseline.path}` ({baseline.policy_label()})",
        f"- candidate: `{candidate.path}` ({candidate.policy_label()})",
        "- pairing: (suite, task_id, init_state, seed); paired rows: exact McNemar, Newcombe paired interval; "
        "unpaired rows: Fisher's exact test, Newcombe independent interval",
        "",
    ]
    lines += [f"> **Warning:** {w}" for w in result.warnings]
    if result.warnings:
        lines.append("")
    lines += [markdown_table(verdict_frame(result), floatfmt="g"), ""]
    for r in result.rows:
        for reason in r.reasons:
            lines.append(f"- {r.scope}: {reason}")
        if r.leftover is not None:
            c = r.leftover
            lines.append(
                f"- {r.scope}: {r.baseline_only}+{r.candidate_only} unpaired episodes compared with Fisher's exact "
                f"test (not part of the verdict): {_rate(c.baseline)} vs {_rate(c.candidate)}, diff {_diff(c)} pp, "
                f"p drop={c.p_drop:.3g}"
            )
        elif (
            r.comparison is not None
            and r.comparison.test == "mcnemar-exact"
            and (r.baseline_only or r.candidate_only)
        ):
            lines.append(
                f"- {r.scope}: {r.baseline_only} baseline-only and {r.candidate_only} candidate-only episodes "
                "have no partner and are left out of the paired test"
            )
    lines += ["", f"**{verdict}** (exit {result.exit_code})", ""]
    return "\n".join(lines)
