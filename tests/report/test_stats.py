import math

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.report.stats import (
    PairedCounts,
    compare_paired,
    compare_unpaired,
    fisher_drop,
    mcnemar_exact,
    newcombe_diff,
    paired_phi,
    wilson,
)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [  # Wilson 95% intervals of published LIBERO rates (e.g. 98.8% of 500), computed independently
        (494, 500, 97.4, 99.4),
        (462, 500, 89.7, 94.4),
        (1954, 2000, 96.9, 98.3),
        (390, 400, 95.5, 98.6),
        (9, 10, 59.6, 98.2),
    ],
)
def test_wilson_matches_reference_intervals(k, n, low, high):
    r = wilson(k, n)
    assert round(100 * r.low, 1) == low
    assert round(100 * r.high, 1) == high
    assert r.rate == k / n


def test_wilson_edges():
    assert math.isnan(wilson(0, 0).low)
    zero, full = wilson(0, 10), wilson(10, 10)
    assert zero.low == 0.0 and 0.25 < zero.high < 0.35  # Wilson upper bound of 0/10 is 27.8%
    assert full.high == pytest.approx(1.0) and round(100 * full.low, 1) == 72.2
    with pytest.raises(EvalkitError):
        wilson(11, 10)


def test_mcnemar_exact_hand_counts():
    # 10 pairs lost, 2 gained: P(X >= 10 | Bin(12, 1/2)) = (1 + 12 + 66) / 4096
    p_drop, p_two = mcnemar_exact(10, 2)
    assert p_drop == pytest.approx(79 / 4096)
    assert p_two == pytest.approx(158 / 4096)
    # 3 lost, 0 gained: one-sided 1/8, two-sided 1/4
    assert mcnemar_exact(3, 0) == pytest.approx((1 / 8, 1 / 4))
    # more gained than lost: no evidence of a drop
    p_drop, _ = mcnemar_exact(1, 6)
    assert p_drop == pytest.approx(1 - 1 / 128)  # P(X >= 1 | Bin(7, 1/2))
    assert mcnemar_exact(0, 0) == (1.0, 1.0)


def test_fisher_drop_hand_counts():
    # baseline 3/3, candidate 0/3: hypergeometric P = 1/C(6,3) = 1/20
    p_drop, p_two = fisher_drop(3, 3, 0, 3)
    assert p_drop == pytest.approx(1 / 20)
    assert p_two == pytest.approx(2 / 20)
    assert fisher_drop(0, 3, 3, 3)[0] == pytest.approx(1.0)


def test_newcombe_independent_matches_published_example():
    # Newcombe (1998) independent proportions, 56/70 - 48/80, method 10: 0.0524 to 0.3339
    diff, low, high = newcombe_diff(wilson(56, 70), wilson(48, 80))
    assert diff == pytest.approx(0.2)
    assert round(low, 4) == 0.0524 and round(high, 4) == 0.3339


def test_paired_interval_is_narrower_for_correlated_pairs():
    t = PairedCounts(both=40, lost=10, gained=2, neither=8)
    paired = compare_paired(t)
    unpaired = compare_unpaired(50, 60, 42, 60)
    assert paired.test == "mcnemar-exact" and unpaired.test == "fisher-exact"
    assert paired.diff == pytest.approx(unpaired.diff) == pytest.approx(-8 / 60)
    assert paired_phi(t) > 0
    assert paired.diff_high - paired.diff_low < unpaired.diff_high - unpaired.diff_low
    assert paired.diff_low < paired.diff < paired.diff_high < 0  # 10 lost vs 2 gained: a clear drop
    assert paired.p_drop == pytest.approx(79 / 4096)


def test_identical_runs_have_zero_difference():
    c = compare_paired(PairedCounts(both=45, lost=0, gained=0, neither=5))
    assert c.diff == 0 and c.diff_low < 0 < c.diff_high and c.p_drop == 1.0


def test_newcombe_paired_matches_published_example():
    # Cavo et al. (2012) paired table [[59, 6], [16, 80]] as in Fagerland, Lydersen & Laake, "Statistical Analysis
    # of Contingency Tables", ch. 8: Newcombe square-and-add -0.0621 (95% CI -0.1186 to -0.0046).
    # Rows = the candidate, columns = the baseline: 6 gained, 16 lost.
    c = compare_paired(PairedCounts(both=59, lost=16, gained=6, neither=80))
    assert round(c.diff, 4) == -0.0621
    assert round(c.diff_low, 4) == -0.1186 and round(c.diff_high, 4) == -0.0046
