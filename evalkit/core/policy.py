"""The policy contract: what a policy receives, what it declares, and how one is asked for by name.

A policy receives a batch of observations in openpi's wire format (`evalkit.core.embodiment`) and returns one action
chunk per item. It knows nothing about simulators; the runner knows nothing about models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.core.flags import flag

Observation = dict[str, Any]
Dtype = Literal["float32", "bfloat16"]


@dataclass(frozen=True)
class PolicyMeta:
    """What a policy declares, so the runner can reject a mismatched suite before the first episode."""

    name: str
    fingerprint: (
        str  # identifies the weights (sha256 of the checkpoint files); "none" for weightless policies
    )
    cameras: tuple[
        str, ...
    ] = ()  # wire keys of the images it reads; () = needs no images, nothing is rendered
    image_size: tuple[int, int] | None = None  # (H, W) of the images it expects; None = any
    action_dim: int | None = None  # dims of each returned action; None = whatever the suite needs
    privileged: bool = False  # reads `privileged/*` simulator state (scripted oracles only)
    embodiment: str | None = None  # the wire contract it was built for; None = any
    action_mode: str | None = (
        None  # what its actions mean (eef_delta, joint_velocity, joint_position); None = any
    )
    provenance: dict[str, str] = field(
        default_factory=dict
    )  # fingerprints of what it loaded (weights, tokenizer, ...)

    @property
    def identity(self) -> str:
        """Name and fingerprint: two runs of one identity may share a run directory."""
        return f"{self.name}@{self.fingerprint}"


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


@dataclass(frozen=True)
class PolicyOptions:
    """How to build a policy. `eval` and `serve` generate their policy flags from the fields that carry a flag."""

    name: str = field(
        metadata=flag("--policy", "zero, random, pi05, oracle, or ws://host:port", required=True)
    )
    embodiment: str = "libero"  # the suite's (eval) or --embodiment (serve)
    action_dim: int | None = None  # action dims the suite executes; default: the embodiment's
    checkpoint: str | None = field(
        default=None, metadata=flag("--checkpoint", "pi0.5 checkpoint: a local directory or a hub id")
    )
    config: str | None = field(
        default=None,
        metadata=flag(
            "--config",
            "the checkpoint's training config: pi05_libero, pi05_droid or pi05_droid_jointpos "
            "(default: from the checkpoint's own metadata; never guessed from its path)",
        ),
    )
    norm_stats: str | None = field(
        default=None, metadata=flag("--norm-stats", "norm_stats.json to use instead of the checkpoint's")
    )
    tokenizer: str | None = field(
        default=None,
        metadata=flag(
            "--tokenizer",
            "PaliGemma SentencePiece model (default: the checkpoint's, then $EVALKIT_TOKENIZER, then openpi's cache)",
        ),
    )
    device: str = field(default="cpu", metadata=flag("--device", "torch device: cpu, cuda, cuda:1, ..."))
    dtype: Dtype = field(
        default="float32", metadata=flag("--dtype", "model dtype", choices=("float32", "bfloat16"))
    )
    compile: bool = field(
        default=False,
        metadata=flag(
            "--compile",
            "torch.compile the sampler (CUDA graphs on CUDA), one graph per batch bucket",
            action="store_true",
        ),
    )
    trim: bool = field(
        default=True,
        metadata=flag(
            "--no-trim",
            "compute every prefix token as openpi does (masked image slots, prompt padding); by default "
            "only what a valid token can see",
            action="store_false",
        ),
    )
    deterministic: bool = field(
        default=False,
        metadata=flag(
            "--deterministic",
            "bit-identical actions whatever the workers, batch composition, replicas or backend: one batch "
            "shape per run, deterministic kernels, pinned CPU threads (slower)",
            action="store_true",
        ),
    )
    max_batch: int | None = None  # the most observations one infer call gets (eval: --batch-size)
    api_key: str | None = field(
        default=None,
        metadata=flag(
            "--api-key", "API key of a remote policy server (or set EVALKIT_API_KEY); never stored"
        ),
    )
    timeout_s: float | None = field(
        default=None,
        metadata=flag(
            "--policy-timeout",
            "seconds a remote policy may take per request (default: sized from the server's measured latency)",
            type=float,
            metavar="SECONDS",
        ),
    )
