"""The paired ranking's guarantee, measured: with probability >= 1 - alpha every checkpoint's rank set holds its
true rank, all at once (issue 18 item 6). A small seeded simulation; `bench/bench_ranking.py` runs the full grid."""

import numpy as np
import pandas as pd
import pytest

from evalkit.report.ranking import rank_bounds, rank_checkpoints, simulated_coverage, true_rank_range


def test_true_ranks_of_ties_span_the_tie():
    lo, hi = true_rank_range(np.array([0.9, 0.7, 0.9, 0.5]))
    assert lo.tolist() == [1, 3, 1, 4] and hi.tolist() == [2, 3, 2, 4]


def test_rank_sets_from_a_known_table():
    # a solves everything, b half, c nothing: on 40 episodes every pair is separated
    outcomes = np.array([[True] * 40, [True, False] * 20, [False] * 40])
    bounds = rank_bounds(outcomes, 0.05)
    assert bounds.best.tolist() == [1, 2, 3] and bounds.worst.tolist() == [1, 2, 3]
    same = rank_bounds(np.array([[True, False] * 20, [True, False] * 20]), 0.05)
    assert same.best.tolist() == [1, 1] and same.worst.tolist() == [2, 2]  # no discordant pair: a tie


@pytest.mark.parametrize(
    ("rates", "episodes"),
    [([0.8] * 6, 100), ([0.9, 0.9, 0.7, 0.7], 60), ([0.97, 0.95, 0.95, 0.9, 0.6], 200)],
)
def test_coverage_holds_where_the_uncorrected_version_fails(rates, episodes):
    """Coverage >= 1 - alpha with the Bonferroni correction; the same simulation catches the naive version (each
    pair at alpha) where ties make it claim orders that are not there."""
    covered, _ = simulated_coverage(rates, episodes, runs=300, alpha=0.05, seed=7)
    assert covered >= 0.95
    if len(set(rates)) == 1:
        naive, _ = simulated_coverage(rates, episodes, runs=300, alpha=0.05, seed=7, corrected=False)
        assert naive < 0.9  # 15 tied pairs each tested at 0.05


def test_clear_differences_are_resolved():
    covered, width = simulated_coverage([0.97, 0.7, 0.4], 200, runs=100, alpha=0.05, seed=3)
    assert covered == 1.0 and width == pytest.approx(1.0)  # every rank pinned down


def test_ranking_uses_only_the_episodes_every_checkpoint_finished():
    index = pd.MultiIndex.from_tuples(
        [("s", 0, i, 7) for i in range(30)], names=["suite", "task_id", "init_state", "seed"]
    )
    a = pd.Series([True] * 30, index=index)
    b = pd.Series([False] * 30, index=index)[5:]  # b lacks 5 episodes
    ranking = rank_checkpoints({"a": a, "b": b}, 0.05)
    assert ranking.shared == 25 and ranking.table["shared episodes"].tolist() == [25, 25]
    assert ranking.statement.startswith("Best: a: its rank is 1 with 95% confidence")
