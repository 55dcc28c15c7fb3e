"""The two Ray actors of `evalkit eval --ray`: an env worker (`EnvActor`, one CPU) and a policy replica
(`PolicyReplica`, optional GPUs) that batches the requests it receives dynamically.

They are plain classes, turned into actors by `evalkit.runner.ray_runner` with `ray.remote(...).options(...)`.
An env actor's videos are written to a node-local temporary directory and shipped to the driver with the result,
so the cluster needs no shared filesystem.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.batching import validate_chunk
from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Observation, PolicyMeta, PolicyOptions, PolicyRequest, PolicyUnavailableError
from evalkit.core.protocol import SuiteSpec
from evalkit.runner.worker import EnvHost, Message


class EnvActor:
    """Runs whole episodes, asking the policy replicas itself (the driver is not on the path of an observation).

    `run` is a streaming generator: it reports ("waiting",) before each policy call and ("stepping",) after it,
    so the driver's watchdog times only the env, then ends with the episode's closing message."""

    def __init__(
        self,
        suites: dict[str, SuiteSpec],
        cameras: bool,
        privileged: bool,
        video_mode: str,
        save_actions: bool,
        replicas: list[Any],
        index: int,
    ):
        from evalkit.rendering import configure_gl

        configure_gl()
        self.video_dir = Path(tempfile.mkdtemp(prefix="evalkit-actor-"))
        self.host = EnvHost(suites, self.video_dir, cameras, privileged, video_mode, save_actions)
        self.replicas = replicas
        self.turn = index  # replicas are taken in turn, starting from this actor's index

    def ready(self) -> int:
        return os.getpid()

    def run(self, spec: EpisodeSpec, record_video: bool, action_dim: int) -> Iterator[Message]:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        msg = self.host.begin(spec, record_video)
        while msg[0] == "request":
            yield ("waiting",)
            replica = self.replicas[self.turn % len(self.replicas)]
            self.turn += 1
            try:
                reply = replica.infer.remote(msg[2], spec.episode_id, spec.request_seed(msg[1]), action_dim)
                chunk = validate_chunk(ray.get(reply), action_dim, spec.episode_id)
            except RayTaskError as exc:
                self.host.abort()
                cause = getattr(exc, "cause", None) or exc
                kind = "unavailable" if isinstance(cause, PolicyUnavailableError) else "policy_error"
                yield (kind, str(cause).splitlines()[0] if str(cause) else type(cause).__name__)
                return
            except RayActorError as exc:  # restarted as often as allowed, and died again
                self.host.abort()
                yield ("unavailable", f"policy replica died: {str(exc).splitlines()[0]}")
                return
            except EvalkitError as exc:  # actions of the wrong shape, non-finite: the run stops
                self.host.abort()
                yield ("policy_error", str(exc))
                return
            yield ("stepping",)
            msg = self.host.answer(chunk)
        yield self._ship(msg)

    def close(self) -> None:
        self.host.close()
        shutil.rmtree(self.video_dir, ignore_errors=True)

    def _ship(self, msg: Message) -> Message:
        """A result carries its video's bytes (the driver writes them into the run directory)."""
        if msg[0] != "result":
            return msg
        result, actions = msg[1], msg[2]
        video = None
        if result.video:
            path = self.video_dir / result.video
            video = path.read_bytes()
            path.unlink()
        return ("result", result, actions, video)


class PolicyReplica:
    """One policy, built in this actor from its builder ("module:function") and options. Concurrent `infer` calls
    are gathered into one `policy.infer` (up to `max_batch`, waiting at most `max_wait_ms` for stragglers when the
    policy was idle); the policy runs in one thread, so requests keep arriving while it infers."""

    def __init__(self, builder: str, options: PolicyOptions, max_batch: int, max_wait_ms: float):
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max_wait_ms / 1000
        self.pending: deque[tuple[PolicyRequest, asyncio.Future]] = deque()
        self.batcher: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(1)
        self.error: Exception | None = None
        try:
            module_name, func_name = builder.split(":")
            self.policy = getattr(importlib.import_module(module_name), func_name)(options)
        except Exception as exc:  # reported by `meta()` as one line
            self.error = exc

    async def meta(self) -> PolicyMeta:
        if self.error is not None:
            raise self.error if isinstance(self.error, EvalkitError) else EvalkitError(str(self.error))
        return self.policy.meta

    async def pid(self) -> int:
        return os.getpid()

    async def infer(self, obs: Observation, episode_id: str, seed: int, action_dim: int) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((PolicyRequest(obs, episode_id, seed, action_dim), future))
        if self.batcher is None or self.batcher.done():
            self.batcher = asyncio.create_task(self._serve())
        return await future

    async def _serve(self) -> None:
        """Batches until nothing is pending. Only a batch that starts on an idle policy waits for stragglers;
        requests that arrived during an inference go into the next batch at once."""
        loop = asyncio.get_running_loop()
        idle = True
        while self.pending:
            if idle and len(self.pending) < self.max_batch:
                await asyncio.sleep(self.max_wait_s)
            idle = False
            batch = [self.pending.popleft() for _ in range(min(self.max_batch, len(self.pending)))]
            try:
                chunks = await loop.run_in_executor(self.executor, self.policy.infer, [r for r, _ in batch])
                if len(chunks) != len(batch):
                    raise EvalkitError(f"policy returned {len(chunks)} chunks for {len(batch)} observations")
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), chunk in zip(batch, chunks, strict=True):
                if not future.done():
                    future.set_result(np.asarray(chunk))

    async def close(self) -> None:
        if self.error is None:
            self.policy.close()
