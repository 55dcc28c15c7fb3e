"""Suites, evaluation protocols and the small env API that worker processes drive.

A suite is data (a YAML file under `tasks/`) resolved into a `SuiteSpec`: its tasks and the exact protocol
(render size, cameras, control rate, settle steps, budgets, seeds, replanning). A suite *kind* (libero, droid)
turns a task into a `SimEnv` inside a worker process. The env API is gymnasium-like but split so that cameras are
rendered only when someone needs a picture (`observe(cameras=True)` or `frame()`), never as a side effect of
`step()`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from evalkit.episode import EpisodeSpec
from evalkit.policies.base import Observation


@dataclass(frozen=True)
class EvalProtocol:
    """Everything that changes what an episode's outcome means. Hashed into the protocol fingerprint."""

    name: str  # e.g. "openpi", "lerobot", "droid"
    cameras: tuple[tuple[str, str], ...]  # (wire key, simulator camera) pairs, in wire order
    render_size: tuple[int, int]  # (H, W) rendered by the simulator
    image_size: tuple[int, int]  # (H, W) sent to the policy after the image transforms
    image_transforms: tuple[str, ...]  # applied in order, e.g. ("rot180", "resize_with_pad")
    control_hz: float
    wait_steps: int  # settle steps before the episode starts, not counted
    dummy_action: tuple[float, ...]  # action used for the settle steps
    max_steps: int  # control-step budget after settling
    episodes_per_task: int
    init_states: str  # how episode k picks its initial state; "index": init state k
    seed: int
    replan_steps: int  # actions executed from each chunk before asking again
    action_dim: int
    state_dim: int
    extra: tuple[tuple[str, Any], ...] = ()  # kind-specific protocol knobs (e.g. DROID's action mode)

    @property
    def wire_cameras(self) -> tuple[str, ...]:
        return tuple(wire for wire, _ in self.cameras)

    def fingerprint_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        payload.pop("episodes_per_task")  # more episodes refine an estimate; they don't change the protocol
        return payload


def fingerprint(payload: Any) -> str:
    """A short stable hash of a JSON-able payload."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class TaskSpec:
    task_id: int
    name: str
    language: str
    num_init_states: int


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    kind: str  # which suite kind builds its envs: "libero" | "droid"
    embodiment: str  # which observation/action convention it speaks: "libero" | "droid"
    protocol: EvalProtocol
    tasks: tuple[TaskSpec, ...]
    options: dict[str, Any] = field(
        default_factory=dict
    )  # kind-specific data (benchmark name, scene files, ...)

    def task(self, task_id: int) -> TaskSpec:
        for task in self.tasks:
            if task.task_id == task_id:
                return task
        raise KeyError(task_id)


class SimEnv(Protocol):
    """One simulator instance, owned by one worker process."""

    def reset(self, episode: EpisodeSpec) -> None:
        """Start `episode`: build or reset the scene, apply its initial state and seed. Renders nothing."""
        ...

    def observe(self, cameras: bool, privileged: bool = False) -> Observation:
        """The observation in openpi's wire format: state keys and `prompt` always; the protocol's camera keys
        (transformed to `image_size`) only if `cameras`; `privileged/*` simulator state only if `privileged`."""
        ...

    def step(self, action: np.ndarray) -> bool:
        """Apply one control step. Returns True once the task's success check holds."""
        ...

    def frame(self) -> np.ndarray:
        """An upright RGB uint8 frame of the main camera for videos."""
        ...

    def progress(self) -> dict[str, bool]:
        """Partial-progress flags for this episode so far (empty if the suite has none)."""
        ...

    def close(self) -> None: ...
