"""The server's batching: requests from every connection go through one `DynamicBatcher`, and retries are
recognised so that no request is computed twice.

A request that carries our client's episode id and seed (a `RetryKey`) is identified by them and its bytes. A
retry of one that is queued or computing joins that computation (its bytes compared in full); a retry of one that
finished is answered from the last `RECENT_REPLIES` replies (its bytes compared by digest). Another observation
under the same key is computed on its own. A request whose every waiting connection closed before its batch
started is cancelled: never computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from evalkit.batching import BatcherStats, BatchFuture, DynamicBatcher
from evalkit.core.policy import Policy, PolicyRequest
from evalkit.serving.requests import RetryKey

log = logging.getLogger("evalkit.serve")

# Finished replies kept to answer retries (each a small action chunk), and episode ids of recent computations.
RECENT_REPLIES = 1024


@dataclass
class Reply:
    actions: np.ndarray
    # duration and size of the batched policy call that computed it
    policy_ms: float
    batch_size: int


@dataclass
class Failure:
    """The policy failed on this request: the traceback text sent to (only) its clients."""

    text: str


class Stopping:
    """What a request gets when the server stops before computing it."""


@dataclass(eq=False)
class _Computation:
    """One request to compute, shared by every connection waiting for it (a client and its retries)."""

    # as received: a retry must send the very same bytes
    message: bytes = field(repr=False)
    future: BatchFuture = field(repr=False)
    # settles it: the Reply, Failure or Stopping that every waiting connection gets
    outcome: asyncio.Task = field(repr=False)
    waiters: int = 0


def _digest(message: bytes) -> bytes:
    return hashlib.sha1(message, usedforsecurity=False).digest()  # the fastest of hashlib's here (~1 GB/s)


class ServerBatcher:
    def __init__(self, policy: Policy, max_batch: int, max_wait_s: float, expected: Callable[[], int]):
        """`expected()`: how many more requests can still arrive (see `DynamicBatcher`)."""
        self.batcher = DynamicBatcher(policy, max_batch, max_wait_s, expected=expected, name="evalkit-policy")
        self._running: dict[RetryKey, _Computation] = {}
        self._recent: OrderedDict[RetryKey, tuple[bytes, Reply]] = OrderedDict()
        # episode id of each recently computed request, in order; retries joined or answered from _recent
        self.computed_episodes: deque[str] = deque(maxlen=RECENT_REPLIES)
        self.retries_joined = 0
        self.retries_replayed = 0

    def stats(self) -> BatcherStats:
        return self.batcher.stats()

    async def answer(
        self, request: PolicyRequest, key: RetryKey | None, message: bytes, closed: asyncio.Future
    ) -> Reply | Failure | Stopping | None:
        """The outcome of `request`, or None when `closed` (its connection) completes first."""
        if key is not None and (reply := self._replay(key, message)) is not None:
            return reply
        computation = self._join(key, message) or self._start(request, key, message)
        if computation is None:
            return Stopping()
        computation.waiters += 1
        try:
            await asyncio.wait({computation.outcome, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            computation.waiters -= 1
        if computation.outcome.done():
            return computation.outcome.result()
        if not computation.waiters:
            computation.future.cancel()  # dropped from the queue unless its batch has started
        return None

    def _replay(self, key: RetryKey, message: bytes) -> Reply | None:
        entry = self._recent.get(key)
        if entry is None or entry[0] != _digest(message):
            return None
        self._recent.move_to_end(key)
        self.retries_replayed += 1
        log.info("answered a retry of %s (seed %d) from a finished call", *key)
        return entry[1]

    def _join(self, key: RetryKey | None, message: bytes) -> _Computation | None:
        computation = self._running.get(key) if key is not None else None
        if computation is None or computation.message != message:
            return None
        self.retries_joined += 1
        log.info("a retry of %s (seed %d) joins its running computation", *key)
        return computation

    def _start(self, request: PolicyRequest, key: RetryKey | None, message: bytes) -> _Computation | None:
        future = self.batcher.submit(request)
        if future.cancelled():  # the batcher is closed: the server is stopping
            return None
        if key is not None and key in self._running:
            key = None  # the same call with another observation: computed on its own, not recognised later
        # Hashed off the event loop while the policy computes; kept with the reply to recognise a later retry.
        digest = asyncio.ensure_future(asyncio.to_thread(_digest, message)) if key is not None else None
        outcome = asyncio.ensure_future(self._settle(future, request.episode_id, key, digest))
        computation = _Computation(message, future, outcome)
        if key is not None:
            self._running[key] = computation
        return computation

    async def _settle(
        self, future: BatchFuture, episode_id: str, key: RetryKey | None, digest: asyncio.Future | None
    ) -> Reply | Failure | Stopping:
        await _settled(future)
        if key is not None:
            self._running.pop(key, None)
        if future.cancelled():
            return Stopping()
        self.computed_episodes.append(episode_id)
        error = future.exception()
        if error is not None:
            return Failure("".join(traceback.format_exception(error)))
        reply = Reply(np.ascontiguousarray(future.result(), np.float32), future.batch_ms, future.batch_size)
        if key is not None and digest is not None:
            self._remember(key, await digest, reply)
        return reply

    def _remember(self, key: RetryKey, digest: bytes, reply: Reply) -> None:
        self._recent[key] = (digest, reply)
        self._recent.move_to_end(key)
        while len(self._recent) > RECENT_REPLIES:
            self._recent.popitem(last=False)


def _settled(future: BatchFuture) -> asyncio.Future:
    """Completes (with None) on the running loop once `future` is settled in any way, however it was settled."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: BatchFuture) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the call was abandoned at shutdown
            loop.call_soon_threadsafe(lambda: waiter.done() or waiter.set_result(None))

    future.add_done_callback(wake)
    return waiter
