"""Shared pieces of the serving tests: LIBERO-shaped observations, test policies, a server subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.policy import Policy, PolicyMeta, PolicyRequest
from evalkit.serving.config import ServeConfig
from evalkit.serving.server import PolicyServer

REPO = Path(__file__).resolve().parents[2]
# `evalkit serve` as installed (the console script next to this interpreter), else the module itself.
_CONSOLE = Path(sys.executable).with_name("evalkit")
SERVE_COMMAND = (
    [str(_CONSOLE), "serve"] if _CONSOLE.exists() else [sys.executable, "-m", "evalkit.serving.cli"]
)


def local_server(policy: Policy, **config) -> PolicyServer:
    """A PolicyServer of `policy` on loopback, on any free port unless `port` is given."""
    return PolicyServer(policy, ServeConfig(**{"port": 0, **config}))


def libero_obs(i: int, prompt: str = "put the bowl on the plate") -> dict:
    rng = np.random.default_rng(1000 + i)
    return {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8),
        "prompt": prompt,
    }


def libero_request(i: int, action_dim: int = 7) -> PolicyRequest:
    return PolicyRequest(
        libero_obs(i), episode_id=f"libero_spatial/0/{i}/7", seed=10_000 + 17 * i, action_dim=action_dim
    )


class EchoPolicy:
    """Deterministic actions that depend on every input: state, both images, the prompt and the seed."""

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

    def close(self) -> None:
        pass


class FailingPolicy:
    def __init__(self):
        self.meta = PolicyMeta("failing", "none", action_dim=7)

    def infer(self, batch):
        raise ValueError("deliberate failure inside the policy")

    def close(self) -> None:
        pass


class SlowPolicy:
    """Blocks every call until `release` is set (or 10 s pass); records the episode ids of each call."""

    def __init__(self):
        self.meta = PolicyMeta("slow", "none", action_dim=7)
        self.release = threading.Event()
        self.entered = threading.Event()  # set when a call starts
        self.calls: list[list[str]] = []

    def infer(self, batch):
        self.calls.append([r.episode_id for r in batch])
        self.entered.set()
        self.release.wait(10)
        return [np.full((10, r.action_dim), r.seed % 1000, np.float32) for r in batch]

    def close(self) -> None:
        self.release.set()


class PoisonPolicy(EchoPolicy):
    """EchoPolicy that raises on a request whose prompt is "poison" (failing the whole batched call)."""

    def __init__(self):
        super().__init__()
        self.calls: list[int] = []  # size of every call, the failed ones included

    def infer(self, batch: Sequence[PolicyRequest]) -> list[np.ndarray]:
        self.calls.append(len(batch))
        for req in batch:
            if req.obs["prompt"] == "poison":
                raise ValueError(f"poisoned request {req.episode_id}")
        return super().infer(batch)


class SleepPolicy:
    """Every call sleeps `seconds` (a stand-in for a large model on a CPU), then returns zeros."""

    def __init__(self, seconds: float, action_dim: int = 7):
        self.meta = PolicyMeta("sleep", f"sleep-{seconds:g}s", action_dim=action_dim)
        self.seconds = seconds

    def infer(self, batch):
        print(f"sleep policy: computing a batch of {len(batch)}", file=sys.stderr, flush=True)
        time.sleep(self.seconds)
        return [np.zeros((10, r.action_dim), np.float32) for r in batch]

    def close(self) -> None:
        pass


def make_sleep_policy(options) -> SleepPolicy:
    """Builder for `tests/serving/sleep_serve.py`; SLEEP_POLICY_S seconds per call (default 60)."""
    return SleepPolicy(float(os.environ.get("SLEEP_POLICY_S", "60")), options.action_dim)


# `evalkit serve` with the test-only `sleep` policy registered (see sleep_serve.py).
SLEEP_SERVE_COMMAND = [sys.executable, "-m", "tests.serving.sleep_serve"]


class ServerProcess:
    """`evalkit serve ...` (or another serve `command`) in a subprocess on a free loopback port."""

    def __init__(self, *args: str, command: Sequence[str] = tuple(SERVE_COMMAND), env: dict | None = None):
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        # Server logs go to a file (a pipe could fill up and block the server); O_APPEND so that reading it here
        # never moves the server's write position.
        self.log = tempfile.TemporaryFile("a+")  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(
            [*command, "--port", "0", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            match = re.search(r"listening on (ws://\S+):(\d+)", line)
            if match:
                self.url, self.port = f"{match.group(1)}:{match.group(2)}", int(match.group(2))
                return
            if not line and self.proc.poll() is not None:
                break
        self.kill()
        self.log.seek(0)
        raise RuntimeError(f"server did not start: {line!r} {self.log.read()}")

    def read_log(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.read_log():
            if time.monotonic() > deadline:
                raise AssertionError(f"server never logged {text!r}: {self.read_log()[-2000:]}")
            time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        self.proc.stdout.close()
        self.log.close()
