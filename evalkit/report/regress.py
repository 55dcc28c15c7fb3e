"""`evalkit regress`: does the candidate run keep the baseline's success rate? A paired non-inferiority gate.

Rules (also in `evalkit regress --help`):
- Only episodes with a final outcome count; error episodes are left out of pairing (with a warning).
- Episodes pair on their identity (suite, task_id, init_state, seed). A row (each suite, and "overall" over all
  suites both runs share) with at least `min_episodes` pairs is tested paired: the exact McNemar test (a binomial
  test of the discordant pairs) and Newcombe's paired interval of the difference (method 10, continuity-adjusted
  phi); episodes without a partner are then reported with Fisher's exact test, separately, and do not enter the
  verdict. A row with fewer pairs but at least `min_episodes` episodes in each run is tested unpaired on all its
  episodes: Fisher's exact test and Newcombe's independent interval (the output says so). Otherwise the row is
  not tested. See `evalkit.report.stats`.
- Each tested row answers two one-sided questions at level alpha (per-suite rows at alpha / the number of suites,
  Bonferroni, so that the suite rows hold together):
  * regression: the one-sided p-value for a drop is below alpha (the drop is real, whatever its size);
  * non-inferiority: the lower bound of the (1 - 2 alpha) interval of candidate - baseline lies above -max_drop,
    i.e. a drop larger than the margin is ruled out.
  A row is "regression" if the first holds, "no regression" (or "improvement", for a significant gain) if only the
  second holds, and "inconclusive" if neither: the data show neither a drop nor its absence.
- A candidate is complete when it finished every episode of the baseline (in the suites both measured) and neither
  run has error episodes. An incomplete candidate never passes (exit 3, the verdict line says why) unless
  `--allow-partial` is given or it stopped by decision; its significant drop still fails.
- A candidate whose stopping rule was a sequential test (`Manifest.stop`, `evalkit eval --against
  --stop-when-decided`: stopped by its decision, or ended undecided after its whole plan) is judged with that same
  anytime-valid test (`evalkit.report.sequential`), at the alpha, margin and statistic its stopping rule used, on the
  pairs it was fed: the first `stop.pairs` episodes of the run's planned order (`Manifest.planned_episodes`), in that
  order. The fixed-N tests above are not valid after a data-dependent stop, and after a run that ended undecided
  they would be a second look (`bench/bench_sequential.py`: the two together exceed alpha). Its rows are the suites
  it planned, so a suite it stopped before reaching is "not tested".
- `--outcome progress` judges each episode's mean of its progress flags instead of success, with the anytime-valid
  test fed in the planned order (there is no exact fixed-N test for a bounded mean here); every run gets a
  "sequential view": both statistics fed in the planned order, where each would have decided (what stopping early
  would have saved), for information.
- Exit codes: 0 every row rules out a drop larger than the margin and none has a significant drop; 1 a significant
  drop in any row; 2 usage error, unreadable input or refusal (the same run twice; different protocol fingerprints
  without --force); 3 inconclusive (no significant drop, but some row cannot rule out a drop larger than the margin,
  is not tested, or the candidate is incomplete).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from evalkit.core.errors import EvalkitError
from evalkit.report.config import DEFAULT_ALPHA, DEFAULT_MAX_DROP
from evalkit.report.formatting import markdown_table, md_text
from evalkit.report.leaderboard import comparable_protocol, protocol_diff
from evalkit.report.outcomes import PROGRESS_SCORE, Outcome, check_outcome, with_progress_scores
from evalkit.report.stats import Comparison, PairedCounts, Rate, compare_paired, compare_unpaired, wilson
from evalkit.rundir.manifest import StopRecord
from evalkit.rundir.run import IDENTITY, Run

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
Decision = Literal["regression", "no regression", "improvement", "inconclusive", "not tested"]
PASSING: tuple[Decision, ...] = ("no regression", "improvement")

# What a row test says: "fail" (a significant drop), "pass" (a drop larger than the margin ruled out; a fail takes
# precedence) or "undecided".
Verdict = Literal["pass", "fail", "undecided"]
# A paired test of one row, called with the episodes both runs finished (columns success_base and success_cand,
# bool; progress_score_base and progress_score_cand, each episode's mean of its progress flags or nan; the identity
# columns; finished_at_cand), in the candidate's planned episode order (`Manifest.planned_episodes`; episodes it
# does not plan last, by identity), the row's one-sided level alpha and the margin in percentage points. It returns
# its Comparison (diff_low and diff_high each a one-sided (1 - alpha) bound of candidate - baseline; p_drop a p-value
# for a drop) and its verdict, which regress reports as it is. A sequential test
# (`evalkit.report.sequential.PAIRED_TESTS`, by the name a run's stop record gives) returns bounds and a verdict
# valid at any stopping time, so a stopped run's verdict is its own; it feeds the pairs in the order given (the
# planned order, never finishing times, which depend on outcomes).
PairedTest = Callable[[pd.DataFrame, float, float], tuple[Comparison, Verdict]]
SEQUENTIAL_MODULE = "evalkit.report.sequential"


def paired_counts(pairs: pd.DataFrame) -> PairedCounts:
    a, b = pairs["success_base"].astype(bool), pairs["success_cand"].astype(bool)
    return PairedCounts(
        both=int((a & b).sum()),
        lost=int((a & ~b).sum()),
        gained=int((~a & b).sum()),
        neither=int((~a & ~b).sum()),
    )


def fixed_n_verdict(c: Comparison, alpha: float, max_drop: float) -> Verdict:
    """A fixed-N test's verdict: fail when the one-sided p-value for a drop is below alpha, pass when the lower bound
    lies above -max_drop (percentage points)."""
    if c.p_drop < alpha:
        return "fail"
    return "pass" if 100 * c.diff_low > -max_drop else "undecided"


def mcnemar_newcombe(pairs: pd.DataFrame, alpha: float, max_drop: float) -> tuple[Comparison, Verdict]:
    """The fixed-N paired test: exact McNemar, and Newcombe's paired interval at 1 - 2 alpha (each bound one-sided
    at alpha)."""
    c = compare_paired(paired_counts(pairs), 1 - 2 * alpha)
    return c, fixed_n_verdict(c, alpha, max_drop)


def sequential_test(name: str, why: str) -> PairedTest:
    """An anytime-valid paired test by name (`evalkit.report.sequential.PAIRED_TESTS`)."""
    try:
        tests = getattr(importlib.import_module(SEQUENTIAL_MODULE), "PAIRED_TESTS", {})
    except ImportError:
        tests = {}
    if name not in tests:
        raise EvalkitError(
            f"{why} the sequential test {name!r}, which this evalkit does not provide ({SEQUENTIAL_MODULE} knows: "
            f"{', '.join(sorted(tests)) or 'none'})"
        )
    return tests[name]


def stopped_run_test(stop: StopRecord) -> PairedTest:
    """The test a run that stopped by decision used: it cannot be judged with the fixed-N test after a
    data-dependent stop."""
    return sequential_test(stop.test, "the candidate's stopping rule was")


@dataclass
class RowVerdict:
    # a suite name or "overall"
    scope: str
    pairs: int
    baseline_only: int
    candidate_only: int
    alpha: float
    # the rates the row is judged on (all usable episodes when the row is not tested)
    baseline: Rate
    candidate: Rate
    # None: too few episodes to test
    comparison: Comparison | None
    # Fisher on the unpaired episodes of a paired row (reported, not decisive)
    leftover: Comparison | None
    decision: Decision
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Coverage:
    """How much of the baseline (every suite it measured) the candidate answers."""

    # baseline episode identities (with an outcome or an error)
    baseline_episodes: int
    # of those, the ones both runs finished with an outcome
    paired: int
    # baseline identities the candidate has no row for
    missing: int
    baseline_errors: int
    candidate_errors: int

    @classmethod
    def of(cls, baseline: pd.DataFrame, candidate: pd.DataFrame) -> Coverage:
        def ids(frame: pd.DataFrame) -> set[tuple]:
            return set(frame[IDENTITY].itertuples(index=False, name=None))

        usable = lambda frame: frame[frame["termination"] != "error"]  # noqa: E731
        errors = lambda frame: int((frame["termination"] == "error").sum())  # noqa: E731
        base = ids(baseline)
        return cls(
            baseline_episodes=len(base),
            paired=len(ids(usable(baseline)) & ids(usable(candidate))),
            missing=len(base - ids(candidate)),
            baseline_errors=errors(baseline),
            candidate_errors=errors(candidate),
        )

    @property
    def complete(self) -> bool:
        return self.missing == 0 and self.baseline_errors == 0 and self.candidate_errors == 0

    def text(self) -> str:
        if self.complete:
            return f"coverage: all {self.baseline_episodes} baseline episodes paired, no errors"
        gaps = [
            f"{n} {what}"
            for n, what in (
                (self.candidate_errors, "candidate error episode(s)"),
                (self.missing, "baseline episode(s) the candidate lacks"),
                (self.baseline_errors, "baseline error episode(s)"),
            )
            if n
        ]
        return (
            f"coverage: {self.paired}/{self.baseline_episodes} baseline episodes paired ({', '.join(gaps)})"
        )


@dataclass
class RegressionResult:
    rows: list[RowVerdict]
    warnings: list[str]
    exit_code: int
    # percentage points
    max_drop: float
    min_episodes: int = 10
    coverage: Coverage | None = None
    # the candidate is incomplete and nothing allowed judging it on part of the baseline: it cannot pass
    incomplete: bool = False
    # the candidate stopped by decision: judged with its sequential test
    stop: StopRecord | None = None
    # the statistic the verdict rests on
    outcome: Outcome = "success"
    # both statistics fed to the anytime-valid test in the planned order, per row (for information)
    sequential_view: pd.DataFrame | None = None


def _rate_of(episodes: pd.DataFrame, outcome: str = "success") -> Rate:
    if outcome == "progress":
        return Rate(float(episodes[PROGRESS_SCORE].sum()), len(episodes), math.nan, math.nan)
    return wilson(int(episodes["success"].astype(bool).sum()), len(episodes))


# where an episode identity stands in a run's planned order: (suite, task_id, init_state, seed) -> position
Positions = dict[tuple, int]


def planned_positions(run: Run) -> Positions:
    plan = run.manifest.planned_episodes()
    return {(s.suite, s.task_id, s.init_state, s.seed): i for i, s in enumerate(plan)}


def _paired_frame(base: pd.DataFrame, cand: pd.DataFrame, order: Positions) -> pd.DataFrame:
    """Both runs' episodes side by side, in the planned order (episodes the plan lacks last, by identity)."""
    columns = [*IDENTITY, "success", PROGRESS_SCORE]
    merged = base[columns].merge(
        cand[[*columns, "finished_at"]].rename(columns={"finished_at": "finished_at_cand"}),
        on=IDENTITY,
        how="outer",
        suffixes=("_base", "_cand"),
        indicator=True,
    )
    keys = merged[IDENTITY].itertuples(index=False, name=None)
    merged["_position"] = [order.get(key, len(order)) for key in keys]
    return merged.sort_values(["_position", *IDENTITY], ignore_index=True).drop(columns="_position")


@dataclass(frozen=True)
class Rule:
    """How rows are judged: the paired test, whether a row may fall back to Fisher on unpaired episodes (not with
    a sequential test), the statistic, and the planned order pairs are given in."""

    test: PairedTest = mcnemar_newcombe
    unpaired: bool = True
    outcome: Outcome = "success"
    order: Positions = field(default_factory=dict)


def judge_row(
    scope: str,
    base: pd.DataFrame,
    cand: pd.DataFrame,
    alpha: float,
    max_drop: float,
    min_episodes: int,
    rule: Rule | None = None,
) -> RowVerdict:
    """One row's verdict (`base` and `cand` carry a progress_score column)."""
    rule = rule or Rule()
    test, unpaired = rule.test, rule.unpaired
    merged = _paired_frame(base, cand, rule.order)
    pairs = merged[merged["_merge"] == "both"]
    base_only = merged[merged["_merge"] == "left_only"]
    cand_only = merged[merged["_merge"] == "right_only"]
    verdict = RowVerdict(
        scope,
        len(pairs),
        len(base_only),
        len(cand_only),
        alpha,
        _rate_of(base, rule.outcome),
        _rate_of(cand, rule.outcome),
        None,
        None,
        "not tested",
    )
    confidence = 1 - 2 * alpha  # its lower bound is a one-sided bound at level alpha
    if len(pairs) >= min_episodes:
        verdict.comparison, outcome = test(pairs, alpha, max_drop)
        if len(base_only) and len(cand_only) and unpaired:
            verdict.leftover = compare_unpaired(
                int(base_only["success_base"].astype(bool).sum()),
                len(base_only),
                int(cand_only["success_cand"].astype(bool).sum()),
                len(cand_only),
                confidence,
            )
    elif unpaired and min(len(base), len(cand)) >= min_episodes:
        verdict.comparison = compare_unpaired(
            int(base["success"].sum()), len(base), int(cand["success"].sum()), len(cand), confidence
        )
        outcome = fixed_n_verdict(verdict.comparison, alpha, max_drop)
        verdict.reasons.append(f"only {len(pairs)} pairs: unpaired Fisher test on all episodes")
    else:
        verdict.reasons.append(
            f"not tested: {len(pairs)} pairs < --min-episodes {min_episodes} "
            f"({len(base)}/{len(cand)} episodes with an outcome)"
        )
        return verdict
    decide(verdict, outcome, max_drop)
    return verdict


def decide(verdict: RowVerdict, outcome: Verdict, max_drop: float) -> None:
    """The row's decision from its test's verdict, with the numbers behind it."""
    c, alpha = verdict.comparison, verdict.alpha
    assert c is not None
    verdict.baseline, verdict.candidate = c.baseline, c.candidate
    low_pp = 100 * c.diff_low
    if outcome == "fail":
        verdict.decision = "regression"
        verdict.reasons.append(f"significant drop: one-sided p={c.p_drop:.3g} < {alpha:.3g}")
    elif outcome == "pass":
        # a sequential test gives no two-sided p-value: a gain is significant when its lower bound is above 0
        gain = c.diff_low > 0 if math.isnan(c.p_two_sided) else c.diff > 0 and c.p_two_sided < alpha
        verdict.decision = "improvement" if gain else "no regression"
        verdict.reasons.append(
            f"a drop larger than {max_drop:g} pp is ruled out (lower bound {low_pp:+.1f} pp)"
        )
    else:
        verdict.decision = "inconclusive"
        verdict.reasons.append(
            f"neither a significant drop (p={c.p_drop:.3g}) nor a drop larger than {max_drop:g} pp ruled out "
            f"(lower bound {low_pp:+.1f} pp)"
        )


def refuse_same_run(baseline: Run, candidate: Run) -> None:
    """A run compared with itself (one directory under two names, a symlink, or a copy) always 'passes'."""
    if os.path.samefile(baseline.path, candidate.path):
        raise EvalkitError(
            f"baseline and candidate are the same run directory ({baseline.path.resolve()}): nothing to compare"
        )
    if baseline.run_id == candidate.run_id:
        raise EvalkitError(
            f"baseline {baseline.path} and candidate {candidate.path} are the same run (run id {baseline.run_id}; "
            "one is a copy of the other): nothing to compare"
        )


def check_protocols(
    baseline: Run, candidate: Run, force: bool, planned: bool = False
) -> tuple[list[str], list[str]]:
    """The suites both runs measured (`planned`: the baseline measured and the candidate planned), and warnings.
    Different fingerprints are refused unless forced.

    The fingerprints are the ones every episode row carries (`load_run` refuses a manifest that disagrees with
    its rows), so an edited manifest cannot make two protocols look alike."""
    fa, fb = baseline.suite_fingerprints(), candidate.suite_fingerprints()
    measured_a, measured_b = set(baseline.episodes["suite"]), set(candidate.episodes["suite"])
    if planned:
        measured_b |= set(fb)
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


def _stop_settings(
    stop: StopRecord, baseline: Run, alpha: float, max_drop: float, warnings: list[str]
) -> tuple[float, float]:
    """A stopped run is judged at its stopping rule's alpha and margin (choosing them after the data would void
    the guarantee); the output says so where the flags differ."""
    how = "stopped by decision" if stop.verdict != "undecided" else "ran its whole plan undecided"
    warnings.append(
        f"the candidate {how} after {stop.episodes} episodes ({stop.test}, alpha {stop.alpha:g}, "
        f"margin {stop.margin_pp:g} pp, recorded verdict {stop.verdict}); judged with the same anytime-valid test"
    )
    if (alpha, max_drop) != (stop.alpha, stop.margin_pp):
        warnings.append(
            f"--alpha {alpha:g} / --max-drop {max_drop:g} ignored: a stopped run is judged at its stopping rule's "
            f"alpha {stop.alpha:g} and margin {stop.margin_pp:g} pp"
        )
    if stop.baseline_run_id != baseline.run_id:
        warnings.append(
            f"the candidate stopped against baseline run {stop.baseline_run_id}, not this one ({baseline.run_id}); "
            "the test stays valid, but its verdict need not match the recorded one"
        )
    return stop.alpha, stop.margin_pp


def _exit_code(rows: list[RowVerdict], incomplete: bool) -> int:
    if any(r.decision == "regression" for r in rows):
        return EXIT_REGRESSION
    if all(r.decision in PASSING for r in rows) and not incomplete:
        return EXIT_OK
    return EXIT_INCONCLUSIVE


def compare_runs(
    baseline: Run,
    candidate: Run,
    alpha: float = DEFAULT_ALPHA,
    max_drop: float = DEFAULT_MAX_DROP,
    min_episodes: int = 10,
    force: bool = False,
    allow_partial: bool = False,
    outcome: str = "success",
) -> RegressionResult:
    if not 0 < alpha < 0.5:
        raise EvalkitError(f"--alpha must be in (0, 0.5), got {alpha}")
    if min_episodes < 1:
        raise EvalkitError(f"--min-episodes must be at least 1, got {min_episodes}")
    if not 0 <= max_drop < 100:
        raise EvalkitError(f"--max-drop must be in [0, 100) percentage points, got {max_drop}")
    outcome = check_outcome(outcome)
    refuse_same_run(baseline, candidate)
    stop = candidate.manifest.stop
    common, warnings = check_protocols(baseline, candidate, force, planned=stop is not None)
    # over every suite of the baseline: a candidate that skipped one of them lacks its episodes
    coverage = Coverage.of(baseline.episodes, candidate.episodes)
    base_all = with_progress_scores(baseline.episodes[baseline.episodes["suite"].isin(common)])
    cand_all = with_progress_scores(candidate.episodes[candidate.episodes["suite"].isin(common)])
    for name, n in (("baseline", coverage.baseline_errors), ("candidate", coverage.candidate_errors)):
        if n:
            warnings.append(f"{name}: {n} error episode(s) excluded from pairing and from the rates")
    order = planned_positions(candidate)
    rule = Rule(order=order)
    if stop is not None:
        alpha, max_drop = _stop_settings(stop, baseline, alpha, max_drop, warnings)
        if outcome != stop.outcome:
            warnings.append(f"--outcome {outcome} ignored: the candidate stopped on {stop.outcome}")
        outcome = stop.outcome
        rule = Rule(stopped_run_test(stop), unpaired=False, outcome=outcome, order=order)
        # an anytime-valid test needs no minimum: it is judged as the stopping rule judged it
        min_episodes = 1
        fed = fed_prefix(candidate, base_all, stop, warnings)
        base_all, cand_all = (frame[_identities_in(frame, fed)] for frame in (base_all, cand_all))
    elif outcome == "progress":
        _check_progress(base_all, cand_all)
        test = sequential_test(PROGRESS_TEST, "--outcome progress needs")
        rule = Rule(test, unpaired=False, outcome=outcome, order=order)
    base = base_all[base_all["termination"] != "error"]
    cand = cand_all[cand_all["termination"] != "error"]
    scopes = _scopes(common)
    rows = [
        judge_row(scope, _of(base, suite), _of(cand, suite), alpha / k, max_drop, min_episodes, rule)
        for scope, suite, k in scopes
    ]
    incomplete = not coverage.complete and not allow_partial and stop is None
    code = _exit_code(rows, incomplete)
    recorded = {"pass": EXIT_OK, "fail": EXIT_REGRESSION, "undecided": EXIT_INCONCLUSIVE}
    if stop is not None and code != recorded[stop.verdict]:
        warnings.append(
            f"this verdict (exit {code}) differs from the run's recorded stop verdict {stop.verdict!r}"
        )
    view = sequential_view(base, cand, scopes, alpha, max_drop, order)
    return RegressionResult(
        rows, warnings, code, max_drop, min_episodes, coverage, incomplete, stop, outcome, view
    )


# the anytime-valid test on progress (`evalkit.report.sequential.TEST_NAMES`)
PROGRESS_TEST = "wsr-betting-progress"


def _scopes(common: list[str]) -> list[tuple[str, str | None, int]]:
    """(scope, suite or None for all, K) per row, tested at alpha / K: each suite at alpha / the number of suites
    (Bonferroni, so that the suite rows hold together) and overall at alpha; one row for a run of one suite."""
    if len(common) == 1:
        return [(f"overall ({common[0]})", None, 1)]
    return [(s, s, len(common)) for s in common] + [("overall", None, 1)]


def _of(frame: pd.DataFrame, suite: str | None) -> pd.DataFrame:
    return frame if suite is None else frame[frame["suite"] == suite]


def _identities_in(frame: pd.DataFrame, identities: set[tuple]) -> pd.Series:
    keys = frame[IDENTITY].itertuples(index=False, name=None)
    return pd.Series([key in identities for key in keys], index=frame.index, dtype=bool)


def fed_prefix(candidate: Run, base: pd.DataFrame, stop: StopRecord, warnings: list[str]) -> set[tuple]:
    """The pairs a stopped run's test was fed: the first `stop.pairs` episodes of its planned order (the longest
    prefix that had all finished when it stopped). Episodes it finished beyond them do not enter the verdict."""
    plan = [(s.suite, s.task_id, s.init_state, s.seed) for s in candidate.manifest.planned_episodes()]
    done = set(candidate.usable[IDENTITY].itertuples(index=False, name=None))
    fed = plan[: stop.pairs]
    stored = next((i for i, key in enumerate(fed) if key not in done), len(fed))
    if stored < len(fed):
        warnings.append(
            f"the stop record says {stop.pairs} pairs were fed, but planned episode {stored + 1} "
            f"({'/'.join(map(str, fed[stored]))}) has no outcome in the candidate: judged on the {stored} before it"
        )
        fed = fed[:stored]
    usable_base = set(base[base["termination"] != "error"][IDENTITY].itertuples(index=False, name=None))
    if any(key not in usable_base for key in fed):
        warnings.append("the baseline lacks some of the fed episodes: they have no pair")
    beyond = len(done - set(fed))
    if beyond:
        warnings.append(
            f"{beyond} candidate episode(s) that finished beyond the fed prefix (the first {len(fed)} planned "
            "episodes) are not part of the verdict"
        )
    return set(fed)


def _check_progress(base: pd.DataFrame, cand: pd.DataFrame) -> None:
    for name, frame in (("baseline", base), ("candidate", cand)):
        usable = frame[frame["termination"] != "error"]
        lacking = usable[usable[PROGRESS_SCORE].isna()]
        if len(lacking):
            suites = ", ".join(sorted(set(lacking["suite"])))
            raise EvalkitError(
                f"--outcome progress: the {name}'s episodes of {suites} record no progress flags "
                f"({len(lacking)} episode(s)); judge them on success"
            )


def sequential_view(
    base: pd.DataFrame,
    cand: pd.DataFrame,
    scopes: list[tuple[str, str | None, int]],
    alpha: float,
    max_drop: float,
    order: Positions,
) -> pd.DataFrame:
    """Per row and statistic, the anytime-valid test fed every pair in the planned order: where it would have
    decided and what stopping there saves against the row's planned episodes (progress only where every pair
    records it)."""
    from evalkit.report.sequential import feed

    rows = []
    for scope, suite, k in scopes:
        pairs = _paired_frame(_of(base, suite), _of(cand, suite), order)
        pairs = pairs[pairs["_merge"] == "both"]
        planned = max(len(pairs), sum(suite in (None, key[0]) for key in order))
        for outcome, column in (("success", "success"), ("progress", PROGRESS_SCORE)):
            values = pairs[[f"{column}_base", f"{column}_cand"]]
            if pairs.empty or values.isna().any(axis=None):
                continue
            state = feed(pairs, alpha / k, max_drop, outcome)
            at = state.decided_at
            rows.append(
                {
                    "scope": scope,
                    "statistic": outcome,
                    "pairs": state.pairs,
                    "verdict": state.verdict,
                    "decided at pair": at or "—",
                    "diff pp [interval]": f"{100 * state.diff:+.1f} [{100 * state.low:+.1f}, {100 * state.high:+.1f}]",
                    "saving vs the plan": f"{1 - at / planned:.0%}" if at else "—",
                }
            )
    return pd.DataFrame(rows)


def _rate(r: Rate) -> str:
    """A success rate with its counts, or a mean progress score over its episodes."""
    if not r.n:
        return "— (0/0)"
    if isinstance(r.k, float):
        return f"{100 * r.rate:.1f}% (mean progress of {r.n})"
    return f"{100 * r.rate:.1f}% ({r.k}/{r.n})"


def _diff(c: Comparison) -> str:
    return f"{100 * c.diff:+.1f} [{100 * c.diff_low:+.1f}, {100 * c.diff_high:+.1f}]"


def _rates(r: RowVerdict) -> str:
    return f"{r.scope} {_rate(r.baseline)} -> {_rate(r.candidate)}"


def _open_rows(result: RegressionResult) -> str:
    """Why no pass: the rows not tested, and the rows tested without a decision."""
    open_rows = [r for r in result.rows if r.decision not in PASSING]
    untested = [r for r in open_rows if r.decision == "not tested"]
    undecided = [r for r in open_rows if r.decision == "inconclusive"]
    parts = []
    if untested:
        parts.append(
            "not tested: "
            + "; ".join(
                f"{_rates(r)}, {r.pairs} pairs < --min-episodes {result.min_episodes}" for r in untested
            )
        )
    if undecided:
        parts.append(
            f"no significant drop, but a drop larger than {result.max_drop:g} pp is not ruled out for "
            + "; ".join(_rates(r) for r in undecided)
        )
    overall = result.rows[-1]
    if overall not in open_rows:
        parts.append(_rates(overall))
    return "; ".join(parts)


def verdict_line(result: RegressionResult) -> str:
    """One line for CI logs: the verdict, why, both rates of the rows it rests on, and the coverage."""
    overall = result.rows[-1]
    margin = f"{result.max_drop:g} pp"
    if result.exit_code == EXIT_REGRESSION:
        bad = [r for r in result.rows if r.decision == "regression"]
        why = "; ".join(f"{_rates(r)}, one-sided p={r.comparison.p_drop:.3g}" for r in bad if r.comparison)
        head = f"FAIL: significant drop: {why}"
    elif result.exit_code == EXIT_OK:
        c = overall.comparison
        assert c is not None
        head = (
            f"PASS: no drop larger than {margin} in any row: {_rates(overall)}, "
            f"diff {100 * c.diff:+.1f} pp, lower bound {100 * c.diff_low:+.1f} pp"
        )
    elif result.incomplete and all(r.decision in PASSING for r in result.rows):
        head = (
            f"INCONCLUSIVE: the candidate is incomplete, so it cannot pass (on the episodes it has, no drop larger "
            f"than {margin}: {_rates(overall)}); re-run its command to retry errors and finish it, or give "
            "--allow-partial"
        )
    else:
        head = f"INCONCLUSIVE: {_open_rows(result)}"
    tail = [] if result.coverage is None else [result.coverage.text()]
    if result.stop is not None:
        how = "stopped by decision" if result.stop.verdict != "undecided" else "judged by its stopping rule"
        tail.append(f"{how} ({result.stop.test})")
    elif result.coverage is not None and not result.coverage.complete and not result.incomplete:
        tail.append("--allow-partial")
    return "; ".join([head, *tail]) + f" (exit {result.exit_code})"


def verdict_frame(result: RegressionResult) -> pd.DataFrame:
    rows = []
    for r in result.rows:
        c = r.comparison
        rows.append(
            {
                "scope": r.scope,
                "test": c.test if c else "not tested",
                "pairs": r.pairs,
                "unpaired (base/cand)": f"{r.baseline_only}/{r.candidate_only}",
                "baseline": _rate(r.baseline),
                "candidate": _rate(r.candidate),
                "diff pp [1-2·alpha CI]": _diff(c)
                if c
                else f"{100 * (r.candidate.rate - r.baseline.rate):+.1f} (no test)",
                "p drop (1-sided)": f"{c.p_drop:.3g}" if c else "—",
                "p (2-sided)": f"{c.p_two_sided:.3g}" if c and not math.isnan(c.p_two_sided) else "—",
                "alpha": f"{r.alpha:.3g}",
                "verdict": r.decision.upper() if r.decision == "regression" else r.decision,
            }
        )
    return pd.DataFrame(rows)


def render(result: RegressionResult, baseline: Run, candidate: Run) -> str:
    if result.stop:
        test = f"{result.stop.test} (the candidate's sequential test, fed its first {result.stop.pairs} planned pairs)"
    elif result.outcome == "progress":
        test = f"{PROGRESS_TEST} (anytime-valid, fed in the planned order)"
    else:
        test = (
            "exact McNemar, Newcombe paired interval; unpaired rows: Fisher's exact test, Newcombe independent "
            "interval"
        )
    statistic = (
        "success"
        if result.outcome == "success"
        else "progress: each episode's mean of its progress flags (not success; rates below are mean progress)"
    )
    lines = [
        "# evalkit regress",
        "",
        f"- baseline: {md_text(baseline.path)} ({md_text(baseline.policy_label())}, run {md_text(baseline.run_id)})",
        f"- candidate: {md_text(candidate.path)} ({md_text(candidate.policy_label())}, run "
        f"{md_text(candidate.run_id)})",
        f"- pairing: (suite, task_id, init_state, seed); paired rows: {test}",
        f"- statistic: {statistic}",
        f"- non-inferiority margin: {result.max_drop:g} pp (--max-drop); intervals at 1 - 2·alpha, so that each "
        "bound is one-sided at alpha",
    ]
    if result.coverage is not None:
        lines.append(f"- {result.coverage.text()}")
    lines.append("")
    lines += [f"> **Warning:** {md_text(w)}" for w in result.warnings]
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
            and r.comparison.test != "fisher-exact"
            and (r.baseline_only or r.candidate_only)
        ):
            lines.append(
                f"- {r.scope}: {r.baseline_only} baseline-only and {r.candidate_only} candidate-only episodes "
                "have no partner and are left out of the paired test"
            )
    lines += sequential_view_lines(result)
    lines += ["", verdict_line(result)]
    return "\n".join(lines)


def sequential_view_lines(result: RegressionResult) -> list[str]:
    view = result.sequential_view
    if view is None or view.empty:
        return []
    return [
        "",
        "## Sequential view: what stopping early would save (for information, not the verdict)",
        "",
        "The anytime-valid paired test (`evalkit eval --against RUN --stop-when-decided`) fed these pairs in the "
        "planned order, at each row's alpha and the margin above, on success and on progress (each episode's mean "
        "of its progress flags, where both runs record them): where it would have decided, and the share of the "
        "row's planned episodes that stopping there saves. Intervals are valid at every pair count, so they are "
        "wider than the fixed-N test's.",
        "",
        markdown_table(view),
    ]
