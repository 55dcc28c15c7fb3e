"""`evalkit regress`: does the candidate run keep the baseline's success rate? A paired non-inferiority gate.

Rules (also in `evalkit regress --help`):
- Only episodes with a final outcome count; error episodes are left out of pairing (with a warning).
- Episodes pair on their identity (suite, task_id, init_state, seed). A row (each suite, and "overall" over all
  suites both runs share) with at least `min_episodes` pairs is tested paired: the exact McNemar test (a binomial
  test of the discordant pairs) and Newcombe's paired interval of the difference (method 10, continuity-adjusted
  phi); episodes without a partner are then reported with Fisher's exact test, separately, and do not enter the
  verdict. A row with fewer pairs but at least `min_episodes` episodes in each run is tested unpaired on all its
  episodes: Fisher's exact test and Newcombe's independent interval (the output says so). Otherwise the row is
  inconclusive. See `evalkit.report.stats`.
- Each tested row answers two one-sided questions at level alpha (per-suite rows at alpha / the number of suites,
  Bonferroni, so that the suite rows hold together):
  * regression: the one-sided p-value for a drop is below alpha (the drop is real, whatever its size);
  * non-inferiority: the lower bound of the (1 - 2 alpha) interval of candidate - baseline lies above -max_drop,
    i.e. a drop larger than the margin is ruled out.
  A row is "regression" if the first holds, "no regression" (or "improvement", for a significant gain) if only the
  second holds, and "inconclusive" if neither: the data show neither a drop nor its absence.
- Exit codes: 0 every row rules out a drop larger than the margin and none has a significant drop; 1 a significant
  drop in any row; 2 usage error, unreadable input or refusal (different protocol fingerprints without --force);
  3 inconclusive (no significant drop, but some row cannot rule out a drop larger than the margin).

The default margin, 5 percentage points, is larger than the 1-2 pp spread between published reproductions of the
same pi0.5 LIBERO checkpoint (openpi examples/libero/README.md against independent harnesses), so an unchanged
checkpoint can pass; smaller than the drops a broken setup causes (10 pp and more); and within reach of the openpi
LIBERO protocol: 500 paired episodes per suite at ~97% success give a 90% interval about +-1.6 pp wide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from evalkit.core.errors import EvalkitError
from evalkit.report.formatting import markdown_table
from evalkit.report.leaderboard import comparable_protocol, protocol_diff
from evalkit.report.stats import Comparison, PairedCounts, Rate, compare_paired, compare_unpaired, wilson
from evalkit.rundir.run import EPISODE_KEY, Run

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
DEFAULT_MAX_DROP = 5.0  # percentage points; see the module docstring
Decision = Literal["regression", "no regression", "improvement", "inconclusive"]
PASSING: tuple[Decision, ...] = ("no regression", "improvement")


@dataclass
class RowVerdict:
    scope: str  # a suite name or "overall"
    pairs: int
    baseline_only: int
    candidate_only: int
    alpha: float
    baseline: Rate  # the rates the row is judged on (all usable episodes when the row is untested)
    candidate: Rate
    comparison: Comparison | None  # None: too few episodes to test
    leftover: Comparison | None  # Fisher on the unpaired episodes of a paired row (reported, not decisive)
    decision: Decision
    reasons: list[str] = field(default_factory=list)


@dataclass
class RegressionResult:
    rows: list[RowVerdict]
    warnings: list[str]
    exit_code: int
    max_drop: float  # percentage points


def paired_counts(pairs: pd.DataFrame) -> PairedCounts:
    a, b = pairs["success_base"].astype(bool), pairs["success_cand"].astype(bool)
    return PairedCounts(
        both=int((a & b).sum()),
        lost=int((a & ~b).sum()),
        gained=int((~a & b).sum()),
        neither=int((~a & ~b).sum()),
    )


def _rate_of(episodes: pd.DataFrame) -> Rate:
    return wilson(int(episodes["success"].astype(bool).sum()), len(episodes))


def judge_row(
    scope: str,
    base: pd.DataFrame,
    cand: pd.DataFrame,
    alpha: float,
    max_drop: float,
    min_episodes: int,
) -> RowVerdict:
    keys = EPISODE_KEY
    merged = base[[*keys, "success"]].merge(
        cand[[*keys, "success"]], on=keys, how="outer", suffixes=("_base", "_cand"), indicator=True
    )
    pairs = merged[merged["_merge"] == "both"]
    base_only = merged[merged["_merge"] == "left_only"]
    cand_only = merged[merged["_merge"] == "right_only"]
    verdict = RowVerdict(
        scope,
        len(pairs),
        len(base_only),
        len(cand_only),
        alpha,
        _rate_of(base),
        _rate_of(cand),
        None,
        None,
        "inconclusive",
    )
    confidence = 1 - 2 * alpha  # its lower bound is a one-sided bound at level alpha
    if len(pairs) >= min_episodes:
        verdict.comparison = compare_paired(paired_counts(pairs), confidence)
        if len(base_only) and len(cand_only):
            verdict.leftover = compare_unpaired(
                int(base_only["success_base"].astype(bool).sum()),
                len(base_only),
                int(cand_only["success_cand"].astype(bool).sum()),
                len(cand_only),
                confidence,
            )
    elif min(len(base), len(cand)) >= min_episodes:
        verdict.comparison = compare_unpaired(
            int(base["success"].sum()), len(base), int(cand["success"].sum()), len(cand), confidence
        )
        verdict.reasons.append(f"only {len(pairs)} pairs: unpaired Fisher test on all episodes")
    else:
        verdict.reasons.append(
            f"too few episodes to test: {len(pairs)} pairs, {len(base)}/{len(cand)} episodes "
            f"< --min-episodes {min_episodes}"
        )
        return verdict
    c = verdict.comparison
    verdict.baseline, verdict.candidate = c.baseline, c.candidate
    low_pp = 100 * c.diff_low
    if c.p_drop < alpha:
        verdict.decision = "regression"
        verdict.reasons.append(f"significant drop: one-sided p={c.p_drop:.3g} < {alpha:.3g}")
    elif low_pp > -max_drop:
        gain = c.diff > 0 and c.p_two_sided < alpha
        verdict.decision = "improvement" if gain else "no regression"
        verdict.reasons.append(
            f"a drop larger than {max_drop:g} pp is ruled out (lower bound {low_pp:+.1f} pp)"
        )
    else:
        verdict.reasons.append(
            f"neither a significant drop (p={c.p_drop:.3g}) nor a drop larger than {max_drop:g} pp ruled out "
            f"(lower bound {low_pp:+.1f} pp)"
        )
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
    max_drop: float = DEFAULT_MAX_DROP,
    min_episodes: int = 10,
    force: bool = False,
) -> RegressionResult:
    if not 0 < alpha < 0.5:
        raise EvalkitError(f"--alpha must be in (0, 0.5), got {alpha}")
    if min_episodes < 1:
        raise EvalkitError(f"--min-episodes must be at least 1, got {min_episodes}")
    if not 0 <= max_drop < 100:
        raise EvalkitError(f"--max-drop must be in [0, 100) percentage points, got {max_drop}")
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
    elif all(r.decision in PASSING for r in rows):
        code = EXIT_OK
    else:
        code = EXIT_INCONCLUSIVE
    return RegressionResult(rows, warnings, code, max_drop)


def _rate(r: Rate) -> str:
    return f"{100 * r.rate:.1f}% ({r.k}/{r.n})" if r.n else "— (0/0)"


def _diff(c: Comparison) -> str:
    return f"{100 * c.diff:+.1f} [{100 * c.diff_low:+.1f}, {100 * c.diff_high:+.1f}]"


def _rates(r: RowVerdict) -> str:
    return f"{r.scope} {_rate(r.baseline)} -> {_rate(r.candidate)}"


def verdict_line(result: RegressionResult) -> str:
    """One line for CI logs: the verdict, why, and both rates of the rows it rests on."""
    overall = result.rows[-1]
    margin = f"{result.max_drop:g} pp"
    if result.exit_code == EXIT_REGRESSION:
        bad = [r for r in result.rows if r.decision == "regression"]
        why = "; ".join(f"{_rates(r)}, one-sided p={r.comparison.p_drop:.3g}" for r in bad)
        return f"FAIL: significant drop: {why} (exit {EXIT_REGRESSION})"
    if result.exit_code == EXIT_OK:
        c = overall.comparison
        return (
            f"PASS: no drop larger than {margin} in any row: {_rates(overall)}, "
            f"diff {100 * c.diff:+.1f} pp, lower bound {100 * c.diff_low:+.1f} pp (exit {EXIT_OK})"
        )
    open_rows = [r for r in result.rows if r.decision not in PASSING]
    context = "" if overall in open_rows else f"; {_rates(overall)}"
    return (
        f"INCONCLUSIVE: no significant drop, but a drop larger than {margin} is not ruled out for "
        f"{'; '.join(_rates(r) for r in open_rows)}{context} (exit {EXIT_INCONCLUSIVE})"
    )


def verdict_frame(result: RegressionResult) -> pd.DataFrame:
    rows = []
    for r in result.rows:
        c = r.comparison
        rows.append(
            {
                "scope": r.scope,
                "test": c.test if c else "none (too few)",
                "pairs": r.pairs,
                "unpaired (base/cand)": f"{r.baseline_only}/{r.candidate_only}",
                "baseline": _rate(r.baseline),
                "candidate": _rate(r.candidate),
                "diff pp [1-2·alpha CI]": _diff(c)
                if c
                else f"{100 * (r.candidate.rate - r.baseline.rate):+.1f} (no test)",
                "p drop (1-sided)": f"{c.p_drop:.3g}" if c else "—",
                "p (2-sided)": f"{c.p_two_sided:.3g}" if c else "—",
                "alpha": f"{r.alpha:.3g}",
                "verdict": r.decision.upper() if r.decision == "regression" else r.decision,
            }
        )
    return pd.DataFrame(rows)


def render(result: RegressionResult, baseline: Run, candidate: Run) -> str:
    lines = [
        "# evalkit regress",
        "",
        f"- baseline: `{baseline.path}` ({baseline.policy_label()})",
        f"- candidate: `{candidate.path}` ({candidate.policy_label()})",
        "- pairing: (suite, task_id, init_state, seed); paired rows: exact McNemar, Newcombe paired interval; "
        "unpaired rows: Fisher's exact test, Newcombe independent interval",
        f"- non-inferiority margin: {result.max_drop:g} pp (--max-drop); intervals at 1 - 2·alpha, so that each "
        "bound is one-sided at alpha",
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
    lines += ["", verdict_line(result)]
    return "\n".join(lines)
