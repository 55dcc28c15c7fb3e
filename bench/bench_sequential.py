"""Proof by simulation of the anytime-valid paired gate (`evalkit.report.sequential`) against the fixed-N gate.

    .venv/bin/python bench/bench_sequential.py [--quick] [--runs 2000] [--alpha 0.05] [--suites 1] [--max-drop 5] [--pairs 500]

A row is one suite (`--suites K` tests it at alpha / K, the Bonferroni split `evalkit regress` uses for suite rows,
K = 4 for the LIBERO protocol). Each simulated run is a sequence of `--pairs` paired episodes (baseline, candidate), i.i.d. paired Bernoulli with the
cell's success rates and phi correlation `--rho` between the two outcomes of a pair. The sequential gate stops at its
first decision (pass: a drop larger than the margin ruled out; fail: a significant drop) or undecided after all
pairs; the fixed-N gate (today's `evalkit regress`: exact McNemar and Newcombe's paired interval at 1 − 2·alpha,
`evalkit.report.stats`) judges all pairs at once. Per cell: the rate of each verdict, mean and 90th percentile of the
pairs the sequential gate used, and the savings 1 − mean / pairs.

Type-I errors: a pass when the candidate is worse by the margin or more (cells with drop >= margin), and a fail when
it is not worse (drop 0). `type1_max` is the largest of them, including the heterogeneity check: 10 tasks whose
candidate-minus-baseline differences are +15 and −25 points (mean: the margin, or +15 and −15 around 0 for the fail
side), episodes in a round-robin order with the favourable tasks first in every round (the worst order for an early
stop). The last line: `type1_max=X savings_broken=Y savings_equal=Z` with broken = candidate 30 points below a 97%
baseline and equal = candidate equal to a 97% baseline (the 80% baseline's savings are on the line before).

The correlation: `--rho` defaults to 0.025, the mean phi of paired outcomes between different checkpoints on the same
LIBERO episodes (task, init state) in the per-episode results published by allenai/vla-evaluation-harness (files
`.claude/reproductions/{pi0-libero,oft-joint,xvla-libero}/merged_libero_*.json`, commit 239bd46): pi0, OpenVLA-OFT
and X-VLA at 93-99% success, 500 episodes per suite, three pairs of checkpoints on four suites, phi from −0.048 to
0.132. Failures of different checkpoints barely co-occur. Two checkpoints of one model probably correlate more; a
lower correlation means more discordant pairs, so the savings here are on the conservative side.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from evalkit.report.sequential import first_decisions  # noqa: E402
from evalkit.report.stats import PairedCounts, compare_paired  # noqa: E402

BASELINES = (0.97, 0.80)
DROPS_PP = (0, 2, 5, 10, 30, 50)
BROKEN, EQUAL = (0.97, 30), (0.97, 0)
RHO = 0.025
TASKS = 10
# (favourable, unfavourable) task differences, in points: a mean at the margin, and a mean of 0
HETEROGENEOUS_PP = ((15, -25), (15, -15))
HETEROGENEOUS_BASELINE = 0.80


def max_phi(base: float, cand: float) -> float:
    """The largest phi correlation two Bernoulli outcomes with these success rates can have."""
    low, high = sorted((base, cand))
    return math.sqrt(low * (1 - high) / (high * (1 - low))) if low > 0 and high < 1 else 0.0


def paired_outcomes(
    rng, base: np.ndarray, cand: np.ndarray, rho: float, shape
) -> tuple[np.ndarray, np.ndarray]:
    """Paired Bernoulli outcomes with success rates base, cand (broadcast to shape) and phi correlation rho."""
    both = base * cand + rho * np.sqrt(base * (1 - base) * cand * (1 - cand))
    lost, gained = base - both, cand - both
    u = rng.random(shape)
    baseline = u < both + lost
    candidate = (u < both) | ((u >= both + lost) & (u < both + lost + gained))
    return baseline, candidate


@functools.cache
def fixed_n_verdict(both: int, lost: int, gained: int, neither: int, alpha: float, max_drop: float) -> int:
    """Today's fixed-N gate on one paired table: −1 fail (significant drop), 1 pass (margin ruled out), 0 neither."""
    c = compare_paired(PairedCounts(both, lost, gained, neither), 1 - 2 * alpha)
    if c.p_drop < alpha:
        return -1
    return 1 if 100 * c.diff_low > -max_drop else 0


def fixed_n(baseline: np.ndarray, candidate: np.ndarray, alpha: float, max_drop: float) -> np.ndarray:
    tables = zip(
        (baseline & candidate).sum(-1),
        (baseline & ~candidate).sum(-1),
        (~baseline & candidate).sum(-1),
        (~baseline & ~candidate).sum(-1),
        strict=True,
    )
    return np.array([fixed_n_verdict(*map(int, t), alpha, max_drop) for t in tables])


def cell(rng, base: float, drop_pp: float, args) -> dict:
    rho = min(args.rho, max_phi(base, base - drop_pp / 100))
    baseline, candidate = paired_outcomes(rng, base, base - drop_pp / 100, rho, (args.runs, args.pairs))
    seq = first_decisions(candidate.astype(float) - baseline, args.row_alpha, args.max_drop)
    fixed = fixed_n(baseline, candidate, args.row_alpha, args.max_drop)
    null = "pass" if drop_pp >= args.max_drop else "fail" if drop_pp <= 0 else None
    # a second look: the sequential verdict, else the fixed-N test on all the pairs. `evalkit regress` does not do
    # this (a run gated by --stop-when-decided stays judged by its sequential test); the bench shows why
    staged = np.where(seq.verdict != 0, seq.verdict, fixed)
    return {
        "baseline": base,
        "drop": drop_pp,
        "pass": float(np.mean(seq.verdict == 1)),
        "fail": float(np.mean(seq.verdict == -1)),
        "mean": float(seq.pairs.mean()),
        "p90": float(np.percentile(seq.pairs, 90)),
        "fixed_pass": float(np.mean(fixed == 1)),
        "fixed_fail": float(np.mean(fixed == -1)),
        "type1": None if null is None else float(np.mean(seq.verdict == (1 if null == "pass" else -1))),
        "staged_type1": None if null is None else float(np.mean(staged == (1 if null == "pass" else -1))),
        "rho": rho,
    }


def heterogeneous(rng, favourable_pp: float, unfavourable_pp: float, args) -> float:
    """Type-I error with per-task differences that vary, favourable tasks first in every round-robin round."""
    half = TASKS // 2
    diff = np.array([favourable_pp] * half + [unfavourable_pp] * (TASKS - half)) / 100
    rounds = math.ceil(args.pairs / TASKS)
    base = np.full(TASKS, HETEROGENEOUS_BASELINE)
    rho = min([args.rho] + [max_phi(b, c) for b, c in zip(base, base + diff, strict=True)])
    baseline, candidate = paired_outcomes(rng, base, base + diff, rho, (args.runs, rounds, TASKS))
    x = (candidate.astype(float) - baseline).reshape(args.runs, -1)[:, : args.pairs]
    seq = first_decisions(x, args.row_alpha, args.max_drop)
    null_verdict = 1 if diff.mean() <= -args.max_drop / 100 + 1e-12 else -1
    return float(np.mean(seq.verdict == null_verdict))


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def table(rows: list[dict], pairs: int) -> list[str]:
    lines = [
        "| baseline | candidate | sequential pass | fail | undecided | mean pairs | p90 pairs | savings "
        f"| fixed-N ({pairs}) pass | fail |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        undecided = 1 - r["pass"] - r["fail"]
        lines.append(
            f"| {pct(r['baseline'])} | {pct(r['baseline'] - r['drop'] / 100)} (−{r['drop']:g} pp) "
            f"| {pct(r['pass'])} | {pct(r['fail'])} | {pct(undecided)} | {r['mean']:.0f} | {r['p90']:.0f} "
            f"| {1 - r['mean'] / pairs:.2f} | {pct(r['fixed_pass'])} | {pct(r['fixed_fail'])} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 simulated runs per cell instead of 2000")
    parser.add_argument("--runs", type=int, default=None, help="simulated runs per cell (default 2000)")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument(
        "--suites", type=int, default=1, help="suites in the run: each row tests at alpha / suites"
    )
    parser.add_argument("--max-drop", type=float, default=5.0, help="margin, percentage points")
    parser.add_argument(
        "--pairs", type=int, default=500, help="the fixed-N design's paired episodes per suite"
    )
    parser.add_argument("--rho", type=float, default=RHO, help="phi correlation of a pair's two outcomes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.runs = args.runs or (500 if args.quick else 2000)
    args.row_alpha = args.alpha / args.suites
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    rows = [cell(rng, base, drop, args) for base in BASELINES for drop in DROPS_PP]
    hetero = [heterogeneous(rng, fav, unfav, args) for fav, unfav in HETEROGENEOUS_PP]
    print(
        f"# sequential vs fixed-N paired gate: alpha {args.row_alpha:g} per row, margin {args.max_drop:g} pp, "
        f"{args.runs} runs per cell, up to {args.pairs} pairs, phi {args.rho:g}"
    )
    print("\n".join(table(rows, args.pairs)))
    se = math.sqrt(args.row_alpha * (1 - args.row_alpha) / args.runs)
    print(
        f"heterogeneous tasks, favourable first in each round (baseline {pct(HETEROGENEOUS_BASELINE)}): "
        f"pass at the margin {pct(hetero[0])}, fail at no drop {pct(hetero[1])}"
    )
    capped = [f"{pct(r['baseline'])} −{r['drop']:g} pp: {r['rho']:.3f}" for r in rows if r["rho"] < args.rho]
    if capped:
        print(f"phi capped at the largest possible for these rates: {'; '.join(capped)}")
    staged = max(r["staged_type1"] for r in rows if r["staged_type1"] is not None)
    print(
        f"a second look, the fixed-N test on the runs the sequential gate left undecided after all {args.pairs} "
        f"pairs: type-I error up to {pct(staged)} (each alone <= {args.row_alpha:g}); so `evalkit regress` judges a "
        "run gated with --stop-when-decided by its sequential test only"
    )
    print(
        f"Monte-Carlo standard error of a rate near alpha: {100 * se:.1f} pp; wall {time.perf_counter() - start:.0f} s"
    )
    by_cell = {(r["baseline"], r["drop"]): r for r in rows}
    type1 = max([r["type1"] for r in rows if r["type1"] is not None] + hetero)
    savings = {key: 1 - by_cell[key]["mean"] / args.pairs for key in by_cell}
    print(f"savings_equal_80={savings[(0.80, 0)]:.2f}")
    print(f"type1_max={type1:.3f} savings_broken={savings[BROKEN]:.2f} savings_equal={savings[EQUAL]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
