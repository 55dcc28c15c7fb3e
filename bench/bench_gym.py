"""Steps/s through gymnasium: cameras rendered every step vs only at the steps where a policy is asked.

    .venv/bin/python bench/bench_gym.py [--suite libero_spatial] [--task 0] [--steps 60] [--repeats 3]

One process, two envs made with `gymnasium.make("evalkit/<suite>-v0", images=...)`: `every_step` (the plain
gymnasium contract, a fresh observation with images every step) and `policy_steps` (images only every
`replan_steps` steps, as `evalkit eval` renders them). The modes alternate repeat by repeat, so both see the same
machine load; each repeat resets (not timed) and then times `--steps` env.step calls of seeded random actions.
Prints steps/s per mode (median over repeats) and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

MODES = ("every_step", "policy_steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import gymnasium
    import numpy as np

    import evalkit.gym  # noqa: F401  (registers the ids)

    env_id = f"evalkit/{args.suite}-v0"
    envs = {mode: gymnasium.make(env_id, task=args.task, max_steps=args.steps, images=mode) for mode in MODES}
    proto = envs[MODES[0]].unwrapped.protocol
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, (args.steps, proto.action_dim)).astype(np.float32)
    for env in envs.values():  # build the simulators and GL contexts before timing
        env.reset()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    fresh: dict[str, int] = {}
    try:
        for repeat in range(args.repeats):
            for mode in MODES if repeat % 2 == 0 else reversed(MODES):
                env = envs[mode]
                env.reset()
                n, rendered = 0, 0
                start = time.perf_counter()
                for action in actions:
                    _, _, terminated, truncated, info = env.step(action)
                    n += 1
                    rendered += info["images_fresh"]
                    if terminated or truncated:
                        break
                rates[mode].append(n / (time.perf_counter() - start))
                fresh[mode] = rendered
    finally:
        for env in envs.values():
            env.close()
    print(
        f"{env_id} task {args.task}, {args.steps} steps x {args.repeats} repeats, "
        f"cameras {', '.join(proto.wire_cameras)} at {proto.render_size[0]}x{proto.render_size[1]}, "
        f"replan every {proto.replan_steps} steps"
    )
    for mode in MODES:
        med = statistics.median(rates[mode])
        spread = ", ".join(f"{r:.1f}" for r in rates[mode])
        print(f"  images={mode:<13} {med:6.1f} steps/s  (repeats: {spread}; images rendered {fresh[mode]}x)")
    ratio = statistics.median(rates["policy_steps"]) / statistics.median(rates["every_step"])
    print(f"  policy_steps / every_step = {ratio:.2f}x")


if __name__ == "__main__":
    main()
