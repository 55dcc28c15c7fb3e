"""`--policy ws://host:port`: a policy served over openpi's websocket protocol (openpi's `serve_policy.py`,
`evalkit serve`, or anything else that speaks it).

openpi's server answers one request at a time per connection, so a batch is sent as one request per item over a
small pool of connections, concurrently, from an asyncio event loop on a background thread. Each request has a
timeout; a dropped connection or a timeout is retried on a fresh connection a bounded number of times, after which
`PolicyUnavailableError` tells the runner to record the waiting episodes as `error` (a re-run resumes them).
A text frame from the server is a server-side error (`RemotePolicyError`, not retried).

Identity: the policy's `PolicyMeta` is the served policy's, from the server's metadata (`evalkit serve` sends
`policy`, `fingerprint` and `embodiment`): name `remote:<served name>` (e.g. `remote:pi05`), fingerprint the served
fingerprint, so that a server restarted with another policy on the same address is a different policy. A server
that sends no identity (openpi's own, metadata `{}`) is named `remote:<url>` with fingerprint `remote:<url>`.
A server that says it serves another embodiment than the suite's is refused on connect, before any episode.

Timeout: a fixed `timeout_s`, or (None) sized from the server's measured latency (`latency_ms` in its metadata,
refreshed on every new connection): max(`MIN_TIMEOUT_S`, `TIMEOUT_FACTOR` x the slowest of the warm-up call and the
recent calls). A request waits for the batch running when it arrives, then for its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyOptions, PolicyRequest, PolicyUnavailableError
from evalkit.wire import DEFAULT_MAX_SIZE, EPISODE_ID_FIELD, SEED_FIELD
from evalkit.wire.auth import auth_headers, key_from_environment
from evalkit.wire.metadata import (
    describe_identity,
    metadata_str,
    served_identity,
    served_latency_s,
    served_policy_meta,
)

log = logging.getLogger("evalkit.remote")

__all__ = ["PolicyUnavailableError", "RemotePolicy", "RemotePolicyError", "make_remote_policy"]

MIN_TIMEOUT_S = 60.0
TIMEOUT_FACTOR = 4.0


class RemotePolicyError(EvalkitError):
    """The server answered, but with an error (a text frame) or with something that is not a valid action chunk."""


class _Rejected(Exception):
    """Internal: a failure that retrying cannot fix."""

    def __init__(self, error: EvalkitError):
        self.error = error


class RemotePolicy:
    def __init__(
        self,
        url: str,
        *,
        embodiment: str,
        action_dim: int,
        api_key: str | None = None,
        timeout_s: float | None = None,
        min_timeout_s: float = MIN_TIMEOUT_S,
        retries: int = 3,
        backoff_s: float = 1.0,
        max_connections: int = 16,
        max_size: int = DEFAULT_MAX_SIZE,
    ):
        if not url.startswith(("ws://", "wss://")):
            raise EvalkitError(f"remote policy address must start with ws:// or wss://, got {url!r}")
        if embodiment not in EMBODIMENTS:
            raise EvalkitError(f"unknown embodiment {embodiment!r} for a remote policy")
        if (timeout_s is not None and timeout_s <= 0) or min_timeout_s <= 0:
            raise EvalkitError(f"--policy-timeout must be positive, got {timeout_s}")
        if retries < 0 or max_connections < 1:
            raise EvalkitError("remote policy needs retries >= 0 and max_connections >= 1")
        self.url = url
        self.embodiment = embodiment
        self.action_dim = action_dim
        self.fixed_timeout_s = timeout_s
        self.min_timeout_s = min_timeout_s
        self.timeout_s = timeout_s if timeout_s is not None else min_timeout_s  # sized on each connect
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_size = max_size
        self._headers = auth_headers(api_key)
        self._max_connections = max_connections
        self._idle: list[Any] = []  # open connections not in use (only touched from the loop thread)
        self._open: set[Any] = set()
        self._slots: asyncio.Semaphore | None = None
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="evalkit-remote", daemon=True)
        self._thread.start()
        try:
            self.metadata: dict = self._run(self._first_connection())
            self._check_served(self.metadata)
        except BaseException:
            self.close()
            raise
        self.meta = served_policy_meta(self.metadata, url, embodiment, action_dim)
        log.info(
            "policy server %s serves %s (fingerprint %s, %s); request timeout %.0f s",
            url,
            metadata_str(self.metadata, "policy") or "an unnamed policy",
            self.meta.fingerprint,
            self.meta.embodiment or "embodiment not stated",
            self.timeout_s,
        )

    # ------------------------------------------------------------------ public

    def infer(self, batch: Sequence[PolicyRequest]) -> list[np.ndarray]:
        if self._closed:
            raise EvalkitError(f"remote policy {self.url} is closed")
        return self._run(self._infer_all(list(batch)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop.is_running():
            with contextlib.suppress(Exception):  # closing is best effort: the server may be gone
                asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> RemotePolicy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_served(self, metadata: dict) -> None:
        """Refuse a server that serves another embodiment, or fewer action dims, than the suite needs."""
        served = metadata_str(metadata, "embodiment")
        if served is not None and served != self.embodiment:
            raise EvalkitError(
                f"policy server {self.url} serves {served} observations but the suite is {self.embodiment}: "
                f"start it with `evalkit serve --embodiment {self.embodiment}`"
            )
        dims = metadata.get("action_dim")
        if isinstance(dims, int) and not isinstance(dims, bool) and dims < self.action_dim:
            raise EvalkitError(
                f"policy server {self.url} returns {dims}-dim actions but the suite executes {self.action_dim}"
            )

    def _size_timeout(self, metadata: dict) -> None:
        """From a fresh metadata frame: the per-request timeout, unless fixed by the caller."""
        if self.fixed_timeout_s is not None:
            return
        measured_s = served_latency_s(metadata)
        timeout = max(self.min_timeout_s, TIMEOUT_FACTOR * measured_s) if measured_s else self.min_timeout_s
        if timeout > self.timeout_s:
            log.info(
                "policy server %s takes up to %.1f s per call: request timeout %.0f s",
                self.url,
                measured_s,
                timeout,
            )
        self.timeout_s = timeout

    # ------------------------------------------------------------------ event-loop side

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _first_connection(self) -> dict:
        conn, metadata = await self._with_retries(self._connect, "connect")
        self._idle.append(conn)
        return metadata

    async def _connect(self):
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, InvalidURI

        from evalkit.wire import msgpack_numpy

        try:
            conn = await connect(
                self.url,
                compression=None,
                max_size=self.max_size,
                additional_headers=self._headers,
                open_timeout=self.timeout_s,
                ping_interval=None,  # openpi's server blocks its loop while inferring; rely on request timeouts
                close_timeout=2,
            )
        except InvalidURI as exc:
            raise _Rejected(EvalkitError(f"invalid policy server address {self.url!r}: {exc}")) from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise _Rejected(
                    EvalkitError(
                        f"policy server {self.url} refused the connection (HTTP {status}): check --api-key"
                    )
                ) from None
            raise
        self._open.add(conn)
        try:
            first = await _within(conn.recv(), self.timeout_s, "waiting for its metadata")
            if isinstance(first, str):
                raise _Rejected(
                    RemotePolicyError(f"policy server {self.url} sent an error on connect: {first}")
                )
            try:
                metadata = msgpack_numpy.unpackb(first)
            except msgpack_numpy.WireFormatError as exc:
                raise _Rejected(
                    RemotePolicyError(f"policy server {self.url} sent unreadable metadata: {exc}")
                ) from None
            if not isinstance(metadata, dict):
                raise _Rejected(
                    RemotePolicyError(f"policy server {self.url} sent metadata that is not a map")
                )
        except BaseException:
            await self._discard(conn)
            raise
        self._size_timeout(metadata)
        return conn, metadata

    async def _with_retries(self, attempt_fn, what: str, *args):
        """Run `attempt_fn`, retrying transport failures (refused, dropped, timed out) with backoff."""
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return await attempt_fn(*args)
            except _Rejected as exc:
                raise exc.error from None
            except ConnectionClosed as exc:
                if exc.sent is not None and exc.sent.code == 1009:
                    raise RemotePolicyError(
                        f"policy server {self.url} sent a reply over the {self.max_size}-byte limit"
                    ) from None
                last = exc
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                last = exc
            log.warning(
                "%s %s %s (attempt %d/%d)",
                what,
                self.url,
                self._describe(last),
                attempt + 1,
                self.retries + 1,
            )
        reason = self._describe(last)
        raise PolicyUnavailableError(
            f"policy server {self.url} unavailable ({what} failed {self.retries + 1} times; last: {reason})"
        )

    def _describe(self, exc: BaseException | None) -> str:
        if isinstance(exc, TimeoutError):
            return str(exc) or "timed out"
        return f"failed: {type(exc).__name__}: {exc}" if str(exc) else f"failed: {type(exc).__name__}"

    async def _infer_all(self, batch: list[PolicyRequest]) -> list[np.ndarray]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        results = await asyncio.gather(*(self._infer_one(req) for req in batch), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            unavailable = [e for e in errors if isinstance(e, PolicyUnavailableError)]
            raise (unavailable or errors)[0]
        return results

    async def _infer_one(self, request: PolicyRequest) -> np.ndarray:
        from evalkit.wire import msgpack_numpy

        obs = dict(request.obs)
        obs[SEED_FIELD] = int(request.seed)
        obs[EPISODE_ID_FIELD] = request.episode_id
        try:
            payload = msgpack_numpy.packb(obs)
        except (TypeError, ValueError) as exc:
            raise EvalkitError(f"cannot send the observation of {request.episode_id}: {exc}") from None
        async with self._slots:
            reply = await self._with_retries(self._round_trip, "request", payload)
        try:
            response = msgpack_numpy.unpackb(reply)
        except msgpack_numpy.WireFormatError as exc:
            raise RemotePolicyError(f"policy server {self.url} sent an unreadable reply: {exc}") from None
        return self._actions(response, request.episode_id)

    async def _round_trip(self, payload: bytes) -> bytes:
        if self._idle:
            conn = self._idle.pop()
        else:
            conn, metadata = await self._connect()
            now, was = served_identity(metadata), served_identity(self.metadata)
            if now != was:
                await self._discard(conn)
                raise _Rejected(
                    RemotePolicyError(
                        f"policy server {self.url} now serves a different policy ({describe_identity(now)}; "
                        f"was {describe_identity(was)})"
                    )
                )

        async def exchange():
            await conn.send(payload)  # under the timeout too: a stuck peer can stop reading
            return await conn.recv()

        try:
            reply = await _within(exchange(), self.timeout_s)
        except BaseException:
            await self._discard(conn)  # its state is unknown (a reply may still arrive): never reuse it
            raise
        if isinstance(reply, str):
            await self._discard(conn)  # the server closes the connection after an error frame
            raise _Rejected(
                RemotePolicyError(f"policy server {self.url} failed: {_last_line(reply)}\n{reply}")
            )
        self._idle.append(conn)
        return reply

    def _actions(self, response: Any, episode_id: str) -> np.ndarray:
        where = f"policy server {self.url} (episode {episode_id})"
        if not isinstance(response, dict) or "actions" not in response:
            raise RemotePolicyError(f"{where} replied without an 'actions' entry")
        actions = response["actions"]
        if not isinstance(actions, np.ndarray) or actions.dtype.kind not in "fiu":
            raise RemotePolicyError(f"{where} sent actions that are not a numeric array")
        if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] < self.action_dim:
            raise RemotePolicyError(
                f"{where} sent actions of shape {actions.shape}; expected (horizon, >= {self.action_dim})"
            )
        actions = np.array(actions[:, : self.action_dim], dtype=np.float32)  # a writable copy
        if not np.isfinite(actions).all():
            raise RemotePolicyError(f"{where} sent non-finite actions")
        return actions

    async def _discard(self, conn) -> None:
        self._open.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 2)

    async def _close_all(self) -> None:
        for conn in list(self._open):
            await self._discard(conn)


async def _within(awaitable, timeout_s: float, doing: str = ""):
    """`asyncio.wait_for`, whose TimeoutError says how long it waited."""
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout_s:g} s{' ' + doing if doing else ''}") from None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(empty error)"


def make_remote_policy(options: PolicyOptions) -> RemotePolicy:
    """`options.api_key` None: from EVALKIT_API_KEY. `options.timeout_s` None: sized from the server's latency."""
    return RemotePolicy(
        options.name,
        embodiment=options.embodiment,
        action_dim=options.action_dim or EMBODIMENTS[options.embodiment].action_dim,
        api_key=options.api_key if options.api_key is not None else key_from_environment(),
        timeout_s=options.timeout_s,
    )
