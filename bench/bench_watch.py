"""What `evalkit watch` saves per checkpoint: three checkpoints evaluated by one watch (env workers and simulators
kept alive, only the policy swapped) against three separate `evalkit eval` runs of the same checkpoints.

    .venv/bin/python bench/bench_watch.py [--suite droid_demo] [--tasks 0 1] [--episodes-per-task 2]
                                          [--max-steps 20] [--workers 2] [--repeats 1]

Three tiny random pi0.5 checkpoints (`evalkit make-tiny-checkpoint --embodiment droid`, seeds 0..2, named
step_1000..3000) in a temporary training directory. (a) `evalkit watch ROOT --once --settle 0 --poll 0.1
--heldout-episodes-per-task 0` with the run options below, whole command timed; (b) `evalkit eval --policy pi05
--checkpoint step_N` three times, each whole command timed. Both load each checkpoint once and run the same
episodes, so the difference is what the watch does not repeat: starting Python and evalkit, resolving the suite,
spawning the env workers (each imports MuJoCo and creates its GL context) and building their first simulators.
Reported: wall seconds of each, and (sum of evals - watch) / 3 = seconds saved per checkpoint; the JSON carries the
exact commands. Numbers are from this machine (CPU, software rendering); a LIBERO suite starts slower simulators,
so it saves more.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = (1000, 2000, 3000)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-3000:]}")
    return wall


def run_options(args: argparse.Namespace) -> list[str]:
    return [
        "--suite", args.suite, "--tasks", *map(str, args.tasks), "--episodes-per-task", str(args.episodes_per_task),
        "--max-steps", str(args.max_steps), "--workers", str(args.workers), "--quiet",
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="droid_demo")
    parser.add_argument("--tasks", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--episodes-per-task", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from evalkit.models.pi05.cli import make_tiny_checkpoint

    evalkit = [sys.executable, "-m", "evalkit.cli"]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        root = Path(tmp) / "train"
        checkpoints = [
            make_tiny_checkpoint(root / f"step_{step}", "droid", seed=i) for i, step in enumerate(STEPS)
        ]
        for repeat in range(args.repeats):
            out = Path(tmp) / f"r{repeat}"
            watch = [
                *evalkit, "watch", str(root), "--once", "--settle", "0", "--poll", "0.1",
                "--heldout-episodes-per-task", "0", "--out", str(out / "watch"), *run_options(args),
            ]  # fmt: skip
            evals = [
                [*evalkit, "eval", "--policy", "pi05", "--checkpoint", str(c), "--out", str(out / c.name)]
                + run_options(args)
                for c in checkpoints
            ]
            watch_s = timed(watch)
            eval_s = [timed(command) for command in evals]
            results.append({"watch_s": round(watch_s, 1), "evals_s": [round(s, 1) for s in eval_s]})
            saved = (sum(eval_s) - watch_s) / len(STEPS)
            print(
                f"repeat {repeat}: watch {watch_s:.1f} s; three evals {sum(eval_s):.1f} s "
                f"({', '.join(f'{s:.1f}' for s in eval_s)}); saved per checkpoint {saved:.1f} s",
                file=sys.stderr,
            )
    best_watch = min(r["watch_s"] for r in results)
    best_evals = min(sum(r["evals_s"]) for r in results)
    report = {
        "suite": args.suite,
        "tasks": args.tasks,
        "episodes_per_checkpoint": len(args.tasks) * args.episodes_per_task,
        "workers": args.workers,
        "repeats": results,
        "watch_s": best_watch,
        "three_evals_s": round(best_evals, 1),
        "saved_per_checkpoint_s": round((best_evals - best_watch) / len(STEPS), 1),
        "watch_command": " ".join(watch).replace(tmp, "$TMP"),
        "eval_command": " ".join(evals[0]).replace(tmp, "$TMP"),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
