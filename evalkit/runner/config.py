"""The configuration of one evaluation run, as given on the command line."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from evalkit.core.policy import PolicyOptions

VideoMode = Literal["none", "failures", "all", "first-per-task"]
VIDEO_MODES: tuple[str, ...] = ("none", "failures", "all", "first-per-task")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class EvalConfig:
    suite: str
    policy: PolicyOptions  # a bare name is accepted and means PolicyOptions(name=...)
    out: Path | None = None  # run directory; default results/<suite>__<policy>
    episodes_per_task: int | None = None  # default: the suite protocol's
    tasks: tuple[int, ...] | None = None  # task ids; default: all
    workers: int | None = None  # env worker processes; default: available cores
    batch_size: int = 16  # max observations per policy call
    video: VideoMode = "none"
    seed: int | None = None  # default: the suite protocol's
    max_steps: int | None = None  # default: the suite protocol's
    protocol: str | None = None  # protocol preset (e.g. openpi, lerobot); default: the suite's
    max_attempts: int = 3  # tries per episode when its env worker dies or its simulator raises
    save_actions: bool = False  # also store every executed action (actions/*.npz)
    episode_timeout_s: float = 600.0  # an env worker silent this long is killed and its episode retried
    ray: str | None = None  # run on Ray: "local", "auto" or "ray://host:10001"; None = local processes
    policy_replicas: int = 1  # with Ray: policy replicas (actors), each batching dynamically
    gpus_per_replica: float = 0.0  # with Ray: GPUs per replica (a fraction shares a GPU)

    def __post_init__(self) -> None:
        if isinstance(self.policy, str):
            object.__setattr__(self, "policy", PolicyOptions(name=self.policy))

    def run_dir(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        name, checkpoint = self.policy.name, self.policy.checkpoint
        slug = name if checkpoint is None else f"{name}-{Path(checkpoint).name}"
        return Path("results") / f"{self.suite}__{re.sub(r'[^A-Za-z0-9._-]+', '_', slug)}"

    def replace(self, **changes: Any) -> EvalConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """As recorded in the manifest: flat, JSON-able, and without secrets."""
        data = asdict(self)
        policy = data.pop("policy")
        for key in ("api_key", "embodiment", "action_dim"):  # a secret; the suite's facts
            policy.pop(key)
        data["policy"] = policy.pop("name")
        data.update(policy)
        data["out"] = str(self.run_dir())
        data["tasks"] = list(self.tasks) if self.tasks is not None else None
        return data
