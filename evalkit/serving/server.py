"""`PolicyServer`: any evalkit policy behind openpi's websocket protocol, with dynamic batching.

Each connection is answered one request at a time (as openpi's server does); requests waiting on all connections
are gathered into one `policy.infer` call (up to `max_batch`, waiting at most `max_wait_ms` for stragglers). The
policy runs in one worker thread, so the event loop keeps accepting, answering health checks and pings meanwhile,
and the policy is never called from two threads at once.

Isolation: every request is validated before it joins a batch; a bad message gets a text frame saying what is
wrong, then close code 1011, on that connection only. If a batched `policy.infer` call raises, each request of the
batch is run again alone, so only the request that fails gets its error (a traceback as a text frame, then 1011,
as openpi does) and the others get their actions.

Abandoned work: a request whose connection closed before it was batched is dropped, never computed. A request
that carries our client's episode id and seed (`EPISODE_KEY`, `SEED_KEY`) is identified by them and its bytes;
a retry of one that is queued or computing waits for that computation, and a retry of one that just finished is
answered from the last `RECENT_REPLIES` answers, so no request is computed twice.

Resources: at most `max_connections` open connections (HTTP 503 beyond), at most one queued message per
connection, no frame over `max_size`, and at most `max_buffered` bytes of received messages held on all
connections together (a connection that would exceed it is dropped).

Metadata (the first frame of every connection, a msgpack map): the served policy's identity (`policy`,
`fingerprint`, `provenance`, `embodiment`, `action_dim`, `action_mode`, `cameras`, `image_size`), `max_batch`, and
`latency_ms`: the measured duration of `policy.infer` calls in ms (`warmup`: the warm-up call; `p95` and `max`
over the last `LATENCY_WINDOW` calls; `count`: calls so far), from which clients size their timeouts. openpi's
clients ignore keys they do not use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import http
import ipaddress
import logging
import queue
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

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
DEFAULT_MAX_CONNECTIONS = 256  # a GPU box batching 16-64 requests per call, with room for many env workers
DEFAULT_MAX_BUFFERED = 4 * DEFAULT_MAX_SIZE  # bytes of received messages held on all connections together
RECENT_REPLIES = 1024  # finished answers kept to serve retries (each a small action chunk)
LATENCY_WINDOW = 200  # policy calls over which p95 and max latency are reported
SHUTDOWN_GRACE_S = 5.0  # on stop, how long a running batch may take to finish before it is abandoned


STOPPING = object()  # what a queued request gets when the server stops before computing it


class BadRequest(ValueError):
    """A client message the server cannot turn into a PolicyRequest."""


@dataclass
class _Failure:
    """A request the policy failed on: the traceback text sent to (only) that request's clients."""

    text: str


@dataclass
class _Reply:
    actions: np.ndarray
    policy_ms: float  # duration of the batched policy.infer call
    batch_size: int


@dataclass(eq=False)
class _Work:
    """One request to compute, shared by every connection waiting for it (a client and its retries)."""

    request: PolicyRequest
    key: tuple | None  # (episode id, seed) when the client sent both; else None
    future: asyncio.Future = field(repr=False)
    message: bytes = field(repr=False)  # as received: a retry must send the very same bytes
    waiters: int = 0
    started: bool = False


def _digest(message: bytes) -> bytes:
    return hashlib.sha1(message, usedforsecurity=False).digest()  # the fastest of hashlib's here (~1 GB/s)


def frame_overhead(payload: int) -> int:
    """Bytes of a client's single-frame websocket message beyond its payload (RFC 6455 §5.2, masked)."""
    return 2 + (0 if payload < 126 else 2 if payload < 2**16 else 8) + 4


class _Connection(ServerConnection):
    """Counts this connection in the server's connection cap and its received bytes in the buffered-bytes cap."""

    def __init__(self, policy_server: PolicyServer, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy_server = policy_server
        self.held = 0  # bytes received on this connection and not yet released

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.policy_server.open_connections += 1

    def data_received(self, data: bytes) -> None:
        srv = self.policy_server
        if self.protocol.state in (State.CLOSING, State.CLOSED):  # websockets discards what follows a close
            super().data_received(data)
            return
        if srv.buffered + len(data) > srv.max_buffered:
            log.warning(
                "dropped the connection from %s: the server holds %d bytes of messages (limit %d)",
                self.remote_address,
                srv.buffered,
                srv.max_buffered,
            )
            self.transport.abort()
            return
        self.held += len(data)
        srv.buffered += len(data)
        srv.peak_buffered = max(srv.peak_buffered, srv.buffered)
        super().data_received(data)

    def release(self, nbytes: int) -> None:
        nbytes = min(nbytes, self.held)
        self.held -= nbytes
        self.policy_server.buffered -= nbytes

    def connection_lost(self, exc: Exception | None) -> None:
        self.release(self.held)
        self.policy_server.open_connections -= 1
        super().connection_lost(exc)


class _PolicyWorker:
    """One daemon thread that runs every policy call (daemon: an abandoned call never keeps the process alive)."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.busy = False
        self._thread = threading.Thread(target=self._run, name="evalkit-policy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, loop, future = job
            self.busy = True
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting coroutine
                result, error = None, exc
            else:
                error = None
            self.busy = False
            with contextlib.suppress(RuntimeError):  # the loop is closed: the call was abandoned at shutdown
                loop.call_soon_threadsafe(_settle, future, result, error)

    def submit(self, fn: Callable, *args) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((fn, args, loop, future))
        return future

    def stop(self) -> None:
        self._jobs.put(None)


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_buffered: int | None = None,
        shutdown_grace_s: float = SHUTDOWN_GRACE_S,
        metadata: Mapping[str, Any] | None = None,
    ):
        if embodiment not in EMBODIMENTS:
            raise EvalkitError(f"unknown embodiment {embodiment!r}; choose one of {', '.join(EMBODIMENTS)}")
        if not 0 <= port <= 65535:
            raise EvalkitError(f"--port must be between 0 and 65535, got {port}")
        if policy.meta.embodiment not in (None, embodiment):
            raise EvalkitError(
                f"policy {policy.meta.name} was built for {policy.meta.embodiment} observations, not {embodiment}"
            )
        if max_batch < 1:
            raise EvalkitError(f"--max-batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise EvalkitError(f"--max-wait-ms must not be negative, got {max_wait_ms}")
        if max_size < 1024:
            raise EvalkitError(f"--max-size must be at least 1024 bytes, got {max_size}")
        if max_connections < 1:
            raise EvalkitError(f"--max-connections must be at least 1, got {max_connections}")
        max_buffered = max(DEFAULT_MAX_BUFFERED, 4 * max_size) if max_buffered is None else max_buffered
        if max_buffered < max_size:
            raise EvalkitError(
                f"--max-buffered ({max_buffered}) must be at least --max-size ({max_size}) bytes"
            )
        self.policy = policy
        self.host = host
        self.port = port
        self.embodiment = embodiment
        self.action_dim = action_dim or policy.meta.action_dim or EMBODIMENTS[embodiment].action_dim
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.api_key = api_key or None
        self.max_size = max_size
        self.max_connections = max_connections
        self.max_buffered = max_buffered
        self.shutdown_grace_s = shutdown_grace_s
        meta = policy.meta
        self.static_metadata: dict[str, Any] = {
            "policy": meta.name,
            "fingerprint": meta.fingerprint,
            "embodiment": embodiment,
            "action_dim": self.action_dim,
            "cameras": list(meta.cameras),
            "max_batch": max_batch,
            "provenance": dict(meta.provenance),
        }
        if meta.image_size is not None:
            self.static_metadata["image_size"] = list(meta.image_size)
        if meta.action_mode is not None:
            self.static_metadata["action_mode"] = meta.action_mode
        self.static_metadata.update(metadata or {})
        self.required_keys = (*EMBODIMENTS[embodiment].state_keys, *meta.cameras)
        self._pending: deque[_Work] = deque()
        self._inflight: dict[tuple, _Work] = {}  # keyed works queued or computing
        self._recent: OrderedDict[tuple, tuple[bytes, _Reply]] = (
            OrderedDict()
        )  # answered: key -> (digest, reply)
        self._wakeup: asyncio.Event | None = None
        self._handlers = 0  # connections past the handshake (each has at most one request in flight)
        self.open_connections = 0  # TCP connections, handshake included
        self.buffered = 0  # bytes received and not yet released, all connections
        self.peak_buffered = 0
        self._seed_counter = 0
        self._worker = _PolicyWorker()
        self._running: asyncio.Future | None = None  # the policy call in progress
        self._stopping = False
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.warmup_ms: float | None = None
        self.batches = 0  # policy.infer calls so far (the warm-up excluded)
        self.requests = 0  # requests computed so far
        self.computed_episodes: list[str] = []  # episode id of each computed request, in order
        self.bound_port: int | None = None

    # ------------------------------------------------------------------ metadata

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata frame sent on connect: the policy's identity and the latency measured so far."""
        lat = np.array(self._latencies) if self._latencies else None
        return {
            **self.static_metadata,
            "latency_ms": {
                "warmup": self.warmup_ms,
                "p95": None if lat is None else float(np.percentile(lat, 95)),
                "max": None if lat is None else float(lat.max()),
                "count": self.batches,
            },
        }

    def warmup(self) -> float | None:
        """One timed policy call on a blank observation (first-call costs, and the first latency estimate)."""
        if self.policy.meta.privileged:
            log.info("no warm-up: %s reads simulator state a blank observation lacks", self.policy.meta.name)
            return None
        height, width = self.policy.meta.image_size or (224, 224)
        obs: dict[str, Any] = {
            k: np.zeros(dims, np.float32) for k, dims in EMBODIMENTS[self.embodiment].state
        }
        obs.update({k: np.zeros((height, width, 3), np.uint8) for k in self.policy.meta.cameras})
        obs["prompt"] = "warm-up"
        start = time.perf_counter()
        self._infer([PolicyRequest(obs, "warmup", 0, self.action_dim)])
        self.warmup_ms = (time.perf_counter() - start) * 1000.0
        log.info("warm-up call took %.0f ms", self.warmup_ms)
        return self.warmup_ms

    # ------------------------------------------------------------------ serving

    async def serve(self, ready: threading.Event | None = None, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set (or forever). `bound_port` holds the real port once listening.

        On stop: no new connections; queued requests are dropped (their connections close with 1012, so clients
        retry elsewhere or later); the running batch gets `shutdown_grace_s` to finish and answer, then is
        abandoned (the worker thread is a daemon, so it never delays the process's exit).
        """
        self._wakeup = asyncio.Event()
        batcher = asyncio.create_task(self._batch_loop(), name="evalkit-batcher")
        try:
            async with serve(
                self._handle,
                self.host,
                self.port,
                compression=None,
                max_size=self.max_size,  # larger frames are refused from their header, before any buffering
                max_queue=1,  # openpi clients send one request at a time
                close_timeout=1,
                process_request=self._process_request,
                create_connection=lambda *args, **kwargs: _Connection(self, *args, **kwargs),
            ) as server:
                self.bound_port = next(iter(server.sockets)).getsockname()[1]
                log.info("serving %s on ws://%s:%d", self.policy.meta.name, self.host, self.bound_port)
                if ready is not None:
                    ready.set()
                if stop is None:
                    await server.serve_forever()
                else:
                    await stop.wait()
                log.info("stopping: no new connections")
                server.server.close()  # the listening sockets; open connections stay for now
                await self._drain()
        finally:
            batcher.cancel()
            await asyncio.gather(batcher, return_exceptions=True)

    async def _drain(self) -> None:
        self._stopping = True  # requests arriving from now on are refused like queued ones
        batcher_running = self._running
        for work in self._pending:
            if not work.future.done():
                work.future.cancel()
        self._pending.clear()
        if batcher_running is not None and not batcher_running.done():
            log.info("waiting up to %.0f s for the running batch", self.shutdown_grace_s)
            done, _ = await asyncio.wait({batcher_running}, timeout=self.shutdown_grace_s)
            if not done:
                log.warning("abandoned the running batch after %.0f s", self.shutdown_grace_s)
            else:
                await asyncio.sleep(0.05)  # let the handlers send the batch's answers

    @property
    def busy(self) -> bool:
        """A policy call is still running (e.g. abandoned at shutdown): the policy must not be closed under it."""
        return self._worker.busy

    def serve_forever(self) -> None:
        asyncio.run(self.serve())

    def close(self) -> None:
        self._worker.stop()

    def _process_request(self, connection: ServerConnection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.open_connections > self.max_connections:
            log.warning(
                "refused a connection from %s: %d connections open (limit %d)",
                connection.remote_address,
                self.open_connections - 1,
                self.max_connections,
            )
            return connection.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                f"server at its limit of {self.max_connections} connections\n",
            )
        if self.api_key is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Api-Key {self.api_key}".encode()):
                log.warning(
                    "rejected a connection from %s: missing or wrong API key", connection.remote_address
                )
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        return None

    async def _handle(self, ws: _Connection) -> None:
        packer = msgpack_numpy.Packer()
        peer = ws.remote_address
        log.info("connection from %s", peer)
        prev_total_ms: float | None = None
        self._handlers += 1
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            await ws.send(packer.pack(self.metadata))
            while True:
                message = await ws.recv()
                start = time.perf_counter()
                try:
                    outcome = await self._answer(message, closed)
                finally:
                    ws.release(len(message) + frame_overhead(len(message)))
                    del message
                if outcome is None:  # the connection closed while its request waited
                    return
                if isinstance(outcome, BadRequest):
                    log.warning("bad request from %s: %s", peer, outcome)
                    await ws.send(f"evalkit serve: bad request: {outcome}")
                    await ws.close(CloseCode.INTERNAL_ERROR, "bad request")
                    return
                if isinstance(outcome, _Failure):
                    log.warning("policy failed on a request from %s:\n%s", peer, outcome.text.rstrip())
                    await ws.send(outcome.text)
                    await ws.close(CloseCode.INTERNAL_ERROR, ERROR_CLOSE_REASON)
                    return
                if outcome is STOPPING:
                    await ws.close(CloseCode.SERVICE_RESTART, "server stopping")
                    return
                server_timing = {
                    "infer_ms": (time.perf_counter() - start) * 1000.0,
                    "batch_size": outcome.batch_size,
                }
                if prev_total_ms is not None:
                    server_timing["prev_total_ms"] = prev_total_ms
                await ws.send(
                    packer.pack(
                        {
                            "actions": outcome.actions,
                            "server_timing": server_timing,
                            "policy_timing": {"infer_ms": outcome.policy_ms},
                        }
                    )
                )
                prev_total_ms = (time.perf_counter() - start) * 1000.0
        except ConnectionClosed:
            pass
        finally:
            closed.cancel()
            self._handlers -= 1
            log.info("connection from %s closed", peer)

    async def _answer(self, message: bytes | str, closed: asyncio.Future):
        """A reply, a BadRequest, a _Failure, STOPPING, or None when the connection closed first."""
        try:
            request, key = self._parse(message)
        except BadRequest as exc:
            return exc
        if self._stopping:
            return STOPPING
        # A retry is the same call (episode, seed) with the same bytes; the bytes are compared in full (against a
        # running call) or by digest (against a finished one), only when the call matches.
        if key is not None and key in self._recent:
            digest, reply = self._recent[key]
            if digest == _digest(message):
                self._recent.move_to_end(key)
                log.info("answered a retry of %s (seed %d) from a finished call", *key)
                return reply
        work = self._inflight.get(key) if key is not None else None
        if work is not None and work.message != message:
            work, key = None, None  # the same call with another observation: computed on its own
        if work is None:
            work = _Work(request, key, asyncio.get_running_loop().create_future(), message)
            if key is not None:
                self._inflight[key] = work
            self._pending.append(work)
            self._wakeup.set()
        else:
            log.info("a retry of %s (seed %d) joins its running computation", *key)
        work.waiters += 1
        try:
            await asyncio.wait({work.future, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            work.waiters -= 1
        if not work.future.done():  # the connection closed first
            if work.waiters == 0 and not work.started:
                work.future.cancel()  # dropped from the queue, never computed
                if key is not None and self._inflight.get(key) is work:
                    del self._inflight[key]
            return None
        if work.future.cancelled():
            return STOPPING
        return work.future.result()

    def _parse(self, message: bytes | str) -> tuple[PolicyRequest, tuple | None]:
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
        for key in EMBODIMENTS[self.embodiment].state_keys:
            state = obs[key]
            if not isinstance(state, np.ndarray | np.generic | int | float | list) or (
                np.asarray(state).dtype.kind not in "biuf"
            ):
                raise BadRequest(f"{key} must be a numeric array")
        try:
            EMBODIMENTS[self.embodiment].state_vector(obs, "observation")
        except (EvalkitError, ValueError) as exc:
            raise BadRequest(str(exc)) from None
        for key in self.policy.meta.cameras:
            image = obs[key]
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3:
                raise BadRequest(f"{key} must be an (H, W, 3) image array")
            if image.dtype.kind not in "uf" or min(image.shape[:2]) < 1:
                raise BadRequest(
                    f"{key} must be a non-empty uint8 or float image, got {image.dtype} {image.shape}"
                )
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
        episode = obs.pop(EPISODE_KEY, None)
        key = None
        if seed is None:
            seed = self._seed_counter
            self._seed_counter += 1
        elif (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= int(seed) <= MAX_SEED
        ):
            raise BadRequest(f"{SEED_KEY} must be an integer in [0, 2**64)")
        elif episode is not None:
            # Our client's request: a retry sends the very same bytes (same episode, seed and observation).
            key = (str(episode), int(seed))
        request = PolicyRequest(
            obs=obs,
            episode_id="" if episode is None else str(episode),
            seed=int(seed),
            action_dim=self.action_dim,
        )
        return request, key

    # ------------------------------------------------------------------ batching

    def _live_pending(self) -> int:
        while self._pending and self._pending[0].future.done():
            self._pending.popleft()
        return sum(1 for w in self._pending if not w.future.done())

    async def _next_batch(self) -> list[_Work]:
        while not self._live_pending():
            self._wakeup.clear()
            await self._wakeup.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        # Stop early once every open connection has its request in: nobody else can join this batch.
        while self._live_pending() < min(self.max_batch, self._handlers):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        batch: list[_Work] = []
        while self._pending and len(batch) < self.max_batch:
            work = self._pending.popleft()
            if not work.future.done():  # skips requests whose connections closed while queued
                batch.append(work)
        return batch

    async def _batch_loop(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            for work in batch:
                work.started = True
            self._running = self._worker.submit(
                self._infer_isolated,
                [w.request for w in batch],
                [w.message if w.key else None for w in batch],
            )
            try:
                outcomes, digests, policy_ms = await self._running
            except Exception:  # not the policy's (that is caught per request): keep serving, report it
                outcomes, digests, policy_ms = [_Failure(traceback.format_exc())] * len(batch), [], 0.0
            self._running = None
            self.batches += 1
            self.requests += len(batch)
            self.computed_episodes.extend(w.request.episode_id for w in batch)
            self._latencies.append(policy_ms)
            for work, outcome, digest in zip(batch, outcomes, digests or [None] * len(batch), strict=True):
                if work.key is not None and self._inflight.get(work.key) is work:
                    del self._inflight[work.key]
                if isinstance(outcome, _Failure):
                    result: _Reply | _Failure = outcome
                else:
                    result = _Reply(outcome, policy_ms, len(batch))
                    if digest is not None:
                        self._recent[work.key] = (digest, result)
                        self._recent.move_to_end(work.key)
                        while len(self._recent) > RECENT_REPLIES:
                            self._recent.popitem(last=False)
                if not work.future.done():
                    work.future.set_result(result)

    def _infer_isolated(
        self, requests: list[PolicyRequest], messages: list[bytes | None]
    ) -> tuple[list[np.ndarray | _Failure], list[bytes | None], float]:
        """Worker thread: one batched call; if it raises, each request alone, so an error stays with its request.
        Also the digests of the (keyed) messages, to recognise retries later: hashed here, off the event loop."""
        start = time.perf_counter()
        try:
            outcomes: list[np.ndarray | _Failure] = list(self._infer(requests))
        except Exception:
            outcomes = [_Failure(traceback.format_exc())]
        if len(requests) > 1 and isinstance(outcomes[0], _Failure):
            # Outside the except block, so that no request's traceback chains the batch's (another's) error.
            log.warning("a batch of %d failed; running its requests one by one", len(requests))
            outcomes = [self._infer_alone(request) for request in requests]
        policy_ms = (time.perf_counter() - start) * 1000.0
        return outcomes, [None if m is None else _digest(m) for m in messages], policy_ms

    def _infer_alone(self, request: PolicyRequest) -> np.ndarray | _Failure:
        try:
            return self._infer([request])[0]
        except Exception:
            return _Failure(traceback.format_exc())

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
