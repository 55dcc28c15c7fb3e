"""Test policies that the runner builds by name (registered with monkeypatch on `BUILDERS`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from evalkit.core.policy import PolicyMeta, PolicyOptions


class StateFeedbackPolicy:
    """Actions that depend on the observation it is given (the robot state) and on the request's seed, so an
    observation answered for the wrong episode, or a reordered batch, changes what is executed."""

    def __init__(self, action_dim: int):
        self.meta = PolicyMeta(name="state-feedback", fingerprint="test-v1", action_dim=action_dim)
        self.batches: list[int] = []  # size of every infer call, in order
        # called before the first call computes (e.g. to hold it until other observations wait)
        self.before_first: Callable[[], None] | None = None

    def infer(self, batch):
        if not self.batches and self.before_first is not None:
            self.before_first()
        self.batches.append(len(batch))
        out = []
        for req in batch:
            state = np.asarray(req.obs["observation/state"], dtype=np.float64)
            noise = np.random.default_rng(req.seed).normal(0.0, 0.3, (10, req.action_dim))
            chunk = noise.copy()
            chunk[:, :3] += -4.0 * (state[:3] - np.array([0.0, 0.0, 1.1]))  # pull the hand toward a point
            chunk[:, 6] = np.sign(state[6] - 0.02)  # gripper command from the finger position
            out.append(np.clip(chunk, -1, 1).astype(np.float32))
        return out

    def close(self) -> None:
        pass


def make_state_feedback_policy(options: PolicyOptions) -> StateFeedbackPolicy:
    return StateFeedbackPolicy(options.action_dim or 7)


class RaisingPolicy:
    """Raises on every call, as a policy with a bug would."""

    def __init__(self, action_dim: int):
        self.meta = PolicyMeta(name="raising", fingerprint="test-v1", action_dim=action_dim)
        self.calls = 0

    def infer(self, batch):
        self.calls += 1
        raise ValueError("the model has a bug")

    def close(self) -> None:
        pass


def make_raising_policy(options: PolicyOptions) -> RaisingPolicy:
    return RaisingPolicy(options.action_dim or 7)
