"""The small env API that worker processes drive.

A suite *kind* (libero, droid) turns a task of a `SuiteSpec` (evalkit.core.protocol) into a `SimEnv` inside a worker
process. The API is gymnasium-like but split so that cameras are rendered only when someone needs a picture
(`observe(cameras=True)` or `frame()`), never as a side effect of `step()`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from evalkit.core.episode import EpisodeSpec
from evalkit.core.policy import Observation


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
