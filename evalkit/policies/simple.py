"""Weightless reference policies: `zero` (a do-nothing baseline) and `random` (seeded uniform actions).

Neither reads images, so suites render nothing for them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalkit.core.policy import PolicyMeta, PolicyOptions, PolicyRequest


class ZeroPolicy:
    """All-zero actions. In LIBERO a zero gripper command keeps the gripper as it is."""

    def __init__(self, action_dim: int, horizon: int = 10):
        self.meta = PolicyMeta(name="zero", fingerprint="none", action_dim=action_dim)
        self.horizon = horizon

    def infer(self, batch: Sequence[PolicyRequest]) -> list[np.ndarray]:
        return [np.zeros((self.horizon, req.action_dim), dtype=np.float32) for req in batch]

    def close(self) -> None:
        pass


class RandomPolicy:
    """Uniform actions in [-scale, scale], drawn from the request's seed (so batching never changes them)."""

    def __init__(self, action_dim: int, horizon: int = 10, scale: float = 1.0):
        self.meta = PolicyMeta(name="random", fingerprint="none", action_dim=action_dim)
        self.horizon = horizon
        self.scale = scale

    def infer(self, batch: Sequence[PolicyRequest]) -> list[np.ndarray]:
        out = []
        for req in batch:
            rng = np.random.default_rng(req.seed)
            out.append(
                rng.uniform(-self.scale, self.scale, (self.horizon, req.action_dim)).astype(np.float32)
            )
        return out

    def close(self) -> None:
        pass


def make_zero_policy(options: PolicyOptions) -> ZeroPolicy:
    return ZeroPolicy(options.action_dim)


def make_random_policy(options: PolicyOptions) -> RandomPolicy:
    return RandomPolicy(options.action_dim)
