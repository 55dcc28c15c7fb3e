"""Modelled costs for bench/bench_scale.py: a suite kind whose env sleeps a LIBERO step's and render's measured
time, and a policy whose batch latency is modelled as a + b*B (about pi0.5 on an H100 for a = 60 ms, b = 4 ms).

Everything else is real: the suite goes through evalkit's registry (a YAML file in a temporary $EVALKIT_TASKS
directory, `kind: modelled`), and the runner, its env workers and the Ray actors are evalkit's own. `register()`
registers the kind `modelled` in $EVALKIT_SUITE_KINDS, which every process that may build an env inherits: the
local runner's spawned workers and Ray workers (this module must be importable there: the bench puts its folder on
PYTHONPATH for Ray). Costs reach those processes through environment variables too.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.core.embodiment import embodiment
from evalkit.core.episode import EpisodeSpec
from evalkit.core.policy import PolicyMeta, PolicyOptions
from evalkit.core.protocol import SuiteSpec, TaskSpec, protocol_from_dict
from evalkit.suites.base import SuiteKind
from evalkit.suites.kinds import KINDS_ENV

KIND = "modelled"
STEP_MS = "BENCH_STEP_MS"  # a LIBERO step without rendering
RENDER_MS = "BENCH_RENDER_MS"  # rendering and transforming both cameras for one observation
BUSY_LOG = "BENCH_BUSY_LOG"  # directory where modelled policies log every batch: start, end, size
BODY = embodiment("libero")


def register() -> None:
    """Register the suite kind `modelled` for this process and the env processes it starts."""
    entry = f"{KIND}=scale_models:ModelledKind"
    kinds = [k for k in os.environ.get(KINDS_ENV, "").split(",") if k.strip()]
    if entry not in kinds:
        os.environ[KINDS_ENV] = ",".join([*kinds, entry])


# -- the suite kind ------------------------------------------------------------------------------------------------
class ModelledKind(SuiteKind):
    def load_suite(self, name: str, data: dict[str, Any]) -> SuiteSpec:
        protocol = protocol_from_dict(data["protocol"], where=f"suite {name!r}")
        tasks = tuple(
            TaskSpec(i, f"task{i}", f"modelled task {i}", protocol.episodes_per_task)
            for i in range(int(data["tasks"]))
        )
        return SuiteSpec(name, KIND, BODY.name, protocol, tasks)

    def make_env(self, suite: SuiteSpec, task_id: int) -> ModelledEnv:
        return ModelledEnv(suite, task_id)


class ModelledEnv:
    """Sleeps where a LIBERO env computes; never succeeds, so every episode runs its full step budget."""

    def __init__(self, suite: SuiteSpec, task_id: int):
        self.step_s = float(os.environ[STEP_MS]) / 1000
        self.render_s = float(os.environ[RENDER_MS]) / 1000
        self.size = suite.protocol.image_size
        self.language = suite.task(task_id).language
        self.log = None

    def reset(self, episode: EpisodeSpec) -> None:
        self.steps = 0
        if self.log is None:
            self.log = open(Path(os.environ[BUSY_LOG]) / f"env-{uuid.uuid4().hex}.tsv", "a")  # noqa: SIM115
        self.log.write(f"{time.time():.6f}\n")  # episode starts: the bench's steady window is cut from these
        self.log.flush()

    def observe(self, cameras: bool, privileged: bool = False) -> dict[str, Any]:
        obs: dict[str, Any] = {"observation/state": np.zeros(BODY.state_dim), "prompt": self.language}
        if cameras:
            time.sleep(self.render_s)
            for key in BODY.cameras:
                obs[key] = np.zeros((*self.size, 3), np.uint8)
        return obs

    def step(self, action: np.ndarray) -> bool:
        time.sleep(self.step_s)
        self.steps += 1
        return False

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return -np.ones(BODY.action_dim), np.ones(BODY.action_dim)

    def frame(self) -> np.ndarray:
        return np.zeros((*self.size, 3), np.uint8)

    def progress(self) -> dict[str, bool]:
        return {}

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def suite_yaml(name: str, tasks: int, episodes_per_task: int, max_steps: int) -> str:
    """A suite file for the modelled kind with openpi's LIBERO protocol (tasks/libero/protocols/openpi.yaml)."""
    return f"""name: {name}
kind: {KIND}
tasks: {tasks}
protocol:
  name: openpi
  cameras: {{observation/image: agentview, observation/wrist_image: robot0_eye_in_hand}}
  render_size: [256, 256]
  image_size: [224, 224]
  image_transforms: [rot180, resize_with_pad]
  control_hz: 20
  wait_steps: 10
  dummy_action: [0, 0, 0, 0, 0, 0, -1]
  episodes_per_task: {episodes_per_task}
  max_steps: {max_steps}
  seed: 7
  replan_steps: 5
  action_dim: 7
  state_dim: 8
  episode_seeds: same
  action_mode: eef_delta
"""


# -- the policy ------------------------------------------------------------------------------------------------------
class ModelledPolicy:
    """Reads both cameras (so envs render), sleeps a + b*B per batch of B, logs each batch to $BENCH_BUSY_LOG."""

    def __init__(self, a_ms: float, b_ms: float):
        self.a_s, self.b_s = a_ms / 1000, b_ms / 1000
        self.meta = PolicyMeta(
            name=f"modelled-a{a_ms:g}-b{b_ms:g}",
            fingerprint="none",
            cameras=BODY.policy_cameras,
            image_size=(224, 224),
            action_dim=BODY.action_dim,
            embodiment=BODY.name,
            action_mode="eef_delta",
        )
        self.log = open(Path(os.environ[BUSY_LOG]) / f"policy-{uuid.uuid4().hex}.tsv", "a")  # noqa: SIM115

    def infer(self, batch):
        start = time.time()
        time.sleep(self.a_s + self.b_s * len(batch))
        self.log.write(f"{start:.6f}\t{time.time():.6f}\t{len(batch)}\n")
        self.log.flush()
        return [np.zeros((10, req.action_dim), np.float32) for req in batch]

    def close(self) -> None:
        self.log.close()


def make_accelerator_policy(options: PolicyOptions) -> ModelledPolicy:
    """pi0.5 on an H100, roughly: 60 ms + 4 ms per observation."""
    return ModelledPolicy(60.0, 4.0)


def make_fast_policy(options: PolicyOptions) -> ModelledPolicy:
    """A policy much faster than the envs: 10 ms + 1 ms per observation."""
    return ModelledPolicy(10.0, 1.0)
