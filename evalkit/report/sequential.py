"""An anytime-valid paired regression test: candidate − baseline, read after every pair, stopped whenever decided.

It answers the fixed-N gate's two questions (`evalkit.report.regress`), each one-sided at `alpha`, at every number of
pairs instead of only at the end:
- fail: a significant drop, i.e. the upper confidence bound of the difference is below 0;
- pass: a drop larger than the margin is ruled out, i.e. the lower confidence bound is at or above −max_drop;
a fail takes precedence over a pass (as in the fixed-N gate); neither is undecided.

Construction: testing by betting (Waudby-Smith & Ramdas 2023, "Estimating means of bounded random variables by
betting", JRSS-B 86(1):1-27), with their "diversified Kelly" strategy: an average of capital processes with constant
bets on a grid. A paired difference x_i = candidate_i − baseline_i lies in [−1, 1] (binary success, or progress in
[0, 1]). For a null mean m,

    K_t(m) = (1/G) sum_k prod_{i<=t} (1 + b_k(m) (x_i − m)),   b_k(m) = min(k/G · c/(1 + m0), c/(1 + m)),

with G = `BETS`, c = `BET_CAP` < 1 and m0 the null the side is about (−max_drop for the lower side). Each product is
a nonnegative supermartingale when every pair's conditional mean is at most m, so is their average, and by Ville's
inequality it reaches 1/alpha with probability at most alpha, ever. Each factor decreases in m (the truncation keeps
it positive and decreasing), so K_t does: the m rejected after t pairs form a half-line, and the lower bound is the m
at which K_t(m) = 1/alpha. The upper side is the same construction on −x with m0 = 0. Bounds are running
intersections (a bound once reached is kept), which Ville's inequality allows. With constant bets K_t depends on the
pairs only through how often each difference occurred, so the test keeps those counts, not the sequence.

The guarantee, exactly:
- If, given all earlier pairs, each pair's expected difference is the same Delta (the pairs are i.i.d. draws from the
  protocol's episode distribution: the model under which the fixed-N gate is valid too), then with probability at
  least 1 − alpha the lower bound stays at or below Delta at every pair count simultaneously, and likewise the upper
  bound stays at or above it; [low, high] is a (1 − 2 alpha) confidence sequence. More generally the lower bound is
  valid whenever every pair's conditional expected difference is at most Delta (the upper: at least Delta).
- Hence P(the verdict is ever "pass") <= alpha when the candidate is worse by the margin or more, and P(ever "fail")
  <= alpha when it is not worse, whatever the stopping rule: stopping as soon as decided, stopping for any other
  reason at any time, or never stopping. Continuing after a decision is allowed; a pass may then turn into a fail
  (never the reverse), since both can be true of a drop smaller than the margin.
- Conditions: the pairs are fed in an order fixed before any outcome is seen: the run's planned episode order, not
  the order in which episodes finish (a success ends an episode early, so finishing order depends on outcomes; a
  finished pair waits until every pair planned before it has been fed); each pair once; never reordered, filtered
  or weighted by outcome; one test object for the whole run (restarting it, or
  choosing alpha or the margin after looking, voids the guarantee). Several rows (suites) need the caller's
  Bonferroni split of alpha, as in the fixed-N gate.
It does not cover: per-task differences that vary combined with a task order that is not exchangeable (a
round-robin order judges an early stop on the tasks seen so far; `bench/bench_sequential.py` measures the worst such
order); episodes excluded for errors when errors depend on the outcome; and it cannot show that there is no drop at
all: stopping on a pass forgoes detecting a real drop smaller than the margin that the full protocol might show.
Anytime validity costs power at the protocol's full size compared with the fixed-N test: on close calls it may stay
undecided where the fixed-N test at the end would decide (the bench's table shows where).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from evalkit.core.errors import EvalkitError
from evalkit.report.outcomes import PROGRESS_SCORE, Outcome
from evalkit.report.stats import Comparison, Rate, wilson

Verdict = Literal["pass", "fail", "undecided"]
# Bets are at most c / (1 + m): one pair can cost a capital process at most this fraction of itself.
BET_CAP = 0.9
# Constant bets in the mixture, evenly spaced on (0, c / (1 + m0)]; 20, 40 and 100 decide alike (the bench).
BETS = 20
_BISECTIONS = 50
# e-values are reported up to e^700 (a float holds up to about e^709)
MAX_LOG_E = 700.0


def bet_grid(null: float) -> np.ndarray:
    """The mixture's constant bets against `null`."""
    return np.arange(1, BETS + 1) / BETS * BET_CAP / (1.0 + null)


def _truncated(bets: np.ndarray, m: float) -> np.ndarray:
    return np.minimum(bets, BET_CAP / max(1.0 + m, 1e-12))


def log_capital_path(x: np.ndarray, bets: np.ndarray, m: float) -> np.ndarray:
    """log K_t(m) after each pair of x (shape (..., T)): for simulations of many sequences at once."""
    total: np.ndarray | None = None
    for bet in _truncated(bets, m):
        path = np.cumsum(np.log1p(bet * (x - m)), axis=-1)
        total = path if total is None else np.logaddexp(total, path)
    assert total is not None
    return total - math.log(len(bets))


def log_capital(values: np.ndarray, counts: np.ndarray, bets: np.ndarray, m: float) -> float:
    """log K_t(m) of pairs whose differences took `values`, each `counts` times."""
    if not len(values):
        return 0.0
    per_bet = (counts * np.log1p(_truncated(bets, m)[:, None] * (values - m))).sum(axis=1)
    return float(np.logaddexp.reduce(per_bet) - math.log(len(bets)))


@dataclass
class _Side:
    """One one-sided test against `null`, on differences x (the upper side runs on −x)."""

    null: float
    alpha: float
    counts: Counter = field(default_factory=Counter)
    log_k_max: float = 0.0
    bound: float = -1.0

    def add(self, value: float) -> None:
        self.counts[value] += 1
        values = np.array(list(self.counts))
        counts = np.array(list(self.counts.values()), dtype=float)
        bets = bet_grid(self.null)
        self.log_k_max = max(self.log_k_max, log_capital(values, counts, bets, self.null))
        if self.rejected:
            self.bound = max(self.bound, self.null)
        threshold = math.log(1.0 / self.alpha)
        low, high = self.bound, 1.0
        if log_capital(values, counts, bets, low) < threshold:
            return
        for _ in range(_BISECTIONS):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if log_capital(values, counts, bets, mid) >= threshold else (low, mid)
        self.bound = low

    @property
    def rejected(self) -> bool:
        return self.log_k_max >= math.log(1.0 / self.alpha)


@dataclass(frozen=True)
class SequentialState:
    """Where the test stands after `pairs` pairs (differences and bounds as fractions in [−1, 1])."""

    pairs: int
    # mean of candidate − baseline so far (nan before the first pair)
    diff: float
    # lower confidence bound, one-sided at alpha, valid at every pair count simultaneously
    low: float
    # upper confidence bound, likewise
    high: float
    verdict: Verdict
    # the pair count at which the verdict first became pass or fail
    decided_at: int | None
    # largest value so far of the e-process against a drop larger than the margin (pass at 1 / alpha)
    e_pass: float
    # largest value so far of the e-process against "no drop" (fail at 1 / alpha)
    e_fail: float

    @property
    def decided(self) -> bool:
        return self.verdict != "undecided"


class SequentialPairedTest:
    """Feed paired outcomes in the run's fixed order; read the interval and verdict at any time.

    `max_drop` is the margin in percentage points (as `evalkit regress --max-drop`); `outcome` "success" takes 0/1
    outcomes, "progress" takes values in [0, 1].
    """

    def __init__(self, alpha: float, max_drop: float, outcome: Outcome = "success"):
        if not 0 < alpha < 0.5:
            raise EvalkitError(f"alpha must be in (0, 0.5), got {alpha}")
        if not 0 <= max_drop < 100:
            raise EvalkitError(f"max_drop must be in [0, 100) percentage points, got {max_drop}")
        if outcome not in ("success", "progress"):
            raise EvalkitError(f"unknown outcome {outcome!r}: expected 'success' or 'progress'")
        self.alpha, self.max_drop, self.outcome = alpha, max_drop, outcome
        # the lower side runs on x, the upper side on −x
        self._pass = _Side(-max_drop / 100.0, alpha)
        self._fail = _Side(0.0, alpha)
        self._pairs, self._sum = 0, 0.0
        self._decided_at: int | None = None

    def _check(self, value: float) -> float:
        v = float(value)
        if self.outcome == "success" and v not in (0.0, 1.0):
            raise EvalkitError(f"a success outcome must be 0 or 1, got {value!r}")
        if not 0.0 <= v <= 1.0:
            raise EvalkitError(f"a progress outcome must be in [0, 1], got {value!r}")
        return v

    def update(self, baseline: float, candidate: float) -> SequentialState:
        """Add one pair (its baseline and candidate outcome) and return the new state."""
        x = self._check(candidate) - self._check(baseline)
        self._pass.add(x)
        self._fail.add(-x)
        self._pairs += 1
        self._sum += x
        if self._decided_at is None and (self._pass.rejected or self._fail.rejected):
            self._decided_at = self._pairs
        return self.state

    @property
    def state(self) -> SequentialState:
        verdict: Verdict = "fail" if self._fail.rejected else "pass" if self._pass.rejected else "undecided"
        return SequentialState(
            pairs=self._pairs,
            diff=self._sum / self._pairs if self._pairs else math.nan,
            low=self._pass.bound,
            high=-self._fail.bound,
            verdict=verdict,
            decided_at=self._decided_at,
            e_pass=math.exp(min(self._pass.log_k_max, MAX_LOG_E)),
            e_fail=math.exp(min(self._fail.log_k_max, MAX_LOG_E)),
        )


def evaluate_sequence(
    baseline: np.ndarray, candidate: np.ndarray, alpha: float, max_drop: float, outcome: Outcome = "success"
) -> SequentialState:
    """The state after feeding the pairs (baseline[i], candidate[i]) in order."""
    baseline, candidate = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if baseline.shape != candidate.shape or baseline.ndim != 1:
        raise EvalkitError("baseline and candidate must be 1-D sequences of the same length")
    test = SequentialPairedTest(alpha, max_drop, outcome)
    for b, c in zip(baseline, candidate, strict=True):
        test.update(b, c)
    return test.state


@dataclass(frozen=True)
class Decisions:
    """First decisions of many sequences (shape (...,)): verdict 1 pass, −1 fail, 0 undecided after all pairs."""

    verdict: np.ndarray
    # pairs used: the pair count of the first decision, or all pairs when undecided
    pairs: np.ndarray


def first_decisions(diffs: np.ndarray, alpha: float, max_drop: float) -> Decisions:
    """Stop-when-decided on many sequences of paired differences at once (shape (..., T)), deciding each as
    `SequentialPairedTest` would: for simulations. A pass and a fail first reached on the same pair is a fail."""
    threshold = math.log(1.0 / alpha)
    null = -max_drop / 100.0
    passed = log_capital_path(diffs, bet_grid(null), null) >= threshold
    failed = log_capital_path(-diffs, bet_grid(0.0), 0.0) >= threshold
    decided = passed | failed
    total = diffs.shape[-1]
    first = np.where(decided.any(axis=-1), decided.argmax(axis=-1), total)
    at = np.minimum(first, total - 1)[..., None]
    fail_first = np.take_along_axis(failed, at, axis=-1)[..., 0]
    verdict = np.where(first == total, 0, np.where(fail_first, -1, 1))
    return Decisions(verdict=verdict, pairs=np.minimum(first + 1, total))


# -- the seam `evalkit regress` judges a run that stopped by decision through ---------------------------------------
# The name a stop record gives (`Manifest.stop.test`), per statistic.
TEST_NAMES: dict[Outcome, str] = {"success": "wsr-betting", "progress": "wsr-betting-progress"}
COMPARISON_TEST = "sequential (betting)"


def outcome_columns(outcome: str) -> tuple[str, str]:
    """The (baseline, candidate) columns of a paired frame (`evalkit.report.regress`) holding this statistic."""
    column = "success" if outcome == "success" else PROGRESS_SCORE
    return f"{column}_base", f"{column}_cand"


def comparison_of(state: SequentialState, pairs: pd.DataFrame, outcome: str) -> Comparison:
    """The state as a `Comparison`: bounds one-sided at the test's alpha, p_drop = 1 / the largest e-value against
    "no drop" (an anytime-valid p-value: below alpha exactly when the test fails the candidate); no two-sided p."""
    base_col, cand_col = outcome_columns(outcome)

    def rate(column: str) -> Rate:
        values = pairs[column].astype(float)
        if outcome == "success":
            return wilson(int(values.sum()), len(values))
        return Rate(float(values.sum()), len(values), math.nan, math.nan)

    return Comparison(
        test=COMPARISON_TEST if outcome == "success" else f"{COMPARISON_TEST}, progress",
        baseline=rate(base_col),
        candidate=rate(cand_col),
        diff=state.diff,
        diff_low=state.low,
        diff_high=state.high,
        p_drop=min(1.0, 1.0 / state.e_fail),
        p_two_sided=math.nan,
    )


def feed(pairs: pd.DataFrame, alpha: float, max_drop: float, outcome: Outcome) -> SequentialState:
    """The state after feeding `pairs` in their row order (the caller's: the run's planned episode order)."""
    base_col, cand_col = outcome_columns(outcome)
    test = SequentialPairedTest(alpha, max_drop, outcome)
    for b, c in zip(pairs[base_col].astype(float), pairs[cand_col].astype(float), strict=True):
        test.update(b, c)
    return test.state


def paired_test(outcome: Outcome):
    """A `evalkit.report.regress.PairedTest` on this statistic, fed the pairs in the order it is given them."""

    def test(pairs: pd.DataFrame, alpha: float, max_drop: float) -> tuple[Comparison, Verdict]:
        state = feed(pairs, alpha, max_drop, outcome)
        return comparison_of(state, pairs, outcome), state.verdict

    return test


PAIRED_TESTS = {name: paired_test(outcome) for outcome, name in TEST_NAMES.items()}
