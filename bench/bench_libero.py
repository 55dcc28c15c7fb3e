"""LIBERO throughput: a bare simulation loop vs the evalkit harness, and rendering every step vs on demand.

    .venv/bin/python bench/bench_libero.py [--episodes 4] [--max-steps 60] [--workers 1 2] [--repeats 2]
                                            [--render-steps 40] [--skip-harness]

Every measurement runs in its own fresh process (one GL context per process, as in real workers), on
LIBERO-Spatial task 0 under the openpi protocol (10 settle steps + `--max-steps` control steps per episode).

(a) bare loop: one process drives `LiberoEnv` directly (no runner, worker, policy, IPC or store) with the
    harness's own schedule for the `zero` policy (zero actions, replan every 5 steps, no cameras because the
    policy reads none); also the same loop rendering both cameras at every replan step, for reference.
    Timed from process launch to the last episode, like the harness.
(b) harness: `evalkit eval --suite libero_spatial --policy zero --tasks 0` at 1 and N workers (N x episodes),
    episodes/hour from launch to exit; ratio = harness / (N x bare) (goal >= 0.9), and harness / (N bare loops
    run at the same time), which separates harness overhead from how well the machine's cores scale.
(c) rendering: steps/s of LIBERO's own `OffScreenRenderEnv` (two 256x256 cameras rendered inside every step)
    vs `LiberoEnv` rendering them every step vs only every 5th step (replan 5) vs never (goal >= 3x).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = "libero_spatial"
TASK = 0


def _suite(max_steps: int):
    from evalkit.suites import registry

    return registry.resolve(SUITE, tasks=[TASK], max_steps=max_steps)[0]


def mode_bare(args: argparse.Namespace) -> dict:
    """Episodes of the harness's loop for the zero policy, without the harness."""
    import numpy as np

    from evalkit.core.episode import EpisodeSpec
    from evalkit.rendering import configure_gl
    from evalkit.suites.kinds import make_env

    configure_gl()
    suite = _suite(args.max_steps)
    proto = suite.protocol
    env = make_env(suite, TASK)
    settle = np.asarray(proto.dummy_action, dtype=np.float64)
    zero = np.zeros(proto.action_dim)
    step_time = steps = 0
    episode_s = []
    for k in range(args.episodes):
        began = time.perf_counter()
        env.reset(EpisodeSpec(suite.name, TASK, k, proto.seed))
        start = time.perf_counter()
        for _ in range(proto.wait_steps):
            env.step(settle)
        for t in range(proto.max_steps):
            if t % proto.replan_steps == 0:
                env.observe(cameras=args.cameras)
            if env.step(zero):
                break
            steps += 1
        step_time += time.perf_counter() - start
        episode_s.append(time.perf_counter() - began)
        steps += proto.wait_steps
    env.close()
    return {
        "episodes": args.episodes,
        "steps": steps,
        "step_s": step_time,
        "episode_s": episode_s,
        "end": time.time(),
    }


def mode_render(args: argparse.Namespace) -> dict:
    """Control steps per second with cameras rendered every `--every` steps (0: never) or by OffScreenRenderEnv."""
    import numpy as np

    from evalkit.core.episode import EpisodeSpec
    from evalkit.rendering import configure_gl

    configure_gl()
    suite = _suite(args.max_steps)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, (args.render_steps, 7))
    if args.every < 0:  # LIBERO's OffScreenRenderEnv: renders both cameras inside every step
        from libero.libero.envs import OffScreenRenderEnv

        from evalkit.suites.libero.catalog import load_init_states

        files = suite.options["task_files"][TASK]
        env = OffScreenRenderEnv(bddl_file_name=files["bddl"], camera_heights=256, camera_widths=256)
        env.seed(7)
        env.reset()
        env.set_init_state(load_init_states(files["init_states"])[0])
        start = time.perf_counter()
        for a in actions:
            env.step(a.tolist())
        elapsed = time.perf_counter() - start
        env.close()
    else:
        from evalkit.suites.kinds import make_env

        env = make_env(suite, TASK)
        env.reset(EpisodeSpec(suite.name, TASK, 0, 7))
        if args.every:
            env.observe(
                cameras=True
            )  # builds the GL context outside the timing, as OffScreenRenderEnv's reset does
        start = time.perf_counter()
        for t, a in enumerate(actions):
            if args.every and t % args.every == 0:
                env.observe(cameras=True)
            env.step(a)
        elapsed = time.perf_counter() - start
        env.close()
    return {"steps": len(actions), "seconds": elapsed, "steps_per_s": len(actions) / elapsed}


def run_children(extra: list[str], n: int = 1) -> tuple[list[dict], float]:
    """Run n copies of this script concurrently; their JSON results and the wall time from launch to the last end."""
    launched = time.time()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(n)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"child {extra} failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results, max(r.get("end", time.time()) for r in results) - launched


def run_child(extra: list[str]) -> tuple[dict, float]:
    results, wall = run_children(extra)
    return results[0], wall


def run_harness(workers: int, episodes: int, max_steps: int) -> tuple[float, list[float]]:
    """Wall seconds of `evalkit eval` for `episodes` episodes of task 0 over `workers` workers, and each
    episode's own time in its worker (`wall_s` in the episode store: reset, settle, steps, policy round trips)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            str(REPO / ".venv" / "bin" / "evalkit"),
            "eval",
            "--suite",
            SUITE,
            "--policy",
            "zero",
            "--tasks",
            str(TASK),
            "--episodes-per-task",
            str(episodes),
            "--max-steps",
            str(max_steps),
            "--workers",
            str(workers),
            "--out",
            str(Path(tmp) / "run"),
            "--quiet",
        ]
        start = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        wall = time.time() - start
        if proc.returncode != 0:
            raise SystemExit(f"harness failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
        db = sqlite3.connect(Path(tmp) / "run" / "episodes.sqlite")
        try:
            episode_s = [row[0] for row in db.execute("SELECT wall_s FROM episodes")]
        finally:
            db.close()
    if len(episode_s) != episodes:
        raise SystemExit(f"harness stored {len(episode_s)} episodes, expected {episodes}")
    return wall, episode_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=4, help="episodes per worker (bare: per process)")
    parser.add_argument("--max-steps", type=int, default=60, help="control steps per episode after settling")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="harness worker counts")
    parser.add_argument("--render-steps", type=int, default=40, help="steps per rendering measurement")
    parser.add_argument("--repeats", type=int, default=2, help="alternating bare/harness measurement rounds")
    parser.add_argument("--skip-harness", action="store_true")
    parser.add_argument("--mode", choices=["bare", "render"], help=argparse.SUPPRESS)
    parser.add_argument("--cameras", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--every", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    if args.mode:
        result = mode_bare(args) if args.mode == "bare" else mode_render(args)
        print(json.dumps(result))
        return

    common = [
        "--episodes",
        str(args.episodes),
        "--max-steps",
        str(args.max_steps),
        "--render-steps",
        str(args.render_steps),
    ]
    steps_per_episode = 10 + args.max_steps
    print(
        f"LIBERO {SUITE} task {TASK}, openpi protocol, {steps_per_episode} steps/episode "
        f"(10 settle + {args.max_steps}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )

    rows = []

    def bare_run(n: int) -> tuple[float, float, float]:
        """n bare loops at once: (episodes/h end to end, steady episodes/h, steps/s of one loop's stepping)."""
        results, wall = run_children(["--mode", "bare", *common], n)
        eph = sum(r["episodes"] for r in results) / wall * 3600
        steady = n * 3600 / statistics.mean(x for r in results for x in r["episode_s"])
        return eph, steady, statistics.mean(r["steps"] / r["step_s"] for r in results)

    cams, cams_wall = run_child(["--mode", "bare", "--cameras", *common])
    rows.append(
        (
            "(a) bare loop, 2 cameras at every replan step",
            cams["steps"] / cams["step_s"],
            cams["episodes"] / cams_wall * 3600,
            3600 / statistics.mean(cams["episode_s"]),
        )
    )
    ratios: dict[int, list[tuple[float, float, float]]] = {n: [] for n in args.workers}
    for r in range(args.repeats):  # bare and harness alternate, so that changing machine load hits both alike
        single_eph, single_steady, single_sps = bare_run(1)
        rows.append(
            (
                f"(a) bare loop, no cameras (zero policy schedule) #{r + 1}",
                single_sps,
                single_eph,
                single_steady,
            )
        )
        for n in [] if args.skip_harness else args.workers:
            together_steady = single_steady
            if n > 1:  # what this machine gives n independent bare processes (shared cores, other load)
                eph, together_steady, _ = bare_run(n)
                rows.append(
                    (
                        f"(a) {n} bare loops at once, {args.episodes} episodes each #{r + 1}",
                        None,
                        eph,
                        together_steady,
                    )
                )
            wall, episode_s = run_harness(n, args.episodes * n, args.max_steps)
            eph = args.episodes * n / wall * 3600
            steady = n * 3600 / statistics.mean(episode_s)
            rows.append(
                (f"(b) harness, {n} worker(s), {args.episodes * n} episodes #{r + 1}", None, eph, steady)
            )
            ratios[n].append((eph / (n * single_eph), steady / (n * single_steady), steady / together_steady))
    render = {}
    for label, every in (
        ("OffScreenRenderEnv (renders every step)", -1),
        ("LiberoEnv, cameras every step", 1),
        ("LiberoEnv, cameras every 5th step", 5),
        ("LiberoEnv, no cameras", 0),
    ):
        result, _ = run_child(["--mode", "render", "--every", str(every), *common])
        render[every] = result["steps_per_s"]
        rows.append((f"(c) {label}", result["steps_per_s"], None, None))

    print(f"{'measurement':<58} {'steps/s':>8} {'episodes/h':>11} {'steady ep/h':>12}")
    for label, sps, eph, steady in rows:
        cells = ["" if v is None else f"{v:.{1 if i == 0 else 0}f}" for i, v in enumerate((sps, eph, steady))]
        print(f"{label:<58} {cells[0]:>8} {cells[1]:>11} {cells[2]:>12}")
    print(
        "episodes/h: launch to exit (process start, imports, env build included); steady: from per-episode times"
    )
    print()
    for n, values in ratios.items():
        if not values:
            continue
        end_to_end, steady, together = (statistics.median(v[i] for v in values) for i in range(3))
        print(
            f"harness at {n} worker(s), median of {len(values)}: harness / ({n} x bare) = {end_to_end:.2f} end to end, "
            f"{steady:.2f} steady (goal >= 0.9); steady vs {n} bare loops run at once: {together:.2f}"
        )
    print(
        f"on demand (replan 5) vs OffScreenRenderEnv: {render[5] / render[-1]:.2f}x steps/s (goal >= 3x); "
        f"vs LiberoEnv rendering every step: {render[5] / render[1]:.2f}x"
    )


if __name__ == "__main__":
    main()
