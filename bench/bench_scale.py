"""How well the runner feeds an accelerator and keeps envs busy, locally and through Ray (`--ray local`).

This machine has no GPU and two cores, so the costs are modelled (bench/scale_models.py): the policy sleeps
a + b*B per batch of B (a = 60 ms, b = 4 ms: about pi0.5 on an H100) and the env sleeps a LIBERO step's and
render's time, measured here first on a real LIBERO scene. Orchestration is real: `evaluate()` with the local
runner or the Ray backend, real worker processes / actors, real store. Ratios are measured side by side in one run:

- accelerator busy: time the modelled accelerator is busy / wall time, with more envs than it can serve;
- env busy: harness observations/s / (N x one bare env loop's observations/s), with a policy faster than the envs;
- Ray over local: Ray's episodes/h / the local runner's, same workers, same scenario.

Rates are taken over the steady part of each run (from when all N envs had started an episode to when the last N
episodes began),
so process start-up and the last stragglers do not count; end-to-end wall times are printed too.

    python bench/bench_scale.py --quick     # < 5 min here; ends with one line of the three ratios
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale_models  # noqa: E402

scale_models.register()  # also runs in the local runner's spawned workers, which re-import this module

A_MS, B_MS = 60.0, 4.0  # make_accelerator_policy
SUITE = "bench_modelled"


def measure_libero(steps: int = 20, renders: int = 5) -> tuple[float, float]:
    """(step ms, render ms) of a real LIBERO scene (libero_spatial task 0) on this machine."""
    from evalkit.core.protocol import episodes_for
    from evalkit.rendering import check_gl
    from evalkit.suites import registry

    check_gl()
    from evalkit.suites.libero import make_env

    (suite,) = registry.resolve("libero_spatial", tasks=(0,), episodes_per_task=1)
    env = make_env(suite, 0)
    try:
        env.reset(episodes_for([suite])[0])
        action = np.zeros(7)
        for _ in range(3):
            env.step(action)
        start = time.perf_counter()
        for _ in range(steps):
            env.step(action)
        step_ms = (time.perf_counter() - start) / steps * 1000
        start = time.perf_counter()
        for _ in range(renders):
            env.observe(cameras=True)
        with_cameras = (time.perf_counter() - start) / renders
        start = time.perf_counter()
        for _ in range(renders):
            env.observe(cameras=False)
        render_ms = (with_cameras - (time.perf_counter() - start) / renders) * 1000
    finally:
        env.close()
    return step_ms, max(render_ms, 0.0)


def bare_env_rate(max_steps: int) -> float:
    """Observations/s of one modelled env driven by the protocol's loop with an instant policy."""
    from evalkit.suites import registry

    (suite,) = registry.resolve(SUITE)
    proto = suite.protocol
    env = scale_models.ModelledEnv(suite, 0)
    start, observations = time.perf_counter(), 0
    env.reset(None)
    for _ in range(proto.wait_steps):
        env.step(None)
    steps = 0
    while steps < max_steps:
        env.observe(cameras=True)
        observations += 1
        for _ in range(proto.replan_steps):
            env.step(None)
            steps += 1
    return observations / (time.perf_counter() - start)


@dataclass
class Result:
    name: str
    backend: str
    workers: int
    batch: int
    wall_s: float  # end to end, start-up included
    obs_per_s: float  # steady state
    busy: float  # accelerator busy fraction, steady state
    mean_batch: float
    episodes_per_h: float


def run(
    name: str, builder: str, workers: int, batch: int, episodes: int, max_steps: int, ray: bool, out: Path
):
    from evalkit.policies import registry
    from evalkit.runner import EvalConfig, evaluate

    registry.BUILDERS[builder] = f"scale_models:{builder}"
    log_dir = Path(os.environ[scale_models.BUSY_LOG])
    for old in log_dir.glob("*.tsv"):  # each run's logs only
        old.unlink()
    config = EvalConfig(
        suite=SUITE,
        policy=builder,
        out=out / f"{name}-{'ray' if ray else 'local'}",
        episodes_per_task=episodes // workers,
        tasks=tuple(range(workers)),
        workers=workers,
        batch_size=batch,
        max_steps=max_steps,
        ray="local" if ray else None,
    )
    start = time.time()
    evaluate(config, progress=False)
    wall = time.time() - start
    rows = np.array(
        [
            [float(x) for x in line.split("\t")]
            for f in log_dir.glob("policy-*.tsv")
            for line in f.read_text().split()
        ]
    ).reshape(-1, 3)
    starts = np.sort([float(t) for f in log_dir.glob("env-*.tsv") for t in f.read_text().split()])
    # steady state: from when all N envs had started an episode to when the last N episodes began
    lo, hi = starts[workers - 1], starts[-workers]
    window = hi - lo
    busy = np.clip(np.minimum(rows[:, 1], hi) - np.maximum(rows[:, 0], lo), 0, None).sum()
    in_window = rows[(rows[:, 1] > lo) & (rows[:, 1] <= hi)]
    obs_per_s = in_window[:, 2].sum() / window
    per_episode = rows[:, 2].sum() / len(starts)
    return Result(
        name,
        "ray" if ray else "local",
        workers,
        batch,
        wall,
        obs_per_s,
        busy / window,
        float(rows[:, 2].mean()),
        obs_per_s / per_episode * 3600,
    )


# openpi's LIBERO protocol: 4 suites x 10 tasks x 50 episodes, max_steps 220/280/300/520 (tasks/libero/*.yaml)
OPENPI_EPISODES, OPENPI_MAX_STEPS = 2000, (220, 280, 300, 520)


def projected_obs_per_s(envs: int, replicas: int, env_s: float, max_batch: int = 64) -> float:
    """Closed loop of `envs` envs (env_s of stepping and rendering per observation) over `replicas` replicas that
    take a + b*B for a batch of B: a replica's batch period P holds the envs that wait on it, B = n P / (env_s + P),
    capped at max_batch (then the replica is saturated). Solved by fixed-point iteration."""
    a, b, n = A_MS / 1000, B_MS / 1000, envs / replicas
    period = a
    for _ in range(200):
        batch = min(max_batch, n * period / (env_s + period))
        period = a + b * batch
    if batch >= max_batch:
        return replicas * max_batch / period
    return envs / (env_s + period)


# Assumptions of the projection, stated because no device run exists yet (bench/device_check.py measures them):
# the sampler's model FLOP utilisation at batch 64 in bf16, an H100 SXM's dense bf16 peak (data sheet), and one
# observation's env cost on a GPU node: the measured LIBERO step x replan steps + two 224x224 cameras rendered by
# EGL on the GPU (MuJoCo's hardware renderer: ~2 ms per camera, not this machine's software renderer).
ASSUMED_MFU, H100_BF16_FLOPS, EGL_RENDER_MS = 0.4, 989e12, 4.0


def projection(step_ms: float) -> None:
    """README table: openpi's 2,000-episode LIBERO protocol on 1 and 8 H100s, trimmed and untrimmed, the policy's
    cost from FLOPs per observation (bench/bench_pi05_model.py) at ASSUMED_MFU, envs as many as keep it busy."""
    from bench_pi05_model import flop_table

    row = next(r for r in flop_table() if r["config"] == "pi05_libero")
    env_s = (5 * step_ms + EGL_RENDER_MS) / 1000  # replan_steps = 5 (openpi examples/libero/main.py)
    obs_per_episode = sum(m / 5 for m in OPENPI_MAX_STEPS) / len(
        OPENPI_MAX_STEPS
    )  # no early success: worst case
    print(
        f"projection (openpi LIBERO, {OPENPI_EPISODES} episodes, {obs_per_episode:.0f} observations/episode at most; "
        f"env {env_s * 1000:.0f} ms per observation per core = 5 steps x {step_ms:.1f} ms + {EGL_RENDER_MS:g} ms EGL; "
        f"pi0.5 at MFU {ASSUMED_MFU:g} (assumed) of {H100_BF16_FLOPS / 1e12:.0f} TFLOP/s):"
    )
    print("| GPUs | prefix | GFLOP/obs | policy obs/s | env cores to feed it | 2,000 episodes |")
    print("|---:|---|---:|---:|---:|---:|")
    for gpus in (1, 8):
        for label, gflop in (
            ("untrimmed (openpi)", row["whole_gflop"]),
            ("trimmed", row["whole_gflop_trimmed"]),
        ):
            rate = gpus * ASSUMED_MFU * H100_BF16_FLOPS / (gflop * 1e9)
            minutes = OPENPI_EPISODES * obs_per_episode / rate / 60
            print(
                f"| {gpus} | {label} | {gflop:,.0f} | {rate:,.0f} | {rate * env_s:,.0f} | {minutes:.1f} min |"
            )
    print("| vla-eval (AI2), 1 H100 node, 50 shards | | | | | 18 min |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs; finishes within 5 minutes here")
    parser.add_argument("--step-ms", type=float, help="skip measuring LIBERO: a step's time")
    parser.add_argument("--render-ms", type=float, help="skip measuring LIBERO: both cameras' render time")
    args = parser.parse_args()
    t0 = time.time()
    if args.step_ms is None or args.render_ms is None:
        step_ms, render_ms = measure_libero()
    else:
        step_ms, render_ms = args.step_ms, args.render_ms
    print(f"LIBERO here: step {step_ms:.1f} ms, render (2 cameras, 224x224) {render_ms:.1f} ms", flush=True)
    acc_workers, env_workers, per_worker, max_steps = (32, 8, 8, 50) if args.quick else (64, 16, 12, 100)

    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    (tmp / "tasks").mkdir()
    (tmp / "busy").mkdir()
    os.environ.update(
        {
            "EVALKIT_TASKS": str(tmp / "tasks"),
            scale_models.STEP_MS: f"{step_ms:.3f}",
            scale_models.RENDER_MS: f"{render_ms:.3f}",
            scale_models.BUSY_LOG: str(tmp / "busy"),
        }
    )
    (tmp / "tasks" / f"{SUITE}.yaml").write_text(scale_models.suite_yaml(SUITE, acc_workers, 100, max_steps))
    try:
        bare = bare_env_rate(max_steps)
        cycle_s = 1 / bare
        supply = acc_workers * bare  # observations/s the envs offer when the policy answers at once
        # the largest max batch whose throughput B / (a + b B) stays below 3/4 of what the envs supply
        batch = max(b for b in range(1, 65) if b / ((A_MS + B_MS * b) / 1000) <= 0.75 * supply or b == 1)
        print(
            f"bare env loop: {bare:.2f} obs/s (one observation per {cycle_s * 1000:.0f} ms); "
            f"{acc_workers} envs supply {supply:.0f} obs/s; accelerator max batch {batch} serves "
            f"{batch / ((A_MS + B_MS * batch) / 1000):.0f} obs/s",
            flush=True,
        )
        import ray

        # Ray workers run the setup hook before they see the driver's sys.path: give them the bench directory.
        here = str(Path(__file__).resolve().parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        # Ray runs its workers at nice 15 (so they never starve its own daemons on a node they own). On this
        # shared machine that would put Ray's workers behind everyone else's while the local runner's run at 0:
        # compare like with like.
        os.environ.setdefault("RAY_worker_niceness", "0")

        # One Ray instance for the Ray runs: logical CPUs for every actor, the modelled kind in every worker.
        ray.init(
            num_cpus=acc_workers + 1,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="WARNING",
            runtime_env={"worker_process_setup_hook": "scale_models.register"},
        )
        results = []
        for backend in (False, True):
            results.append(
                run(
                    "accelerator",
                    "make_accelerator_policy",
                    acc_workers,
                    batch,
                    acc_workers * per_worker,
                    max_steps,
                    backend,
                    tmp,
                )
            )
            results.append(
                run(
                    "env",
                    "make_fast_policy",
                    env_workers,
                    16,
                    env_workers * per_worker,
                    max_steps,
                    backend,
                    tmp,
                )
            )
            for r in results[-2:]:
                print(
                    f"{r.name:<12} {r.backend:<6} workers {r.workers:>3}  max batch {r.batch:>2}  "
                    f"mean batch {r.mean_batch:5.1f}  {r.obs_per_s:6.1f} obs/s  busy {r.busy:.3f}  "
                    f"{r.episodes_per_h:8.0f} episodes/h  (wall {r.wall_s:.0f} s)",
                    flush=True,
                )
        ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    by = {(r.name, r.backend): r for r in results}
    accelerator = min(by["accelerator", b].busy for b in ("local", "ray"))
    env = min(by["env", b].obs_per_s / (by["env", b].workers * bare) for b in ("local", "ray"))
    ray_over_local = min(
        by[n, "ray"].episodes_per_h / by[n, "local"].episodes_per_h for n in ("accelerator", "env")
    )
    projection(step_ms)
    print(f"(total {time.time() - t0:.0f} s; the minimum over local and Ray for each ratio)")
    print(f"accelerator_busy={accelerator:.3f} env_busy={env:.3f} ray_over_local={ray_over_local:.3f}")


if __name__ == "__main__":
    main()
