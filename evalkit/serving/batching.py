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
from concurrent.futures import CancelledError
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

    episode_id: str
    key: RetryKey | None
    # as received: a retry must send the very same bytes
    message: bytes = field(repr=False)
    future: BatchFuture = field(repr=False)
    # on the event loop: the Reply, Failure or Stopping that every waiting connection gets
    outcome: asyncio.Future = field(repr=False)
    # the message's digest, hashed off the event loop while the policy computes (keyed requests only)
    digest: asyncio.Future | None = field(default=None, repr=False)
    waiters: int = 0


def _digest(message: bytes) -> bytes:
    # sha1: the fastest of hashlib's here (~1 GB/s); it tells retries apart, it guards no secret
    return hashlib.sha1(message, usedforsecurity=False).digest()


class ServerBatcher:
    def __init__(self, policy: Policy, max_batch: int, max_wait_s: float, expected: Callable[[], int]):
        """`expected()`: how many more requests can still arrive (see `DynamicBatcher`)."""
        self.batcher = DynamicBatcher(
            policy, max_batch, max_wait_s, expected=expected, on_batch=self._wake, name="evalkit-policy"
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        # submitted and not yet settled on the loop; those of them our client can retry, by key
        self._unsettled: set[_Computation] = set()
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
        if not computation.waiters and computation.future.cancel():
            self._settle(computation)  # dropped from the queue: never computed
        return None

    async def close(self, grace_s: float) -> bool:
        """Cancel queued requests (their connections get Stopping); True if the running batch finished in time."""
        finished = await asyncio.to_thread(self.batcher.close, grace_s)
        self._collect()
        return finished

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
        self._loop = loop = asyncio.get_running_loop()
        future = self.batcher.submit(request)
        if future.cancelled():  # the batcher is closed: the server is stopping
            return None
        if key is not None and key in self._running:
            key = None  # the same call with another observation: computed on its own, not recognised later
        computation = _Computation(request.episode_id, key, message, future, loop.create_future())
        self._unsettled.add(computation)
        if key is not None:
            computation.digest = asyncio.ensure_future(asyncio.to_thread(_digest, message))
            self._running[key] = computation
        return computation

    def _wake(self) -> None:
        """The batcher's thread, after each batch: one wake-up of the loop settles the whole batch."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the call was abandoned at shutdown
                loop.call_soon_threadsafe(self._collect)

    def _collect(self) -> None:
        for computation in [c for c in self._unsettled if c.future.done()]:
            self._settle(computation)

    def _settle(self, computation: _Computation) -> None:
        self._unsettled.discard(computation)
        if computation.key is not None:
            self._running.pop(computation.key, None)
        computation.outcome.set_result(self._outcome(computation))

    def _outcome(self, computation: _Computation) -> Reply | Failure | Stopping:
        future = computation.future
        try:
            actions = future.result(timeout=0)
        except CancelledError:
            return Stopping()
        except (
            BaseException
        ) as error:  # the policy's (or its chunk's) failure, for this request's clients only
            self.computed_episodes.append(computation.episode_id)
            return Failure("".join(traceback.format_exception(error)))
        self.computed_episodes.append(computation.episode_id)
        reply = Reply(np.ascontiguousarray(actions, np.float32), future.batch_ms, future.batch_size)
        if computation.key is not None and computation.digest is not None:
            key = computation.key
            computation.digest.add_done_callback(lambda digest: self._remember(key, digest.result(), reply))
        return reply

    def _remember(self, key: RetryKey, digest: bytes, reply: Reply) -> None:
        self._recent[key] = (digest, reply)
        self._recent.move_to_end(key)
        while len(self._recent) > RECENT_REPLIES:
            self._recent.popitem(last=False)
