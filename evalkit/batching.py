"""`DynamicBatcher`: gathers policy requests from many callers into batched `policy.infer` calls.

One batcher serves the local runner, each Ray policy replica and the websocket server, so all three batch,
isolate failures and validate actions the same way.

- **One thread.** A daemon thread runs every policy call: the policy is never called from two threads, and an
  abandoned call never keeps the process alive. `submit(request)` is thread-safe and returns a
  `concurrent.futures.Future` of the validated action chunk. asyncio code awaits it with `asyncio.wrap_future`
  (cancelling the awaiting task cancels the request); threaded code adds a done-callback, or passes `on_batch`,
  which the thread calls after settling each batch (e.g. to write to a pipe a `multiprocessing.connection.wait`
  loop watches).
- **Flush rule.** A batch starts at once when `max_batch` requests wait, and requests that arrived while the
  policy was busy go at once when it frees. A request that finds the policy idle waits at most `max_wait_s` for
  others to join it, and stops waiting early when the optional `expected()` hint (how many more requests can
  still arrive: e.g. open connections without a request in, busy env workers not yet waiting) says none can.
  Call `notify()` when what `expected()` returns drops, so the batch goes without waiting out `max_wait_s`.
- **Failure isolation.** When a batched call raises (or returns the wrong number of chunks), each request of the
  batch is run again alone, so only the request that fails gets the exception (raised outside the batch's
  `except` block, so its traceback does not chain another request's error). A `PolicyUnavailableError` (the
  policy is gone) fails every request of the batch at once, without re-runs.
- **Validation.** Every chunk is checked by `validate_chunk`; a bad chunk fails its own request only, with an
  `InvalidActionsError`.
- **Cancellation.** A request whose future is cancelled before its batch starts is dropped, never computed
  (`Future.cancel()` returns False once it is computing). Cancelled requests stay queued until a batch is formed,
  where each request is checked once.
- **Cost.** One lock acquisition per `submit`, two per batch (forming and counting it) and one per wake-up. The
  thread sleeps on a `queue.SimpleQueue` (its blocking `get` holds neither lock nor GIL) and is woken only when a
  request may let a batch go: the first one queued, the one that fills a batch, or one after which `expected()`
  says nobody else can come. A wake-up costs a context switch and a GIL hand-over, far more than the rest of the
  batcher (`bench/bench_batching.py`).
- **Counters.** `stats()`: batches, requests, and the p95/max duration of the last `LATENCY_WINDOW` calls. Each
  request's future (a `BatchFuture`) also says the size and duration of the call that settled it.
- **Close.** `close(grace_s)` cancels queued requests and gives the running batch `grace_s` to finish.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Policy, PolicyRequest, PolicyUnavailableError

log = logging.getLogger("evalkit.batching")

LATENCY_WINDOW = 200  # policy calls over which stats() reports p95 and max latency
CLOSE_GRACE_S = 5.0  # how long close() waits for the running batch by default


class InvalidActionsError(EvalkitError):
    """The policy broke its contract: a chunk of the wrong shape, non-numeric or non-finite, or the wrong number of
    chunks. Unlike an exception the policy raises, this is the policy's bug, never the observation's."""


def validate_chunk(chunk: object, action_dim: int, episode_id: str) -> np.ndarray:
    """One action chunk as float64, shaped (horizon, action_dim), numeric and finite; else InvalidActionsError."""
    try:
        arr = np.asarray(chunk)
    except (TypeError, ValueError) as exc:  # ragged nesting, objects numpy cannot hold
        raise InvalidActionsError(
            f"policy returned actions numpy cannot read for {episode_id}: {exc}"
        ) from None
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != action_dim:
        raise InvalidActionsError(
            f"policy returned actions of shape {arr.shape} for {episode_id}; expected (horizon, {action_dim})"
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise InvalidActionsError(f"policy returned non-finite actions for {episode_id}")
    return arr.astype(np.float64)


@dataclass(frozen=True)
class BatcherStats:
    """Policy calls so far (warm-up excluded), requests computed, and recent call durations in ms."""

    batches: int
    requests: int
    p95_ms: float | None
    max_ms: float | None


class BatchFuture(Future):
    """A request's future action chunk; once settled, `batch_size` and `batch_ms` describe the policy call that
    settled it (its failure-isolation re-runs included), e.g. for a server's timing fields."""

    batch_size = 0
    batch_ms = 0.0


@dataclass(eq=False)
class _Item:
    request: PolicyRequest
    future: BatchFuture = field(repr=False)
    arrived: float
    # False for a warm-up call: computed alone and left out of the counters
    counted: bool = True


Outcome = np.ndarray | BaseException


class DynamicBatcher:
    def __init__(
        self,
        policy: Policy,
        max_batch: int = 16,
        max_wait_s: float = 0.005,
        *,
        expected: Callable[[], int] | None = None,
        on_batch: Callable[[], None] | None = None,
        name: str = "evalkit-policy",
    ):
        """`expected()` is called with the batcher's lock held, from `submit` and from the batcher's thread: it must
        be cheap, must not block and must not call the batcher. `on_batch()` is called from the batcher's thread
        after each batch is settled."""
        if max_batch < 1:
            raise EvalkitError(f"max batch must be at least 1, got {max_batch}")
        if not max_wait_s >= 0:
            raise EvalkitError(f"max wait must not be negative, got {max_wait_s}")
        self.policy = policy
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._expected = expected
        self._on_batch = on_batch
        # Cancelled requests stay queued until a batch is formed (each request is checked once, when taken).
        self._queue: deque[_Item] = deque()
        self._lock = threading.Lock()
        # what the thread blocks on between batches: a token (None) whenever the flush rule may now let a batch go
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._closed = False
        self._busy = False
        self._last_end = float("-inf")  # when the last policy call returned (monotonic; the thread's own)
        self._batches = 0
        self._requests = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- callers -------------------------------------------------------------------------------------------
    def submit(self, request: PolicyRequest) -> BatchFuture:
        """The future action chunk (float64, validated) of `request`; cancelled at once if the batcher is closed."""
        return self._enqueue(request, counted=True)

    def warm_up(self, request: PolicyRequest, timeout_s: float | None = None) -> float:
        """One policy call on `request` alone, on the batcher's thread, left out of the counters; returns its
        duration in ms (queueing included) or raises what the call raised."""
        start = time.perf_counter()
        self._enqueue(request, counted=False).result(timeout_s)
        return (time.perf_counter() - start) * 1000.0

    def notify(self) -> None:
        """Re-check `expected()` now (call when it drops, e.g. a connection closed or a worker went idle)."""
        self._wake.put(None)

    @property
    def busy(self) -> bool:
        """A policy call is running (e.g. still, after `close`): the policy must not be closed under it."""
        return self._busy

    def queued(self) -> int:
        """Requests waiting for a batch (cancelled ones excluded)."""
        with self._lock:
            return self._live()

    def stats(self) -> BatcherStats:
        with self._lock:
            lat = np.array(self._latencies) if self._latencies else None
            return BatcherStats(
                batches=self._batches,
                requests=self._requests,
                p95_ms=None if lat is None else float(np.percentile(lat, 95)),
                max_ms=None if lat is None else float(lat.max()),
            )

    def close(self, grace_s: float = CLOSE_GRACE_S) -> bool:
        """Cancel queued requests and stop; True if the running batch (if any) finished within `grace_s`."""
        with self._lock:
            self._closed = True
            queued, self._queue = list(self._queue), deque()
        self._wake.put(None)
        for item in queued:
            item.future.cancel()
        if threading.current_thread() is self._thread:  # closed from a callback: the batch has ended
            return True
        self._thread.join(grace_s)
        return not self._thread.is_alive()

    def _enqueue(self, request: PolicyRequest, counted: bool) -> BatchFuture:
        """Queue the request; the thread is woken only when this request may start a batch: it is the first one
        queued (the thread may be idle), it fills a batch, or `expected()` says nobody else can come."""
        future = BatchFuture()
        item = _Item(request, future, time.monotonic(), counted)
        with self._lock:
            if self._closed:
                future.cancel()
                return future
            waiting = self._queue
            waiting.append(item)
            wake = len(waiting) == 1 or len(waiting) >= self.max_batch or self._more_expected() <= 0
        if wake:
            self._wake.put(None)
        return future

    # -- the thread ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._compute(batch)

    def _live(self) -> int:
        """Queued requests not cancelled (the lock is held)."""
        return sum(1 for item in self._queue if not item.future.cancelled())

    def _next_batch(self) -> list[_Item] | None:
        """Blocks until a batch is due by the flush rule; None once closed. Only requests that found the policy
        idle wait for others (a warm-up waits for nobody)."""
        deadline: float | None = None
        while True:
            timeout = None
            with self._lock:
                if self._closed:
                    return None
                waiting = self._queue
                # cancelled requests at the head are dropped, so that the wait is a live request's
                while waiting and waiting[0].future.cancelled():
                    waiting.popleft()
                if not waiting:
                    deadline = None
                else:
                    if deadline is None:
                        head = waiting[0]
                        waits = head.counted and head.arrived > self._last_end
                        deadline = head.arrived + self.max_wait_s if waits else head.arrived
                    timeout = deadline - time.monotonic()
                    if timeout <= 0 or self._full() or self._more_expected() <= 0:
                        return self._take()
            # blocks without the lock (and the GIL) held until submit, notify or close says to look again
            with contextlib.suppress(queue.Empty):
                self._wake.get(timeout=timeout)

    def _full(self) -> bool:
        """`max_batch` live requests are queued (cancelled ones are looked for only when enough are queued)."""
        return len(self._queue) >= self.max_batch and self._live() >= self.max_batch

    def _more_expected(self) -> int:
        if self._expected is None:
            return 1
        try:
            return self._expected()
        except Exception:  # a broken hint must not stop the batcher: wait out max_wait_s instead
            log.exception("the batcher's expected() hint raised")
            return 1

    def _take(self) -> list[_Item]:
        """Up to `max_batch` requests, oldest first, each marked running (the lock is held); a warm-up alone."""
        batch: list[_Item] = []
        waiting = self._queue
        while waiting and len(batch) < self.max_batch:
            item = waiting[0]
            if batch and not (item.counted and batch[0].counted):
                break
            waiting.popleft()
            if item.future.set_running_or_notify_cancel():
                batch.append(item)
        self._busy = bool(batch)
        return batch

    def _compute(self, batch: list[_Item]) -> None:
        if not batch:  # every request taken had just been cancelled
            return
        start = time.perf_counter()
        outcomes = self._infer_isolated([item.request for item in batch])
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self._last_end = time.monotonic()
        with self._lock:
            self._busy = False
            if batch[0].counted:
                self._batches += 1
                self._requests += len(batch)
                self._latencies.append(elapsed_ms)
        for item, outcome in zip(batch, outcomes, strict=True):
            item.future.batch_size, item.future.batch_ms = len(batch), elapsed_ms
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)
        if self._on_batch is not None:
            try:
                self._on_batch()
            except Exception:  # the callback's own bug: logged, and the batcher keeps serving
                log.exception("the batcher's on_batch callback raised")

    def _infer_isolated(self, requests: Sequence[PolicyRequest]) -> list[Outcome]:
        """One batched call; if it fails, each request alone (a PolicyUnavailableError fails them all at once)."""
        failure = self._infer(requests)
        if not isinstance(failure, BaseException):
            return failure
        if (
            len(requests) == 1
            or not isinstance(failure, Exception)
            or isinstance(failure, PolicyUnavailableError)
        ):
            return [failure] * len(requests)
        outcomes: list[Outcome] = []
        for request in requests:
            gone = next((o for o in outcomes if isinstance(o, PolicyUnavailableError)), None)
            alone = gone if gone is not None else self._infer([request])
            outcomes.append(alone if isinstance(alone, BaseException) else alone[0])
        return outcomes

    def _infer(self, requests: Sequence[PolicyRequest]) -> list[Outcome] | BaseException:
        """The validated chunks of one policy call, or what it raised (a bad chunk fails its own request only)."""
        try:
            chunks = list(self.policy.infer(list(requests)))
        except BaseException as exc:  # handed to the requests' futures
            return exc
        if len(chunks) != len(requests):
            return InvalidActionsError(
                f"policy returned {len(chunks)} chunks for {len(requests)} observations"
            )
        outcomes: list[Outcome] = []
        for request, chunk in zip(requests, chunks, strict=True):
            try:
                outcomes.append(validate_chunk(chunk, request.action_dim, request.episode_id))
            except InvalidActionsError as exc:
                outcomes.append(exc)
        return outcomes
