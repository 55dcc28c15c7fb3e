"""`PolicyServer`: any evalkit policy behind openpi's websocket protocol, with dynamic batching.

Each connection is answered one request at a time (as openpi's server does); requests waiting on all connections
are gathered into one `policy.infer` call by the server's batcher (`evalkit.serving.batching`, over the shared
`evalkit.batching.DynamicBatcher`): up to `max_batch`, waiting at most `max_wait_ms` for stragglers, and not at all
once every open connection has its request in. The policy runs in the batcher's thread, so the event loop keeps
accepting, answering health checks and pings meanwhile.

Isolation: every request is checked before it joins a batch (`evalkit.serving.requests`); a bad message gets a
text frame saying what is wrong, then close code 1011, on that connection only. If a batched call raises, each
request of the batch is run again alone, so only the request that fails gets its error (a traceback as a text
frame, then 1011, as openpi does) and the others get their actions.

Resources (`evalkit.serving.admission`): connections in all and per client address, opening handshakes bounded in
time, and the bytes of received messages held at once. The metadata frame is `evalkit.wire.metadata`'s.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from evalkit.batching import BatcherStats
from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Policy, PolicyRequest
from evalkit.serving.admission import Admission, AdmittedConnection
from evalkit.serving.batching import Failure, Reply, ServerBatcher, Stopping
from evalkit.serving.config import ServeConfig
from evalkit.serving.requests import BadRequest, RequestParser
from evalkit.wire import msgpack_numpy
from evalkit.wire.auth import is_authorized
from evalkit.wire.metadata import latency_metadata, policy_metadata

log = logging.getLogger("evalkit.serve")

ERROR_CLOSE_REASON = "Internal server error. Traceback included in previous frame."
# After the running batch finished at shutdown, how long its connections may take to send its answers.
ANSWER_GRACE_S = 1.0


class PolicyServer:
    def __init__(
        self, policy: Policy, config: ServeConfig | None = None, metadata: Mapping[str, Any] | None = None
    ):
        """`metadata`: extra keys for the metadata frame."""
        config = config or ServeConfig()
        config.validate()
        if policy.meta.embodiment not in (None, config.embodiment):
            raise EvalkitError(
                f"policy {policy.meta.name} was built for {policy.meta.embodiment} observations, "
                f"not {config.embodiment}"
            )
        self.policy = policy
        self.config = config
        self.action_dim = policy.meta.action_dim or EMBODIMENTS[config.embodiment].action_dim
        self.static_metadata = {
            **policy_metadata(policy.meta, config.embodiment, self.action_dim, config.max_batch),
            **(metadata or {}),
        }
        self.parser = RequestParser(config.embodiment, policy.meta.cameras, self.action_dim, config.max_size)
        self.admission = Admission(
            config.max_connections, config.max_connections_per_address, config.buffered_cap
        )
        self.batching = ServerBatcher(policy, config.max_batch, config.max_wait_ms / 1000.0, self._expected)
        # connections past the handshake, and those of them waiting for an answer
        self._connections = 0
        self._waiting = 0
        self.warmup_ms: float | None = None
        self.bound_port: int | None = None

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata frame sent on connect: the policy's identity and the latency measured so far."""
        stats = self.stats()
        return {
            **self.static_metadata,
            **latency_metadata(self.warmup_ms, stats.p95_ms, stats.max_ms, stats.batches),
        }

    def stats(self) -> BatcherStats:
        """Policy calls and requests computed so far (the warm-up excluded), and recent call durations."""
        return self.batching.stats()

    def _expected(self) -> int:
        """For the batcher: how many more requests can arrive now (open connections without one in)."""
        return self._connections - self._waiting

    def warmup(self) -> float | None:
        """One timed policy call on a blank observation (first-call costs, and the first latency estimate)."""
        meta = self.policy.meta
        if meta.privileged:
            log.info("no warm-up: %s reads simulator state a blank observation lacks", meta.name)
            return None
        height, width = meta.image_size or (224, 224)
        obs: dict[str, Any] = {
            k: np.zeros(dims, np.float32) for k, dims in EMBODIMENTS[self.config.embodiment].state
        }
        obs.update({k: np.zeros((height, width, 3), np.uint8) for k in meta.cameras})
        obs["prompt"] = "warm-up"
        self.warmup_ms = self.batching.batcher.warm_up(PolicyRequest(obs, "warmup", 0, self.action_dim))
        log.info("warm-up call took %.0f ms", self.warmup_ms)
        return self.warmup_ms

    # ------------------------------------------------------------------ serving

    async def serve(self, ready: threading.Event | None = None, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set (or forever). `bound_port` holds the real port once listening.

        On stop: no new connections; queued requests are dropped (their connections close with 1012, so clients
        retry elsewhere or later); the running batch gets `shutdown_grace_s` to finish and answer, then is
        abandoned (the batcher's thread is a daemon, so it never delays the process's exit).
        """
        config = self.config
        async with serve(
            self._handle,
            config.host,
            config.port,
            compression=None,
            max_size=config.max_size,  # larger frames are refused from their header, before any buffering
            max_queue=1,  # openpi clients send one request at a time
            open_timeout=config.handshake_timeout_s,
            close_timeout=1,
            process_request=self._process_request,
            create_connection=lambda *args, **kwargs: AdmittedConnection(self.admission, *args, **kwargs),
        ) as server:
            self.bound_port = next(iter(server.sockets)).getsockname()[1]
            log.info("serving %s on ws://%s:%d", self.policy.meta.name, config.host, self.bound_port)
            if ready is not None:
                ready.set()
            await (server.serve_forever() if stop is None else stop.wait())
            server.server.close()  # the listening sockets; open connections stay for now
            log.info("stopping: no new connections")
            await self._drain()

    async def _drain(self) -> None:
        """Cancel queued requests; give the running batch the grace period, then its connections time to answer."""
        grace = self.config.shutdown_grace_s
        if self.batching.batcher.busy:
            log.info("waiting up to %.0f s for the running batch", grace)
        if not await self.batching.close(grace):
            log.warning("abandoned the running batch after %.0f s", grace)
            return
        deadline = time.monotonic() + ANSWER_GRACE_S
        while self._waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    @property
    def busy(self) -> bool:
        """A policy call is still running (e.g. abandoned at shutdown): the policy must not be closed under it."""
        return self.batching.batcher.busy

    def close(self) -> None:
        """Stop the batcher (its running call, if any, is abandoned)."""
        self.batching.batcher.close(grace_s=0)

    def _process_request(self, connection: AdmittedConnection, request):
        refusal = self.admission.check(connection, request)
        if refusal is not None or self.config.api_key is None:
            return refusal
        if not is_authorized(request.headers, self.config.api_key):
            log.warning("rejected a connection from %s: missing or wrong API key", connection.address)
            return connection.respond(401, "missing or wrong API key\n")
        return None

    async def _handle(self, ws: AdmittedConnection) -> None:
        log.info("connection from %s", ws.remote_address)
        packer = msgpack_numpy.Packer()
        prev_total_ms: float | None = None
        self._connections += 1
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            await ws.send(packer.pack(self.metadata))
            while True:
                # No reference to the message here: once answered, its memory goes back to the byte budget.
                total_ms = await self._reply(ws, packer, await ws.recv(), closed, prev_total_ms)
                if total_ms is None:
                    return
                prev_total_ms = total_ms
        except ConnectionClosed:
            pass
        finally:
            closed.cancel()
            self._connections -= 1
            self.batching.batcher.notify()  # one connection fewer that could join a batch
            log.info("connection from %s closed", ws.remote_address)

    async def _reply(
        self,
        ws: AdmittedConnection,
        packer: msgpack.Packer,
        message: bytes | str,
        closed: asyncio.Future,
        prev_total_ms: float | None,
    ) -> float | None:
        """Answers one message: how long that took in ms (openpi's `prev_total_ms` in the next reply), or None when
        the connection ends (a bad request, the policy's failure, the server stopping, or the client gone)."""
        start = time.perf_counter()
        self._waiting += 1
        try:
            outcome = await self._answer(message, closed)
            self.admission.release_message(ws, len(message))
            del message
            if not isinstance(outcome, Reply):
                await self._refuse(ws, outcome)
                return None
            return await self._send_reply(ws, packer, outcome, start, prev_total_ms)
        finally:
            self._waiting -= 1

    @staticmethod
    async def _send_reply(
        ws: AdmittedConnection,
        packer: msgpack.Packer,
        outcome: Reply,
        start: float,
        prev_total_ms: float | None,
    ) -> float:
        timing = {"infer_ms": (time.perf_counter() - start) * 1000.0, "batch_size": outcome.batch_size}
        if prev_total_ms is not None:
            timing["prev_total_ms"] = prev_total_ms
        reply = {
            "actions": outcome.actions,
            "server_timing": timing,
            "policy_timing": {"infer_ms": outcome.policy_ms},
        }
        await ws.send(packer.pack(reply))
        return (time.perf_counter() - start) * 1000.0

    async def _answer(
        self, message: bytes | str, closed: asyncio.Future
    ) -> Reply | Failure | Stopping | BadRequest | None:
        try:
            request, key = self.parser.parse(message)
        except BadRequest as exc:
            return exc
        assert isinstance(message, bytes)  # the parser refuses text frames
        return await self.batching.answer(request, key, message, closed)

    @staticmethod
    async def _refuse(ws: AdmittedConnection, outcome: Failure | Stopping | BadRequest | None) -> None:
        """Anything but a reply ends the connection: a bad request or the policy's failure with a text frame."""
        if isinstance(outcome, BadRequest):
            log.warning("bad request from %s: %s", ws.remote_address, outcome)
            await ws.send(f"evalkit serve: bad request: {outcome}")
            await ws.close(CloseCode.INTERNAL_ERROR, "bad request")
        elif isinstance(outcome, Failure):
            log.warning("policy failed on a request from %s:\n%s", ws.remote_address, outcome.text.rstrip())
            await ws.send(outcome.text)
            await ws.close(CloseCode.INTERNAL_ERROR, ERROR_CLOSE_REASON)
        elif isinstance(outcome, Stopping):
            await ws.close(CloseCode.SERVICE_RESTART, "server stopping")
        # None: the connection closed while its request waited


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
