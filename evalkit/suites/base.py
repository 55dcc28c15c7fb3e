"""What a suite kind is: the contract a kind implements (`SuiteKind`) and the env API its workers drive (`SimEnv`).

A suite *kind* (libero, liberoplus, droid) builds `SuiteSpec`s (evalkit.core.protocol) from suite files and turns
a task of one into a `SimEnv` inside a worker process; `evalkit.suites.kinds` is the one table of kinds. The env
API is gymnasium-like but split so that cameras are rendered only when someone needs a picture
(`observe(cameras=True)` or `frame()`), never as a side effect of `step()`.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Protocol

import numpy as np

from evalkit.core.episode import EpisodeSpec
from evalkit.core.policy import Observation
from evalkit.core.protocol import SuiteSpec


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

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of each action dimension: the range the simulator clips actions to."""
        ...

    def frame(self) -> np.ndarray:
        """An upright RGB uint8 frame of the main camera for videos."""
        ...

    def progress(self) -> dict[str, bool]:
        """Partial-progress flags for this episode so far (empty if the suite has none)."""
        ...

    def close(self) -> None: ...


class SuiteKind(abc.ABC):
    """A family of suites sharing one simulator: builds suites from their files and envs for their tasks.

    Registered by name in `evalkit.suites.kinds.KINDS`; a suite file's `kind:` names it. Importing a kind's module
    must stay cheap (no simulator import): the parent process lists and validates suites, only workers simulate.
    """

    # its suites' envs must not share a worker process with another kind's (e.g. LIBERO-plus patches robosuite)
    runs_alone: ClassVar[bool] = False
    # the tags its tasks carry, with what each means (`evalkit suites NAME` filters and shows them)
    task_tags: ClassVar[dict[str, str]] = {}

    @abc.abstractmethod
    def load_suite(self, name: str, data: dict[str, Any]) -> SuiteSpec:
        """The suite named `name` from its file's data (`extends` merged, `data["protocol"]` the full protocol
        mapping). Anything wrong, or nothing runnable here, is an EvalkitError saying why."""

    @abc.abstractmethod
    def make_env(self, suite: SuiteSpec, task_id: int) -> SimEnv:
        """An env for one task of `suite` (called in a worker process; may build the simulator lazily)."""

    def discover(self) -> list[dict[str, Any]]:
        """Data of suites the kind's simulator package offers beyond the suite files (default: none)."""
        return []
