"""Test policies, shared by every test module: each implements evalkit's `Policy` protocol (`meta`, `infer`, `close`)
with a behaviour a test can predict or control. Runner and serving tests hand them to the code under test in
process; Ray workers build one by name from `evalkit.policies.registry.BUILDERS`, e.g.
`monkeypatch.setitem(registry.BUILDERS, "feedback", "tests.fakes:make_state_feedback_policy")`, and
`python -m tests.fakes ARGS` is the `evalkit` command with every policy of `BUILDERS` below registered by name
(`python -m tests.fakes eval --policy raising ...`; run from the repository root)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.policy import PolicyMeta, PolicyOptions, PolicyRequest, PolicyUnavailableError
from evalkit.policies.simple import RandomPolicy

# generous bound on a blocked policy call: a test that never releases one fails instead of hanging
CEILING_S = 60.0


class _Closeable:
    def close(self) -> None:
        pass


class StateFeedbackPolicy(_Closeable):
    """Actions that depend on the observation it is given (the robot state) and on the request's seed, so an
    observation answered for the wrong episode, or a reordered batch, changes what is executed."""

    def __init__(self, action_dim: int):
        self.meta = PolicyMeta(name="state-feedback", fingerprint="test-v1", action_dim=action_dim)
        # size of every infer call, in order
        self.batches: list[int] = []
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
            # pull the hand toward a point; gripper command from the finger position
            chunk[:, :3] += -4.0 * (state[:3] - np.array([0.0, 0.0, 1.1]))
            chunk[:, 6] = np.sign(state[6] - 0.02)
            out.append(np.clip(chunk, -1, 1).astype(np.float32))
        return out


def make_state_feedback_policy(options: PolicyOptions) -> StateFeedbackPolicy:
    return StateFeedbackPolicy(options.action_dim or 7)


class RaisingPolicy(_Closeable):
    """Raises on every call, as a policy with a bug would."""

    MESSAGE = "the model has a bug"

    def __init__(self, action_dim: int = 7):
        self.meta = PolicyMeta(name="raising", fingerprint="test-v1", action_dim=action_dim)
        self.calls = 0

    def infer(self, batch):
        self.calls += 1
        raise ValueError(self.MESSAGE)


def make_raising_policy(options: PolicyOptions) -> RaisingPolicy:
    return RaisingPolicy(options.action_dim or 7)


class ScriptedPolicy(_Closeable):
    """Answers each request with `make_chunk(request)`; counts its calls."""

    def __init__(self, make_chunk: Callable[[PolicyRequest], np.ndarray], meta: PolicyMeta | None = None):
        self.meta = meta or PolicyMeta(name="scripted", fingerprint="none", action_dim=7)
        self.make_chunk = make_chunk
        self.calls = 0

    def infer(self, batch):
        self.calls += 1
        return [self.make_chunk(req) for req in batch]


class ScriptPolicy(_Closeable):
    """Plays a fixed action script: call i of an episode returns script rows [i * r, (i + 1) * r), and records
    every observation it is asked with."""

    def __init__(self, script: np.ndarray, replan: int, cameras: tuple[str, ...]):
        self.meta = PolicyMeta(name="script", fingerprint="none", cameras=cameras, action_dim=script.shape[1])
        self.script = script
        self.replan = replan
        self.seen: dict[str, list[dict]] = defaultdict(list)

    def infer(self, batch):
        chunks = []
        for req in batch:
            calls = self.seen[req.episode_id]
            start = len(calls) * self.replan
            calls.append(req.obs)
            chunks.append(self.script[start : start + self.replan])
        return chunks


class RecordingPolicy(_Closeable):
    """RandomPolicy's seeded actions, recording each call (episode ids, thread); it can block on a gate, fail on
    given episodes, or return a bad chunk for them."""

    def __init__(
        self, fail: set[str] = frozenset(), bad: dict[str, np.ndarray] | None = None, action_dim: int = 7
    ):
        self.meta = PolicyMeta(name="recording", fingerprint="none", action_dim=action_dim)
        self.inner = RandomPolicy(action_dim)
        self.fail = set(fail)
        self.bad = bad or {}
        self.calls: list[list[str]] = []
        self.threads: set[int] = set()
        # when set up, each call waits for it
        self.gate: threading.Event | None = None
        # set when a call starts
        self.entered = threading.Event()
        self.unavailable = False

    def block(self) -> threading.Event:
        self.gate = threading.Event()
        return self.gate

    def infer(self, batch):
        self.calls.append([r.episode_id for r in batch])
        self.threads.add(threading.get_ident())
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(CEILING_S)
        if self.unavailable:
            raise PolicyUnavailableError("the policy server is gone")
        failing = [r.episode_id for r in batch if r.episode_id in self.fail]
        if failing:
            raise ValueError(f"cannot act on {failing[0]}")
        chunks = self.inner.infer(batch)
        return [self.bad.get(r.episode_id, c) for r, c in zip(batch, chunks, strict=True)]


class EchoPolicy(_Closeable):
    """Deterministic LIBERO actions that depend on every input: state, both images, the prompt and the seed."""

    def __init__(self, horizon: int = 10):
        self.meta = PolicyMeta(
            "echo",
            "echo-v1",
            cameras=EMBODIMENTS["libero"].policy_cameras,
            image_size=(224, 224),
            action_dim=7,
        )
        self.horizon = horizon
        self.batch_sizes: list[int] = []

    def infer(self, batch: Sequence[PolicyRequest]) -> list[np.ndarray]:
        self.batch_sizes.append(len(batch))
        out = []
        for req in batch:
            obs = req.obs
            a = (
                np.random.default_rng(req.seed)
                .uniform(-1, 1, (self.horizon, req.action_dim))
                .astype(np.float32)
            )
            a[0, :7] = np.asarray(obs["observation/state"], dtype=np.float32)[:7]
            a[1, :3] = obs["observation/image"].reshape(-1, 3).mean(0) / 255.0
            a[1, 3:6] = obs["observation/wrist_image"].reshape(-1, 3).mean(0) / 255.0
            a[1, 6] = len(obs["prompt"])
            out.append(a)
        return out


class PoisonPolicy(EchoPolicy):
    """EchoPolicy that raises on a request whose prompt is "poison" (failing the whole batched call)."""

    def __init__(self):
        super().__init__()
        # size of every call, the failed ones included
        self.calls: list[int] = []

    def infer(self, batch: Sequence[PolicyRequest]) -> list[np.ndarray]:
        self.calls.append(len(batch))
        for req in batch:
            if req.obs["prompt"] == "poison":
                raise ValueError(f"poisoned request {req.episode_id}")
        return super().infer(batch)


class SlowPolicy:
    """Blocks every call until `release` is set (or CEILING_S pass); records the episode ids of each call."""

    def __init__(self):
        self.meta = PolicyMeta("slow", "none", action_dim=7)
        self.release = threading.Event()
        # set when a call starts
        self.entered = threading.Event()
        self.calls: list[list[str]] = []

    def infer(self, batch):
        self.calls.append([r.episode_id for r in batch])
        self.entered.set()
        self.release.wait(CEILING_S)
        return [np.full((10, r.action_dim), r.seed % 1000, np.float32) for r in batch]

    def close(self) -> None:
        self.release.set()


class SleepPolicy(_Closeable):
    """Every call takes `seconds` (a stand-in for a large model on a CPU), then returns zeros."""

    def __init__(self, seconds: float, action_dim: int = 7):
        self.meta = PolicyMeta("sleep", f"sleep-{seconds:g}s", action_dim=action_dim)
        self.seconds = seconds

    def infer(self, batch):
        print(f"sleep policy: computing a batch of {len(batch)}", file=sys.stderr, flush=True)
        time.sleep(self.seconds)
        return [np.zeros((10, r.action_dim), np.float32) for r in batch]


def make_sleep_policy(options: PolicyOptions) -> SleepPolicy:
    """Builder for `python -m tests.fakes`; $SLEEP_POLICY_S seconds per call (default 60)."""
    return SleepPolicy(float(os.environ.get("SLEEP_POLICY_S", "60")), options.action_dim)


class GatedPolicy(_Closeable):
    """Zeros, but every call first waits until the file `gate` exists: a test holds a run in progress (in another
    process) for as long as it needs, then opens the gate by creating the file."""

    def __init__(self, gate: Path, action_dim: int = 7, timeout_s: float = 600.0):
        self.meta = PolicyMeta("gated", "none", action_dim=action_dim)
        self.gate = gate
        self.timeout_s = timeout_s

    def infer(self, batch):
        deadline = time.monotonic() + self.timeout_s
        while not self.gate.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the test never created {self.gate}")
            time.sleep(0.05)
        return [np.zeros((10, r.action_dim), np.float32) for r in batch]


def make_gated_policy(options: PolicyOptions) -> GatedPolicy:
    """Builder for `python -m tests.fakes`; the gate is the file named by $EVALKIT_TEST_GATE."""
    return GatedPolicy(Path(os.environ["EVALKIT_TEST_GATE"]), options.action_dim or 7)


# the policies `python -m tests.fakes` adds to evalkit's registry, by name
BUILDERS = {
    "feedback": "tests.fakes:make_state_feedback_policy",
    "raising": "tests.fakes:make_raising_policy",
    "sleep": "tests.fakes:make_sleep_policy",
    "gated": "tests.fakes:make_gated_policy",
}

if __name__ == "__main__":
    from evalkit.cli import main
    from evalkit.policies import registry

    registry.BUILDERS.update(BUILDERS)
    sys.exit(main(sys.argv[1:]))
