"""LIBERO throughput: a bare simulation loop vs the evalkit harness, and rendering every step vs on demand.

    .venv/bin/python bench/bench_libero.py [--episodes 3] [--max-steps 60] [--workers 1 2] [--render-steps 40]

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

    from evalkit.episode import EpisodeSpec
    from evalkit.rendering import configure_gl
    from evalkit.suites.libero import make_env

    configure_gl()
    suite = _suite(args.max_steps)
    proto = suite.protocol
    env = make_env(suite, TASK)
    settle = np.asarray(proto.dummy_action, dtype=np.float64)
    zero = np.zeros(proto.action_dim)
    step_time = steps = 0
    for k in range(args.episodes):
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
        steps += proto.wait_steps
    env.close()
    return {"episodes": args.episodes, "steps": steps, "step_s": step_time, "end": time.time()}


def mode_render(args: argparse.Namespace) -> dict:
    """Control steps per second with cameras rendered every `--every` steps (0: never) or by OffScreenRenderEnv."""
    import numpy as np

    from evalkit.episode import EpisodeSpec
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
        from evalkit.suites.libero import make_env

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
        )  # fmt: skip
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


def run_harness(workers: int, episodes: int, max_steps: int) -> float:
    """Wall seconds of `evalkit eval` for `episodes` episodes of task 0 over `workers` workers."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(REPO / ".venv" / "bin" / "evalkit"), "eval", "--suite", SUITE, "--policy", "zero",
               "--tasks", str(TASK), "--episodes-per-task", str(episodes), "--max-steps", str(max_steps),
               "--workers", str(workers), "--out", str(Path(tmp) / "run"), "--quiet"]  # fmt: skip
        start = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        wall = time.time() - start
        if proc.returncode != 0:
            raise SystemExit(f"harness failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
        if "zero" not in proc.stdout and "success" not in proc.stdout:
            print(proc.stdout[-500:])
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=3, help="episodes per worker (bare: per process)")
    parser.add_argument("--max-steps", type=int, default=60, help="control steps per episode after settling")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="harness worker counts")
    parser.add_argument("--render-steps", type=int, default=40, help="steps per rendering measurement")
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

    common = ["--episodes", str(args.episodes), "--max-steps", str(args.max_steps),
              "--render-steps", str(args.render_steps)]  # fmt: skip
    steps_per_episode = 10 + args.max_steps
    print(f"LIBERO {SUITE} task {TASK}, openpi protocol, {steps_per_episode} steps/episode "
          f"(10 settle + {args.max_steps}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")  # fmt: skip

    rows = []
    bare, bare_wall = run_child(["--mode", "bare", *common])
    bare_eph = bare["episodes"] / bare_wall * 3600
    rows.append(
        ("(a) bare loop, no cameras (zero policy schedule)", bare["steps"] / bare["step_s"], bare_eph)
    )
    cams, cams_wall = run_child(["--mode", "bare", "--cameras", *common])
    rows.append(("(a) bare loop, 2 cameras at every replan step", cams["steps"] / cams["step_s"],
                 cams["episodes"] / cams_wall * 3600))  # fmt: skip
    harness = []
    if not args.skip_harness:
        for n in args.workers:
            concurrent_eph = bare_eph
            if n > 1:  # what this machine gives n independent bare processes (shared cores, other load)
                results, wall = run_children(["--mode", "bare", *common], n)
                concurrent_eph = sum(r["episodes"] for r in results) / wall * 3600
                rows.append(
                    (f"(a) {n} bare loops at once, {args.episodes} episodes each", None, concurrent_eph)
                )
            wall = run_harness(n, args.episodes * n, args.max_steps)
            eph = args.episodes * n / wall * 3600
            harness.append((n, eph, eph / (n * bare_eph), eph / concurrent_eph))
            rows.append((f"(b) harness, {n} worker(s), {args.episodes * n} episodes", None, eph))
    render = {}
    for label, every in (("OffScreenRenderEnv (renders every step)", -1), ("LiberoEnv, cameras every step", 1),
                         ("LiberoEnv, cameras every 5th step", 5), ("LiberoEnv, no cameras", 0)):  # fmt: skip
        result, _ = run_child(["--mode", "render", "--every", str(every), *common])
        render[every] = result["steps_per_s"]
        rows.append((f"(c) {label}", result["steps_per_s"], None))

    print(f"{'measurement':<58} {'steps/s':>8} {'episodes/h':>11}")
    for label, sps, eph in rows:
        sps_text = "" if sps is None else f"{sps:.1f}"
        eph_text = "" if eph is None else f"{eph:.0f}"
        print(f"{label:<58} {sps_text:>8} {eph_text:>11}")
    print()
    print(f"bare episodes/hour (launch to last episode): {bare_eph:.0f}")
    for n, eph, ratio, ratio_concurrent in harness:
        print(
            f"harness at {n} worker(s): {eph:.0f} episodes/hour; harness / ({n} x bare) = {ratio:.2f} (goal >= 0.9); "
            f"harness / ({n} bare loops run at once) = {ratio_concurrent:.2f}"
        )
    print(
        f"on demand (replan 5) vs OffScreenRenderEnv: {render[5] / render[-1]:.2f}x steps/s (goal >= 3x); "
        f"vs LiberoEnv rendering every step: {render[5] / render[1]:.2f}x"
    )


if __name__ == "__main__":
    main()
