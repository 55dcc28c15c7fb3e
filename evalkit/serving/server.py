"""`PolicyServer`: any evalkit policy behind openpi's websocket protocol, with dynamic batching.

Each connection is answered one request at a time (as openpi's server does); requests waiting on all connections
are gathered into one `policy.infer` call (up to `max_batch`, waiting at most `max_wait_ms` for stragglers). The
policy runs in one worker thread, so the event loop keeps accepting, answering health checks and pings meanwhile,
and the policy is never called from two threads at once.

A bad message (not msgpack-numpy, not a map, missing keys, over the size limit) gets a text frame saying what is
wrong, then close code 1011, on that connection only. A policy exception gets its traceback as a text frame and
1011, as openpi does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Policy, PolicyRequest
from evalkit.wire import (
    DEFAULT_MAX_SIZE,
    EPISODE_KEY,
    SEED_KEY,
    msgpack_numpy,
)

log = logging.getLogger("evalkit.serve")

ERROR_CLOSE_REASON = "Internal server error. Traceback included in previous frame."
MAX_SEED = 2**64 - 1


class BadRequest(ValueError):
    """A client message the server cannot turn into a PolicyRequest."""


@dataclass
class _Pending:
    request: PolicyRequest
    received: float  # time.perf_counter() when the message arrived
    future: asyncio.Future = field(repr=False)


@dataclass
class _Reply:
    actions: np.ndarray
    policy_ms: float  # duration of the batched policy.infer call
    batch_size: int


class PolicyServer:
    def __init__(
        self,
        policy: Policy,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        embodiment: str = "libero",
        action_dim: int | None = None,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        api_key: str | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        metadata: Mapping[str, Any] | None = None,
    ):
        if embodiment not in EMBODIMENTS:
            raise EvalkitError(f"unknown embodiment {embodiment!r}; choose one of {', '.join(EMBODIMENTS)}")
        if max_batch < 1:
            raise EvalkitError(f"--max-batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise EvalkitError(f"--max-wait-ms must not be negative, got {max_wait_ms}")
        if max_size < 1024:
            raise EvalkitError(f"--max-size must be at least 1024 bytes, got {max_size}")
        self.policy = policy
        self.host = host
        self.port = port
        self.embodiment = embodiment
        self.action_dim = action_dim or policy.meta.action_dim or EMBODIMENTS[embodiment].action_dim
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.api_key = api_key or None
        self.max_size = max_size
        meta = policy.meta
        self.metadata: dict[str, Any] = {
            "policy": meta.name,
            "fingerprint": meta.fingerprint,
            "embodiment": embodiment,
            "action_dim": self.action_dim,
            "cameras": list(meta.cameras),
            "max_batch": max_batch,
        }
        if meta.image_size is not None:
            self.metadata["image_size"] = list(meta.image_size)
        self.metadata.update(metadata or {})
        self.required_keys = (*EMBODIMENTS[embodiment].state_keys, *meta.cameras)
        self._pending: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._connections = 0  # open websocket connections (each has at most one request in flight)
        self._seed_counter = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self.batches = 0  # policy.infer calls so far
        self.requests = 0  # requests answered so far
        self.bound_port: int | None = None

    # ------------------------------------------------------------------ serving

    async def serve(self, ready: threading.Event | None = None, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set (or forever). `bound_port` holds the real port once listening."""
        self._wakeup = asyncio.Event()
        batcher = asyncio.create_task(self._batch_loop(), name="evalkit-batcher")
        try:
            # The protocol layer drops anything over twice the limit with 1009 before buffering it; between the
            # limit and twice it, the handler answers with a readable text error and 1011.
            async with serve(
                self._handle,
                self.host,
                self.port,
                compression=None,
                max_size=2 * self.max_size,
                process_request=self._process_request,
            ) as server:
                self.bound_port = next(iter(server.sockets)).getsockname()[1]
                log.info("serving %s on ws://%s:%d", self.policy.meta.name, self.host, self.bound_port)
                if ready is not None:
                    ready.set()
                if stop is None:
                    await server.serve_forever()
                else:
                    await stop.wait()
        finally:
            batcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await batcher

    def serve_forever(self) -> None:
        asyncio.run(self.serve())

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _process_request(self, connection: ServerConnection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.api_key is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Api-Key {self.api_key}".encode()):
                log.warning(
                    "rejected a connection from %s: missing or wrong API key", connection.remote_address
                )
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        packer = msgpack_numpy.Packer()
        peer = ws.remote_address
        log.info("connection from %s", peer)
        prev_total_ms: float | None = None
        self._connections += 1
        try:
            await ws.send(packer.pack(self.metadata))
            while True:
                message = await ws.recv()
                start = time.perf_counter()
                try:
                    request = self._parse(message)
                except BadRequest as exc:
                    log.warning("bad request from %s: %s", peer, exc)
                    await ws.send(f"evalkit serve: bad request: {exc}")
                    await ws.close(CloseCode.INTERNAL_ERROR, "bad request")
                    return
                loop = asyncio.get_running_loop()
                pending = _Pending(request, start, loop.create_future())
                self._pending.append(pending)
                self._wakeup.set()
                try:
                    reply: _Reply = await pending.future
                except Exception:
                    log.exception("policy failed on a request from %s", peer)
                    await ws.send(traceback.format_exc())
                    await ws.close(CloseCode.INTERNAL_ERROR, ERROR_CLOSE_REASON)
                    return
                server_timing = {
                    "infer_ms": (time.perf_counter() - start) * 1000.0,
                    "batch_size": reply.batch_size,
                }
                if prev_total_ms is not None:
                    server_timing["prev_total_ms"] = prev_total_ms
                await ws.send(
                    packer.pack(
                        {
                            "actions": reply.actions,
                            "server_timing": server_timing,
                            "policy_timing": {"infer_ms": reply.policy_ms},
                        }
                    )
                )
                prev_total_ms = (time.perf_counter() - start) * 1000.0
        except ConnectionClosed:
            pass
        finally:
            self._connections -= 1
            log.info("connection from %s closed", peer)

    def _parse(self, message: bytes | str) -> PolicyRequest:
        if isinstance(message, str):
            raise BadRequest("expected a binary msgpack frame, got a text frame")
        if len(message) > self.max_size:
            raise BadRequest(
                f"message of {len(message)} bytes exceeds the server's limit of {self.max_size} bytes"
            )
        try:
            obs = msgpack_numpy.unpackb(message)
        except msgpack_numpy.WireFormatError as exc:
            raise BadRequest(str(exc)) from None
        if not isinstance(obs, dict):
            raise BadRequest(f"expected a map of observations, got {type(obs).__name__}")
        if not all(isinstance(k, str) for k in obs):
            raise BadRequest("observation keys must be strings")
        missing = [k for k in self.required_keys if k not in obs]
        if missing:
            raise BadRequest(
                f"missing key(s) {', '.join(missing)}; {self.embodiment} requests carry "
                f"{', '.join(self.required_keys)} and prompt"
            )
        for key in self.required_keys:
            value = obs[key]
            if not isinstance(value, np.ndarray | np.generic | int | float | list):
                raise BadRequest(f"{key} must be an array, got {type(value).__name__}")
        for key in self.policy.meta.cameras:
            image = obs[key]
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3:
                raise BadRequest(f"{key} must be an (H, W, 3) image array")
        if "prompt" not in obs:
            raise BadRequest("missing key prompt (the task instruction)")
        prompt = obs["prompt"]
        if isinstance(prompt, bytes):
            try:
                obs["prompt"] = prompt.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("prompt is not valid utf-8") from None
        elif not isinstance(prompt, str):
            raise BadRequest(f"prompt must be a string, got {type(prompt).__name__}")
        seed = obs.pop(SEED_KEY, None)
        if seed is None:
            seed = self._seed_counter
            self._seed_counter += 1
        elif (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= int(seed) <= MAX_SEED
        ):
            raise BadRequest(f"{SEED_KEY} must be an integer in [0, 2**64)")
        episode = obs.pop(EPISODE_KEY, "")
        return PolicyRequest(obs=obs, episode_id=str(episode), seed=int(seed), action_dim=self.action_dim)

    # ------------------------------------------------------------------ batching

    async def _next_batch(self) -> list[_Pending]:
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        # Stop early once every open connection has its request in: nobody else can join this batch.
        while len(self._pending) < min(self.max_batch, self._connections):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)
        count = min(self.max_batch, len(self._pending))
        return [self._pending.popleft() for _ in range(count)]

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [p for p in await self._next_batch() if not p.future.done()]
            if not batch:
                continue
            start = time.perf_counter()
            try:
                chunks = await loop.run_in_executor(self._executor, self._infer, [p.request for p in batch])
            except Exception as exc:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            policy_ms = (time.perf_counter() - start) * 1000.0
            self.batches += 1
            self.requests += len(batch)
            for p, chunk in zip(batch, chunks, strict=True):
                if not p.future.done():
                    p.future.set_result(_Reply(chunk, policy_ms, len(batch)))

    def _infer(self, requests: list[PolicyRequest]) -> list[np.ndarray]:
        chunks = self.policy.infer(requests)
        if len(chunks) != len(requests):
            raise RuntimeError(f"policy returned {len(chunks)} chunks for {len(requests)} requests")
        out = []
        for chunk in chunks:
            arr = np.asarray(chunk, dtype=np.float32)
            if arr.ndim != 2:
                raise RuntimeError(
                    f"policy returned an action chunk of shape {arr.shape}; expected (horizon, dim)"
                )
            out.append(np.ascontiguousarray(arr))
        return out


class ServerThread:
    """A PolicyServer running on its own event loop in a background thread (tests, benchmarks, notebooks)."""

    def __init__(self, server: PolicyServer):
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="evalkit-serve", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._stop = asyncio.Event()
        try:
            self._loop.run_until_complete(self.server.serve(self._ready, self._stop))
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise EvalkitError(f"policy server failed to start: {self._error}")
        return self

    @property
    def port(self) -> int:
        assert self.server.bound_port is not None
        return self.server.bound_port

    @property
    def url(self) -> str:
        return f"ws://{self.server.host}:{self.port}"

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
        self.server.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
