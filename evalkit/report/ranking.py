"""A paired ranking of checkpoints with a confidence set on each one's rank.

Checkpoints that ran the same episodes (same protocol, same identities) are compared pair by pair on those
episodes with the exact McNemar test (a two-sided binomial test of the discordant episodes, as
`evalkit.report.stats.mcnemar_exact`, vectorized here) at alpha / m for the m = K(K-1)/2 pairs of K checkpoints
(Bonferroni). "A beats B" is claimed where A wins significantly more of their discordant episodes. Each
checkpoint's rank set is then [1 + the number of checkpoints that beat it, K - the number it beats].

Guarantee: if episodes are independent draws from the protocol's episode distribution, then with probability at
least 1 - alpha no "beats" claim is false, all at once, and so every checkpoint's true rank (by its success rate
under this protocol; with equal rates, every rank of the tie) lies in its set, for all checkpoints at the same
time. A checkpoint is called best only when its set is {1}. Proof: a false "A beats B" needs the one-sided exact
test for A to reject at alpha / (2m) while A wins at most half of the discordant episodes in expectation, which
has probability at most alpha / (2m); two directions per pair and m pairs give at most alpha. The seeded
simulation in `bench/bench_ranking.py` (and a small one in the tests) measures the coverage.
Limits: the sets are conservative (Bonferroni, exact tests), so with few episodes or close rates they are wide;
ranks are by the success rate on the shared episodes, pooled over suites, not by other statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

MIN_SHARED = 10
GUARANTEE = (
    "Rank sets: each pair of checkpoints is compared on the episodes all of them finished with the exact McNemar "
    "test, two-sided at alpha / (number of pairs) (Bonferroni); a checkpoint's set runs from 1 + the number of "
    "checkpoints that beat it to the number of checkpoints minus the number it beats. Guarantee: if episodes are "
    "independent draws from the protocol's episode distribution, then with probability at least 1 - alpha every "
    "checkpoint's true rank (by success rate under this protocol) lies in its set, for all checkpoints at once; a "
    "checkpoint is called best only when its set is {1}. Not guaranteed: ranks on other suites, protocols or "
    "statistics, and the sets are conservative, so close checkpoints stay unseparated until there are enough "
    "episodes."
)


@dataclass(frozen=True)
class RankBounds:
    """Per checkpoint (in input order): the smallest and largest rank the data allow, and who beats whom."""

    best: np.ndarray
    worst: np.ndarray
    # beats[i, j]: checkpoint i wins significantly more discordant episodes than j
    beats: np.ndarray


def pairwise_p(outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided exact McNemar p-values of every pair, and wins[i, j] = episodes i solved and j did not.

    `outcomes` is (checkpoints, episodes) bool, columns aligned by episode identity."""
    x = outcomes.astype(np.int64)
    wins = x @ (1 - x).T
    d = wins + wins.T
    low = np.minimum(wins, wins.T)
    with np.errstate(invalid="ignore"):
        p = np.minimum(1.0, 2 * stats.binom.cdf(low, d, 0.5))
    p[d == 0] = 1.0
    np.fill_diagonal(p, 1.0)
    return p, wins


def rank_bounds(outcomes: np.ndarray, alpha: float, corrected: bool = True) -> RankBounds:
    """Rank sets of the checkpoints (rows of `outcomes`). `corrected=False` tests each pair at alpha, with no
    multiplicity correction: only for showing, in the simulation, what the correction is for."""
    k = outcomes.shape[0]
    pairs = max(1, k * (k - 1) // 2)
    level = alpha / pairs if corrected else alpha
    p, wins = pairwise_p(outcomes)
    beats = (p < level) & (wins > wins.T)
    return RankBounds(best=1 + beats.sum(axis=0), worst=k - beats.sum(axis=1), beats=beats)


def true_rank_range(rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranks each checkpoint holds given its true rate (1 = best; a tie holds every rank it spans)."""
    rates = np.asarray(rates, dtype=float)
    higher = (rates[None, :] > rates[:, None]).sum(axis=1)
    lower = (rates[None, :] < rates[:, None]).sum(axis=1)
    return 1 + higher, len(rates) - lower


def simulate_outcomes(
    rates: np.ndarray, episodes: int, correlation: float, rng: np.random.Generator
) -> np.ndarray:
    """Paired Bernoulli outcomes (checkpoints x episodes) with the given success rates, correlated across
    checkpoints through a shared episode difficulty (a Gaussian copula), as real paired runs are: an init state
    that is hard for one checkpoint tends to be hard for the others."""
    shared = rng.standard_normal(episodes)
    own = rng.standard_normal((len(rates), episodes))
    latent = np.sqrt(correlation) * shared + np.sqrt(1 - correlation) * own
    return stats.norm.cdf(latent) < np.asarray(rates, dtype=float)[:, None]


def simulated_coverage(
    rates: list[float],
    episodes: int,
    runs: int,
    alpha: float,
    seed: int,
    correlation: float = 0.5,
    corrected: bool = True,
) -> tuple[float, float]:
    """Share of simulated runs in which every checkpoint's rank set holds its true ranks, and the mean set width
    (worst - best + 1)."""
    rng = np.random.default_rng(seed)
    lo, hi = true_rank_range(np.asarray(rates))
    covered, width = 0, 0.0
    for _ in range(runs):
        bounds = rank_bounds(
            simulate_outcomes(np.asarray(rates), episodes, correlation, rng), alpha, corrected
        )
        covered += bool(np.all(bounds.best <= lo) and np.all(bounds.worst >= hi))
        width += float(np.mean(bounds.worst - bounds.best + 1))
    return covered / runs, width / runs


@dataclass
class Ranking:
    """The ranking section of one leaderboard table."""

    alpha: float
    # episodes every ranked checkpoint finished with an outcome: the ranking's common ground
    shared: int
    # checkpoint, success on the shared episodes, rank set, whom it beats and who beats it (best first)
    table: pd.DataFrame
    # one sentence: which checkpoint is best, or that the data do not say
    statement: str


def _span(best: int, worst: int) -> str:
    return str(best) if best == worst else f"{best}–{worst}"


def rank_checkpoints(outcomes: dict[str, pd.Series], alpha: float) -> Ranking:
    """Rank sets of checkpoints from their outcomes (label -> success indexed by episode identity), on the episodes
    all of them finished."""
    labels = list(outcomes)
    shared = outcomes[labels[0]].index
    for label in labels[1:]:
        shared = shared.intersection(outcomes[label].index)
    confidence = f"{100 * (1 - alpha):g}%"
    if len(shared) < MIN_SHARED:
        return Ranking(
            alpha,
            len(shared),
            pd.DataFrame(),
            f"No paired ranking: the {len(labels)} checkpoints finished only {len(shared)} episode(s) in common "
            f"(at least {MIN_SHARED} needed); run them on the same episodes (same protocol, tasks and seeds).",
        )
    matrix = np.array([outcomes[label].loc[shared].to_numpy(dtype=bool) for label in labels])
    bounds = rank_bounds(matrix, alpha)
    rates = matrix.mean(axis=1)
    order = sorted(range(len(labels)), key=lambda i: (-rates[i], bounds.best[i], labels[i]))
    table = pd.DataFrame(
        [
            {
                "checkpoint": labels[i],
                "shared episodes": len(shared),
                "success % (shared)": round(100 * rates[i], 1),
                f"rank ({confidence} set)": _span(int(bounds.best[i]), int(bounds.worst[i])),
                "beats": ", ".join(labels[j] for j in order if bounds.beats[i, j]) or "—",
                "beaten by": ", ".join(labels[j] for j in order if bounds.beats[j, i]) or "—",
            }
            for i in order
        ]
    )
    best = [labels[i] for i in order if bounds.worst[i] == 1]
    if best:
        statement = (
            f"Best: {best[0]}: its rank is 1 with {confidence} confidence (it beats every other checkpoint on the "
            f"{len(shared)} shared episodes, exact McNemar, Bonferroni over the pairs)."
        )
    else:
        top = [labels[i] for i in order if bounds.best[i] == 1]
        statement = (
            f"No checkpoint is shown best at {confidence} confidence: rank 1 is in the sets of {', '.join(top)}; "
            "more episodes would be needed to separate them."
        )
    return Ranking(alpha, len(shared), table, statement)
