"""The two Ray actors of `evalkit eval --ray`: an env worker (`EnvActor`, one CPU) and a policy replica
(`PolicyReplica`, optional GPUs) that batches the requests it receives with a `DynamicBatcher`.

They are plain classes, turned into actors by `evalkit.runner.ray_runner` with `ray.remote(...).options(...)`.
An env actor knows no policy of its own: each episode names the replicas to ask, so env actors outlive a policy
(`evalkit watch` swaps checkpoints without restarting simulators). Its videos are written to a node-local
temporary directory and shipped to the driver with the result, so the cluster needs no shared filesystem.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from evalkit.batching import DynamicBatcher
from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Policy, PolicyMeta, PolicyOptions, PolicyRequest
from evalkit.core.protocol import SuiteSpec
from evalkit.runner.messages import (
    Aborted,
    ActorReport,
    EpisodeDone,
    EpisodeOptions,
    HostMessage,
    PolicyCall,
    PolicyFailed,
    Stepping,
    Waiting,
)
from evalkit.runner.worker import EnvHost

T = TypeVar("T")


class EnvActor:
    """Runs whole episodes, asking the policy replicas itself (the driver is not on the path of an observation).

    `run` is a streaming generator of `ActorReport`s: `Waiting` before each policy call and `Stepping` after it (so
    the driver's watchdog times only the env), then the episode's closing message. The actor runs two threads, so
    that `abort` reaches an episode in progress: the episode ends with `Aborted` at its next policy call.

    Every simulator call runs on one thread of its own (`self.sim`): a GL context can be current on one thread only,
    and Ray runs each call on either of the actor's two threads, so an episode whose scene was built on the other
    thread could not render (EGL_BAD_ACCESS) and was retried."""

    def __init__(self, suites: dict[str, SuiteSpec], index: int):
        from evalkit.rendering import configure_gl

        configure_gl()
        self.video_dir = Path(tempfile.mkdtemp(prefix="evalkit-actor-"))
        self.host = EnvHost(suites)
        self.sim = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalkit-sim")
        self.turn = index  # replicas are taken in turn, starting from this actor's index
        self.aborting: str | None = None  # the episode id to abort

    def ready(self) -> int:
        return os.getpid()

    def abort(self, episode_id: str) -> None:
        self.aborting = episode_id

    def run(
        self, spec: EpisodeSpec, record_video: bool, options: EpisodeOptions, replicas: list[Any]
    ) -> Iterator[ActorReport]:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        options = dataclasses.replace(options, run_dir=str(self.video_dir))
        action_dim = self.host.suites[spec.suite].protocol.action_dim
        msg: HostMessage = self.on_sim(self.host.begin, spec, record_video, options)
        while isinstance(msg, PolicyCall):
            if self.aborting == spec.episode_id:
                self.on_sim(self.host.abort)
                yield Aborted()
                return
            yield Waiting()
            replica = replicas[self.turn % len(replicas)]
            self.turn += 1
            request = PolicyRequest(msg.obs, spec.episode_id, spec.request_seed(msg.call), action_dim)
            try:
                chunk = ray.get(replica.infer.remote(request))
            except RayTaskError as exc:
                self.on_sim(self.host.abort)
                yield PolicyFailed.of(getattr(exc, "cause", None) or exc)
                return
            except RayActorError as exc:  # restarted as often as allowed, and died again
                self.on_sim(self.host.abort)
                yield PolicyFailed("unavailable", f"policy replica died: {str(exc).splitlines()[0]}")
                return
            yield Stepping()
            msg = self.on_sim(self.host.answer, chunk)
        yield self._ship(msg) if isinstance(msg, EpisodeDone) else msg

    def close(self) -> None:
        self.on_sim(self.host.close)
        self.sim.shutdown()
        shutil.rmtree(self.video_dir, ignore_errors=True)

    def on_sim(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` on the simulator's thread (see the class docstring)."""
        return self.sim.submit(call, *args).result()

    def _ship(self, msg: EpisodeDone) -> EpisodeDone:
        """A result carries its video's bytes (the driver writes them into the run directory)."""
        if not msg.result.video:
            return msg
        path = self.video_dir / msg.result.video
        video = path.read_bytes()
        path.unlink()
        return dataclasses.replace(msg, video=video)


def build_policy(builder: str, options: PolicyOptions) -> Policy:
    """The replica's policy, from its builder ("module:function") and options: the one place a replica's policy
    (and anything its process needs first) is set up."""
    module_name, func_name = builder.split(":")
    return getattr(importlib.import_module(module_name), func_name)(options)


class PolicyReplica:
    """One policy behind a `DynamicBatcher` (up to `max_batch` requests per call, waiting at most `max_wait_ms`
    for more when the policy was idle). `infer` calls from all env actors arrive on the actor's event loop and
    await the batcher's futures, so requests keep arriving while the policy infers."""

    def __init__(self, builder: str, options: PolicyOptions, max_batch: int, max_wait_ms: float):
        self.error: Exception | None = None
        self.batcher: DynamicBatcher | None = None
        try:
            self.policy = build_policy(builder, options)
            self.batcher = DynamicBatcher(self.policy, max(1, max_batch), max_wait_ms / 1000)
        except Exception as exc:  # reported by `meta()` as one line
            self.error = exc

    async def meta(self) -> PolicyMeta:
        if self.error is not None:
            raise self.error if isinstance(self.error, EvalkitError) else EvalkitError(str(self.error))
        return self.policy.meta

    async def pid(self) -> int:
        return os.getpid()

    async def infer(self, request: PolicyRequest) -> np.ndarray:
        assert self.batcher is not None
        return await asyncio.wrap_future(self.batcher.submit(request))

    async def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
            self.policy.close()
