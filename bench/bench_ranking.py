"""Coverage of the leaderboard's paired rank sets, by simulation.

    .venv/bin/python bench/bench_ranking.py [--runs 2000] [--quick]

Simulates checkpoints run on the same episodes: paired Bernoulli outcomes with the given success rates, correlated
across checkpoints through a shared episode difficulty (Gaussian copula, correlation 0.5: an init state hard for one
checkpoint tends to be hard for the others). For each cell (rates x episodes) it ranks the checkpoints as
`evalkit leaderboard` does (`evalkit.report.ranking.rank_bounds`, alpha 0.05) and reports the share of simulated
runs in which every checkpoint's rank set holds its true rank (ties: every rank of the tie), with its Monte-Carlo
standard error, next to the same for the uncorrected version (each pair tested at alpha), and the mean width of
the sets. The guarantee is coverage >= 0.95 in every cell; ties are its hardest case. The last line is
`coverage_min=X naive_coverage_min=Y`.
"""

from __future__ import annotations

import argparse
import math
import time

CELLS = {
    "3 tied at 80%": [0.8] * 3,
    "8 tied at 80%": [0.8] * 8,
    "2+2 tied, 90/80%": [0.9, 0.9, 0.8, 0.8],
    "5 spread 97..60%": [0.97, 0.95, 0.9, 0.8, 0.6],
    "8 close 97..90%": [0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.91, 0.9],
}
EPISODES = (50, 200, 500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="simulated runs per cell")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true", help="300 runs per cell")
    args = parser.parse_args()
    runs = 300 if args.quick else args.runs

    from evalkit.report.ranking import simulated_coverage

    start = time.perf_counter()
    print(f"{'cell':<20} {'episodes':>8} {'coverage':>15} {'naive':>8} {'mean set width':>15}")
    worst, worst_naive = 1.0, 1.0
    for seed, (name, rates) in enumerate(CELLS.items()):
        for episodes in EPISODES:
            covered, width = simulated_coverage(rates, episodes, runs, args.alpha, seed=seed * 100 + episodes)
            naive, _ = simulated_coverage(
                rates, episodes, runs, args.alpha, seed=seed * 100 + episodes, corrected=False
            )
            se = math.sqrt(max(covered * (1 - covered), 1e-12) / runs)
            worst, worst_naive = min(worst, covered), min(worst_naive, naive)
            print(f"{name:<20} {episodes:>8} {covered:>8.3f} ± {se:.3f} {naive:>8.3f} {width:>15.2f}")
    print(f"{runs} runs per cell, alpha {args.alpha}, {time.perf_counter() - start:.0f} s")
    print(f"coverage_min={worst:.3f} naive_coverage_min={worst_naive:.3f}")


if __name__ == "__main__":
    main()
