"""The anytime-valid paired gate: its type-I error at the margin on seeded simulations (and the same check failing
for the naive gate that peeks at the fixed-N test after every episode), its bounds and verdicts, bad input."""

import functools
import math

import numpy as np
import pytest

from evalkit.core.errors import EvalkitError
from evalkit.report.sequential import (
    SequentialPairedTest,
    bet_grid,
    evaluate_sequence,
    first_decisions,
    log_capital_path,
)
from evalkit.report.stats import PairedCounts, compare_paired

ALPHA, MAX_DROP, PAIRS = 0.05, 5.0, 500
PASS, FAIL = 1, -1


def simulate(base: float, cand: float, runs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent paired Bernoulli outcomes, runs x PAIRS."""
    rng = np.random.default_rng(seed)
    return rng.random((runs, PAIRS)) < base, rng.random((runs, PAIRS)) < cand


def sequential_verdicts(baseline: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    return first_decisions(candidate.astype(float) - baseline, ALPHA, MAX_DROP).verdict


@functools.cache
def fixed_n_verdict(both: int, lost: int, gained: int, neither: int) -> int:
    """Today's fixed-N gate (evalkit regress) on one paired table."""
    c = compare_paired(PairedCounts(both, lost, gained, neither), 1 - 2 * ALPHA)
    if c.p_drop < ALPHA:
        return FAIL
    return PASS if 100 * c.diff_low > -MAX_DROP else 0


def naive_verdicts(baseline: np.ndarray, candidate: np.ndarray, first_look: int = 10) -> np.ndarray:
    """The fixed-N gate read after every episode from `first_look` on, stopped at its first pass or fail."""
    tables = np.stack(
        [baseline & candidate, baseline & ~candidate, ~baseline & candidate, ~baseline & ~candidate], axis=-1
    ).cumsum(axis=1)
    verdicts = np.zeros(len(baseline), dtype=int)
    for run, path in enumerate(tables):
        for table in path[first_look - 1 :]:
            verdict = fixed_n_verdict(*map(int, table))
            if verdict:
                verdicts[run] = verdict
                break
    return verdicts


def pass_rate_at_the_margin(verdicts, runs: int) -> float:
    """How often a gate passes a candidate exactly `MAX_DROP` points worse (a pass is then a type-I error)."""
    baseline, candidate = simulate(0.97, 0.97 - MAX_DROP / 100, runs, seed=18)
    return float(np.mean(verdicts(baseline, candidate) == PASS))


def test_sequential_gate_keeps_the_type1_error_at_the_margin_below_alpha():
    assert pass_rate_at_the_margin(sequential_verdicts, runs=4000) <= ALPHA


def test_the_same_check_fails_for_the_fixed_n_gate_peeked_at_after_every_episode():
    assert pass_rate_at_the_margin(naive_verdicts, runs=100) > 2 * ALPHA


def test_a_drop_is_rarely_called_when_there_is_none():
    baseline, candidate = simulate(0.8, 0.8, 4000, seed=3)
    assert np.mean(sequential_verdicts(baseline, candidate) == FAIL) <= ALPHA


def test_each_bound_covers_the_true_difference_at_every_pair_count():
    """Time-uniform coverage away from the margin: the lower bound ever above +10 pp when that is the truth."""
    baseline, candidate = simulate(0.7, 0.8, 4000, seed=5)
    x = candidate.astype(float) - baseline
    truth = 0.1
    ever_above = (log_capital_path(x, bet_grid(-MAX_DROP / 100), truth) >= math.log(1 / ALPHA)).any(axis=1)
    ever_below = (log_capital_path(-x, bet_grid(0.0), -truth) >= math.log(1 / ALPHA)).any(axis=1)
    assert ever_above.mean() <= ALPHA and ever_below.mean() <= ALPHA


def replay(baseline, candidate, outcome="success") -> list:
    test = SequentialPairedTest(ALPHA, MAX_DROP, outcome)
    return [test.update(b, c) for b, c in zip(baseline, candidate, strict=True)]


def test_feeding_pairs_one_by_one_decides_as_the_batch_simulation_does():
    rng = np.random.default_rng(7)
    cells = [(0.97, 0.97), (0.97, 0.67), (0.8, 0.8), (0.8, 0.7)]
    baseline = np.concatenate([rng.random((3, 300)) < b for b, _ in cells])
    candidate = np.concatenate([rng.random((3, 300)) < c for _, c in cells])
    batch = first_decisions(candidate.astype(float) - baseline, ALPHA, MAX_DROP)
    codes = {"pass": PASS, "fail": FAIL, "undecided": 0}
    for i in range(len(baseline)):
        states = replay(baseline[i], candidate[i])
        first = next((s for s in states if s.decided), states[-1])
        assert (codes[first.verdict], first.pairs) == (batch.verdict[i], batch.pairs[i])
        assert states[-1].decided_at == (first.pairs if first.decided else None)


def test_an_unchanged_checkpoint_passes_and_its_bounds_are_consistent():
    rng = np.random.default_rng(1)
    outcomes = rng.random(500) < 0.97
    states = replay(outcomes, outcomes)
    lows, highs = [s.low for s in states], [s.high for s in states]
    # running intersections: a bound once reached is kept
    assert lows == sorted(lows) and highs == sorted(highs, reverse=True)
    assert all(s.low <= 0 <= s.high for s in states)
    for s in states:
        assert (s.verdict == "pass") == (s.low >= -MAX_DROP / 100)
        assert s.verdict != "fail" and s.high > 0
    final = states[-1]
    assert final.verdict == "pass" and final.decided_at < 150 and final.e_pass >= 1 / ALPHA
    assert final.diff == 0 and final.pairs == 500


def test_a_broken_checkpoint_fails_within_a_few_pairs():
    states = replay(np.ones(40), np.zeros(40))
    first = next(s for s in states if s.decided)
    assert first.verdict == "fail" and first.pairs <= 10
    assert first.high <= 0 and first.e_fail >= 1 / ALPHA
    assert states[first.pairs - 2].verdict == "undecided" and states[first.pairs - 2].high > 0
    assert states[-1].verdict == "fail" and states[-1].high < -0.5
    # the evidence keeps growing past what a float holds: the e-value is capped, nothing overflows
    assert evaluate_sequence(np.ones(1200), np.zeros(1200), ALPHA, MAX_DROP).e_fail == math.exp(700)


def test_progress_outcomes_give_the_same_test_on_binary_data_and_accept_fractions():
    rng = np.random.default_rng(4)
    baseline, candidate = rng.random(200) < 0.8, rng.random(200) < 0.75
    assert replay(baseline, candidate, "progress") == replay(baseline, candidate, "success")
    fractions = evaluate_sequence(np.full(300, 0.5), np.full(300, 0.5), ALPHA, MAX_DROP, "progress")
    assert fractions.verdict == "pass" and fractions.low <= 0 <= fractions.high


@pytest.mark.parametrize(
    ("kwargs", "pair", "message"),
    [
        ({"alpha": 0.5}, (1, 1), "alpha must be in"),
        ({"alpha": 0.0}, (1, 1), "alpha must be in"),
        ({"max_drop": -1}, (1, 1), "max_drop must be in"),
        ({"outcome": "reward"}, (1, 1), "unknown outcome"),
        ({}, (1, 0.5), "must be 0 or 1"),
        ({}, (math.nan, 1), "must be 0 or 1"),
        ({"outcome": "progress"}, (1.5, 1), r"must be in \[0, 1\]"),
        ({"outcome": "progress"}, (0.5, math.nan), r"must be in \[0, 1\]"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kwargs, pair, message):
    with pytest.raises(EvalkitError, match=message):
        SequentialPairedTest(**{"alpha": ALPHA, "max_drop": MAX_DROP, **kwargs}).update(*pair)


def test_sequences_of_different_lengths_are_refused():
    with pytest.raises(EvalkitError, match="same length"):
        evaluate_sequence(np.ones(3), np.ones(4), ALPHA, MAX_DROP)
