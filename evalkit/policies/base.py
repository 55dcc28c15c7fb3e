"""The policy interface every adapter implements.

A policy receives a batch of observations in openpi's wire format (the keys openpi's LIBERO and DROID clients
send: `observation/image`, `observation/state`, ..., `prompt`) and returns one action chunk per item. It knows
nothing about simulators; the runner knows nothing about models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from evalkit.errors import EvalkitError

Observation = dict[str, Any]


@dataclass(frozen=True)
class PolicyMeta:
    """What a policy declares, so the runner can reject a mismatched suite before the first episode."""

    name: str
    fingerprint: (
        str  # identifies the weights (e.g. sha256 of the checkpoint files); "none" for weightless policies
    )
    cameras: tuple[
        str, ...
    ] = ()  # wire keys of the images it reads; () = needs no images, nothing is rendered
    image_size: tuple[int, int] | None = None  # (H, W) of the images it expects; None = any
    action_dim: int | None = None  # dims of each returned action; None = whatever the suite needs
    privileged: bool = False  # reads `privileged/*` simulator state (scripted oracles only)


@dataclass(frozen=True)
class PolicyRequest:
    obs: Observation
    episode_id: str
    seed: int  # seeds all randomness of this call (sampling noise); see EpisodeSpec.request_seed
    action_dim: int  # action dims the suite executes


@runtime_checkable
class Policy(Protocol):
    meta: PolicyMeta

    def infer(self, batch: Sequence[PolicyRequest]) -> list[np.ndarray]:
        """One action chunk per request, each shaped (horizon, action_dim)."""
        ...

    def close(self) -> None: ...


class PolicyUnavailableError(EvalkitError):
    """The policy cannot answer at all (e.g. its server is gone after bounded retries).

    The runner records the episodes that were waiting as `error` (never as failures) and stops; re-running resumes.
    """
