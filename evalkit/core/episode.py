"""Episodes as units of work and their results.

An episode is identified by (suite, task, init-state index, seed) and nothing else, so it can be run by any
worker, in any order, on any machine, and give the same result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

Termination = Literal["success", "max_steps", "error"]


@dataclass(frozen=True, order=True)
class EpisodeSpec:
    suite: str
    task_id: int
    init_state: int
    seed: int

    @property
    def episode_id(self) -> str:
        return f"{self.suite}/{self.task_id}/{self.init_state}/{self.seed}"

    def request_seed(self, call_index: int) -> int:
        """The seed of the policy's sampling noise for this episode's `call_index`-th chunk.

        Derived from the episode identity only, so that it does not depend on worker count, batch composition or
        the order in which episodes run.
        """
        digest = hashlib.sha256(f"{self.episode_id}#{call_index}".encode()).digest()
        return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class EpisodeResult:
    spec: EpisodeSpec
    task: str  # the task's language instruction
    success: bool
    steps: int  # control steps taken after the settle steps
    termination: Termination
    wall_s: float
    policy_calls: int = 0
    latency_ms: list[float] = field(default_factory=list)  # per policy call, as seen by the env worker
    progress: dict[str, bool] = field(default_factory=dict)  # partial-progress flags (reached, grasped, ...)
    error: str | None = None
    video: str | None = None  # path relative to the run directory
