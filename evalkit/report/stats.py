"""Binomial statistics for success rates: Wilson intervals, exact McNemar, Fisher, differences of proportions.

Tests come from scipy.stats (`binomtest`, `fisher_exact`). The interval of a difference of two success rates uses
Newcombe's hybrid score method (Newcombe 1998, "Improved confidence intervals for the difference between binomial
proportions based on paired data", Stat. Med. 17:2635, method 10; for independent samples the same construction with
zero correlation is method 10 of Newcombe 1998, Stat. Med. 17:873). It is built from the two Wilson intervals given by
scipy and, for paired data, Newcombe's continuity-adjusted phi correlation of the 2x2 table; unlike the Wald interval it stays inside [-1, 1] and
keeps its coverage near 0 and 1, where success rates of good checkpoints live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from evalkit.core.errors import EvalkitError

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Rate:
    """k successes out of n, with its Wilson interval (all as fractions in [0, 1]; nan when n == 0)."""

    k: int
    n: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> Rate:
    """The Wilson score interval of k successes in n trials (scipy's `proportion_ci(method="wilson")`)."""
    if n < 0 or k < 0 or k > n:
        raise EvalkitError(f"invalid count: {k} successes out of {n}")
    if n == 0:
        return Rate(0, 0, math.nan, math.nan)
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Rate(int(k), int(n), float(ci.low), float(ci.high))


@dataclass(frozen=True)
class PairedCounts:
    """The 2x2 table of paired outcomes, baseline (A) against candidate (B)."""

    both: int  # A success, B success
    lost: int  # A success, B failure (discordant: the candidate lost it)
    gained: int  # A failure, B success (discordant: the candidate gained it)
    neither: int  # A failure, B failure

    @property
    def n(self) -> int:
        return self.both + self.lost + self.gained + self.neither

    @property
    def discordant(self) -> int:
        return self.lost + self.gained


@dataclass(frozen=True)
class Comparison:
    """Candidate minus baseline: a difference of success rates, its interval and the test's p-values."""

    test: str  # "mcnemar-exact" or "fisher-exact"
    baseline: Rate
    candidate: Rate
    diff: float  # candidate rate - baseline rate
    diff_low: float
    diff_high: float
    p_drop: float  # one-sided: H1 = the candidate succeeds less often
    p_two_sided: float


def mcnemar_exact(lost: int, gained: int) -> tuple[float, float]:
    """Exact McNemar test: a binomial test of the discordant pairs against 1/2.

    Returns (p for a drop, one-sided: more pairs lost than gained; p two-sided). No discordant pair → (1, 1).
    """
    d = lost + gained
    if d == 0:
        return 1.0, 1.0
    p_drop = stats.binomtest(lost, d, 0.5, alternative="greater").pvalue
    p_two = stats.binomtest(lost, d, 0.5, alternative="two-sided").pvalue
    return float(p_drop), float(p_two)


def fisher_drop(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """Fisher's exact test of two independent samples (A = baseline, B = candidate).

    Returns (p for a drop, one-sided: A's odds of success are greater than B's; p two-sided).
    """
    if n_a == 0 or n_b == 0:
        return 1.0, 1.0
    table = [[k_a, n_a - k_a], [k_b, n_b - k_b]]
    p_drop = stats.fisher_exact(table, alternative="greater").pvalue
    p_two = stats.fisher_exact(table, alternative="two-sided").pvalue
    return float(p_drop), float(p_two)


def newcombe_diff(b: Rate, a: Rate, phi: float = 0.0) -> tuple[float, float, float]:
    """Difference b - a with Newcombe's hybrid score interval (phi = 0 for independent samples)."""
    pb, pa = b.rate, a.rate
    diff = pb - pa
    below = (pb - b.low) ** 2 - 2 * phi * (pb - b.low) * (a.high - pa) + (a.high - pa) ** 2
    above = (b.high - pb) ** 2 - 2 * phi * (b.high - pb) * (pa - a.low) + (pa - a.low) ** 2
    return diff, max(-1.0, diff - math.sqrt(max(below, 0.0))), min(1.0, diff + math.sqrt(max(above, 0.0)))


def paired_phi(t: PairedCounts) -> float:
    """Newcombe's continuity-adjusted phi of the paired 2x2 table (method 10; 0 when a margin is empty).

    With B = ad - bc: B - n/2 if B > n/2, B if B < 0, else 0; divided by the root of the product of the margins.
    """
    a, b, c, d = t.both, t.lost, t.gained, t.neither
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    if not denom:
        return 0.0
    cross = a * d - b * c
    adjusted = cross - t.n / 2 if cross > t.n / 2 else (cross if cross < 0 else 0.0)
    return adjusted / math.sqrt(denom)


def compare_paired(t: PairedCounts, confidence: float = CONFIDENCE) -> Comparison:
    """Exact McNemar test and Newcombe's paired interval (method 10) for the candidate minus the baseline."""
    if t.n == 0:
        raise EvalkitError("no paired episodes to compare")
    base = wilson(t.both + t.lost, t.n, confidence)
    cand = wilson(t.both + t.gained, t.n, confidence)
    diff, low, high = newcombe_diff(cand, base, paired_phi(t))
    p_drop, p_two = mcnemar_exact(t.lost, t.gained)
    return Comparison("mcnemar-exact", base, cand, diff, low, high, p_drop, p_two)


def compare_unpaired(k_a: int, n_a: int, k_b: int, n_b: int, confidence: float = CONFIDENCE) -> Comparison:
    """Fisher's exact test and Newcombe's independent-samples interval for the candidate (b) minus the baseline (a)."""
    if n_a == 0 or n_b == 0:
        raise EvalkitError("an unpaired comparison needs episodes on both sides")
    base, cand = wilson(k_a, n_a, confidence), wilson(k_b, n_b, confidence)
    diff, low, high = newcombe_diff(cand, base)
    p_drop, p_two = fisher_drop(k_a, n_a, k_b, n_b)
    return Comparison("fisher-exact", base, cand, diff, low, high, p_drop, p_two)
