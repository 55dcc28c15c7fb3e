"""DROID suite throughput in one process: env steps/s without and with cameras, and oracle episodes/hour.

    .venv/bin/python bench/bench_droid.py [--steps 300] [--episodes 6] [--task put_red_block_in_bowl]

(a) steps/s of `DroidEnv.step` alone (15 Hz control, 34 physics substeps per step, nothing rendered), then the
    same loop with `observe(cameras=True)` after every step (two exterior cameras + wrist at 180x320, each
    resize_with_pad to 224x224, as a camera-reading policy would see them every step), and with cameras
    every 8th step (replan_steps 8, what the runner asks for between chunks). Ratios are from the same run.
(b) oracle episodes/hour: `--episodes` episodes of one task driven by the scripted oracle in this process
    (privileged observations, no images), layouts 0..N-1, wall time including resets.
All numbers come from one process after one warm-up episode (scene compiled, GL context created).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from evalkit.core.episode import EpisodeSpec  # noqa: E402


def steps_per_second(env, episode: EpisodeSpec, steps: int, camera_every: int | None) -> float:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, (steps, 8))
    env.reset(episode)
    start = time.perf_counter()
    for i, action in enumerate(actions):
        env.step(action)
        if camera_every is not None and i % camera_every == 0:
            env.observe(cameras=True)
    return steps / (time.perf_counter() - start)


def oracle_episodes(env, suite, episodes: int) -> dict:
    from evalkit.core.policy import PolicyRequest
    from evalkit.policies.oracle import OraclePolicy

    policy = OraclePolicy()
    proto = suite.protocol
    successes, total_steps = 0, 0
    start = time.perf_counter()
    for k in range(episodes):
        spec = EpisodeSpec(suite.name, env.task_id, k, proto.seed)
        env.reset(spec)
        steps, done = 0, False
        while steps < proto.max_steps and not done:
            obs = env.observe(cameras=False, privileged=True)
            for action in policy.infer([PolicyRequest(obs, spec.episode_id, 0, 8)])[0][: proto.replan_steps]:
                steps += 1
                if env.step(action):
                    done = True
                    break
        successes += done
        total_steps += steps
    wall = time.perf_counter() - start
    return {
        "episodes": episodes,
        "successes": successes,
        "mean_steps": total_steps / episodes,
        "wall_s": round(wall, 2),
        "episodes_per_hour": round(episodes / wall * 3600),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--task", default="put_red_block_in_bowl")
    args = parser.parse_args()

    from evalkit.suites.kinds import make_env
    from evalkit.suites.registry import resolve

    suite = resolve("droid")[0]
    task = next(t for t in suite.tasks if t.name == args.task)
    t0 = time.perf_counter()
    env = make_env(suite, task.task_id)
    build_s = time.perf_counter() - t0
    episode = EpisodeSpec(suite.name, task.task_id, 0, suite.protocol.seed)
    t0 = time.perf_counter()
    env.reset(episode)
    reset_s = time.perf_counter() - t0
    env.observe(cameras=True)  # warm-up: GL context and renderer
    oracle_episodes(env, suite, 1)

    bare = steps_per_second(env, episode, args.steps, None)
    every8 = steps_per_second(env, episode, args.steps, suite.protocol.replan_steps)
    every = steps_per_second(env, episode, args.steps, 1)
    oracle = oracle_episodes(env, suite, args.episodes)
    env.close()
    result = {
        "task": args.task,
        "render_size": list(suite.protocol.render_size),
        "cameras": len(suite.protocol.cameras),
        "env_build_s": round(build_s, 2),
        "reset_s": round(reset_s, 3),
        "steps_per_s_no_render": round(bare, 1),
        "steps_per_s_cameras_every_8th_step": round(every8, 1),
        "steps_per_s_cameras_every_step": round(every, 1),
        "realtime_factor_no_render": round(bare / suite.protocol.control_hz, 1),
        "slowdown_cameras_every_step": round(bare / every, 2),
        "oracle": oracle,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
