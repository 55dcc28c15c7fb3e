"""The messages between the runner and its env workers, as small dataclasses (pickled over a pipe locally, by Ray
across a cluster).

runner -> local env worker (pipe):   RunEpisode | Actions | Abort | Stop
env host -> runner:                  PolicyCall | EpisodeDone | SimCrashed  (and Aborted, after an Abort)
Ray env actor -> driver (a stream):  Waiting | Stepping, then EpisodeDone | SimCrashed | PolicyFailed | Aborted

`PolicyFailed` is also how the local runner names a failed policy call, so both runners hand the ledger the same
thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from evalkit.batching import InvalidActionsError
from evalkit.core.episode import EpisodeResult, EpisodeSpec
from evalkit.core.policy import Observation, PolicyUnavailableError


@dataclass(frozen=True)
class EpisodeOptions:
    """How this evaluation runs its episodes; sent with each episode, so one env worker serves policy after
    policy (`evalkit watch` keeps workers alive across checkpoints)."""

    # where videos are written (a Ray actor writes to a node-local directory instead and ships the bytes)
    run_dir: str
    # render the cameras for each policy request (False: the policy reads no images)
    cameras: bool
    # include privileged simulator state in observations (scripted oracles only)
    privileged: bool
    video_mode: str
    save_actions: bool


@dataclass(frozen=True)
class RunEpisode:
    spec: EpisodeSpec
    record_video: bool
    options: EpisodeOptions


@dataclass(frozen=True)
class Actions:
    chunk: np.ndarray


@dataclass(frozen=True)
class Abort:
    """Drop the episode in progress; the worker answers `Aborted`."""


@dataclass(frozen=True)
class Stop:
    """The worker exits."""


@dataclass(frozen=True)
class PolicyCall:
    """The episode needs an action chunk: its `call`-th policy call, on `obs`."""

    call: int
    obs: Observation


@dataclass(frozen=True)
class EpisodeDone:
    result: EpisodeResult
    # executed actions, with --save-actions
    actions: np.ndarray | None
    # the video's bytes, when a Ray actor ships it to the driver
    video: bytes | None = None


@dataclass(frozen=True)
class SimCrashed:
    """The simulator raised: the episode is retried, then recorded as `error`."""

    message: str


@dataclass(frozen=True)
class Aborted:
    pass


@dataclass(frozen=True)
class Waiting:
    """A Ray env actor is waiting on the policy: the watchdog does not time the policy, it pings the actor."""


@dataclass(frozen=True)
class Stepping:
    """A Ray env actor got its actions and steps the simulator."""


PolicyFailure = Literal["unavailable", "invalid", "raised"]


@dataclass(frozen=True)
class PolicyFailed:
    """A policy call failed: `unavailable` (the policy is gone: the run stops), `invalid` (actions that break the
    contract: the run stops, nothing recorded), or `raised` (the policy raised on this request: the episode is
    retried, then recorded as `error`)."""

    kind: PolicyFailure
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> PolicyFailed:
        text = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, PolicyUnavailableError):
            return cls("unavailable", text or type(exc).__name__)
        if isinstance(exc, InvalidActionsError):
            return cls("invalid", text)
        return cls("raised", f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


HostMessage = PolicyCall | EpisodeDone | SimCrashed
WorkerMessage = HostMessage | Aborted
ActorReport = Waiting | Stepping | EpisodeDone | SimCrashed | PolicyFailed | Aborted
