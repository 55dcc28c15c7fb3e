"""DynamicBatcher with real threads and a real (small, seeded) policy. Every test waits on futures or events with
generous ceilings; none orders events with sleep. Where a test needs the policy busy, the policy blocks on a gate
the test opens; where it needs a batch of N, `max_batch=N` with a `max_wait_s` far beyond any ceiling makes the
batch go exactly when the N-th request arrives."""

from __future__ import annotations

import asyncio
import threading
from multiprocessing import Pipe
from multiprocessing.connection import wait

import numpy as np
import pytest

from evalkit.batching import DynamicBatcher, InvalidActionsError, validate_chunk
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyRequest, PolicyUnavailableError
from evalkit.policies.simple import RandomPolicy
from tests.fakes import RecordingPolicy

CEILING_S = 60.0
FOREVER_S = 3600.0  # a max wait no test outlives: a batch that goes went by another rule
ACTION_DIM = 7


def request(episode: str, seed: int = 0) -> PolicyRequest:
    return PolicyRequest({"prompt": episode}, episode, seed, ACTION_DIM)


def expected_chunk(req: PolicyRequest) -> np.ndarray:
    return RandomPolicy(ACTION_DIM).infer([req])[0].astype(np.float64)


@pytest.fixture
def make_batcher():
    made: list[DynamicBatcher] = []

    def make(policy, **kwargs) -> DynamicBatcher:
        made.append(DynamicBatcher(policy, **kwargs))
        return made[-1]

    yield make
    for batcher in made:
        if batcher.policy.gate is not None:
            batcher.policy.gate.set()
        batcher.close()


def test_concurrent_callers_get_their_own_chunks_from_one_policy_thread(make_batcher):
    policy = RecordingPolicy()
    batcher = make_batcher(policy, max_batch=4, max_wait_s=0.01)
    requests = [request(f"ep{i}", seed=i) for i in range(40)]
    futures: dict[int, object] = {}

    def caller(start: int) -> None:
        for i in range(start, 40, 8):
            futures[i] = batcher.submit(requests[i])

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CEILING_S)
    for i, req in enumerate(requests):
        chunk = futures[i].result(CEILING_S)
        assert chunk.dtype == np.float64
        np.testing.assert_array_equal(chunk, expected_chunk(req))
    assert len(policy.threads) == 1 and threading.get_ident() not in policy.threads
    assert max(len(c) for c in policy.calls) <= 4
    assert sorted(e for c in policy.calls for e in c) == sorted(r.episode_id for r in requests)
    stats = batcher.stats()
    assert stats.requests == 40 and stats.batches == len(policy.calls)
    assert stats.p95_ms is not None and stats.max_ms >= stats.p95_ms


def test_a_full_batch_goes_at_once(make_batcher):
    policy = RecordingPolicy()
    batcher = make_batcher(policy, max_batch=3, max_wait_s=FOREVER_S)
    futures = [batcher.submit(request(f"ep{i}")) for i in range(3)]
    for f in futures:
        f.result(CEILING_S)
    assert policy.calls == [["ep0", "ep1", "ep2"]]


def test_an_idle_policy_waits_for_stragglers(make_batcher):
    policy = RecordingPolicy()
    batcher = make_batcher(policy, max_batch=2, max_wait_s=FOREVER_S, expected=lambda: 1)
    first = batcher.submit(request("first"))
    second = batcher.submit(request("second"))
    first.result(CEILING_S), second.result(CEILING_S)
    assert policy.calls == [["first", "second"]]


def test_the_wait_ends_at_max_wait(make_batcher):
    policy = RecordingPolicy()
    batcher = make_batcher(policy, max_batch=16, max_wait_s=0.05, expected=lambda: 5)
    batcher.submit(request("alone")).result(CEILING_S)
    assert policy.calls == [["alone"]]


def test_the_wait_ends_when_the_hint_says_nobody_else_can_come(make_batcher):
    policy = RecordingPolicy()
    more = [1]
    batcher = make_batcher(policy, max_batch=16, max_wait_s=FOREVER_S, expected=lambda: more[0])
    future = batcher.submit(request("alone"))
    assert batcher.queued() == 1  # held: one more may come, and max_wait is far away
    more[0] = 0
    batcher.notify()
    future.result(CEILING_S)
    assert policy.calls == [["alone"]]


def test_requests_that_arrive_while_the_policy_is_busy_go_when_it_frees(make_batcher):
    policy = RecordingPolicy()
    gate = policy.block()
    more = [0]
    batcher = make_batcher(policy, max_batch=16, max_wait_s=FOREVER_S, expected=lambda: more[0])
    running = batcher.submit(request("running"))
    assert policy.entered.wait(CEILING_S)
    more[0] = 10  # many could still come: only the "arrived while busy" rule can start the next batch
    waiting = [batcher.submit(request(f"w{i}")) for i in range(3)]
    gate.set()
    for f in [running, *waiting]:
        f.result(CEILING_S)
    assert policy.calls == [["running"], ["w0", "w1", "w2"]]


def test_a_failing_request_gets_its_error_and_the_others_their_actions(make_batcher):
    policy = RecordingPolicy(fail={"bad"})
    batcher = make_batcher(policy, max_batch=3, max_wait_s=FOREVER_S)
    reqs = [request("a", 1), request("bad", 2), request("c", 3)]
    futures = [batcher.submit(r) for r in reqs]
    np.testing.assert_array_equal(futures[0].result(CEILING_S), expected_chunk(reqs[0]))
    np.testing.assert_array_equal(futures[2].result(CEILING_S), expected_chunk(reqs[2]))
    error = futures[1].exception(CEILING_S)
    assert isinstance(error, ValueError) and "cannot act on bad" in str(error)
    assert error.__context__ is None  # its traceback does not chain the batch's error
    assert policy.calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


def test_an_unavailable_policy_fails_the_whole_batch_without_reruns(make_batcher):
    policy = RecordingPolicy()
    policy.unavailable = True
    batcher = make_batcher(policy, max_batch=3, max_wait_s=FOREVER_S)
    futures = [batcher.submit(request(f"ep{i}")) for i in range(3)]
    for f in futures:
        assert isinstance(f.exception(CEILING_S), PolicyUnavailableError)
    assert policy.calls == [["ep0", "ep1", "ep2"]]


def test_a_bad_chunk_fails_its_own_request_only(make_batcher):
    bad = {"nan": np.full((4, ACTION_DIM), np.nan), "wide": np.zeros((4, ACTION_DIM + 1))}
    policy = RecordingPolicy(bad=bad)
    batcher = make_batcher(policy, max_batch=3, max_wait_s=FOREVER_S)
    ok, nan, wide = (batcher.submit(request(e)) for e in ("ok", "nan", "wide"))
    assert ok.result(CEILING_S).shape == (10, ACTION_DIM)
    assert isinstance(nan.exception(CEILING_S), InvalidActionsError)
    assert "non-finite actions for nan" in str(nan.exception(CEILING_S))
    assert f"expected (horizon, {ACTION_DIM})" in str(wide.exception(CEILING_S))
    assert policy.calls == [["ok", "nan", "wide"]]


def test_a_wrong_number_of_chunks_is_retried_alone_then_reported(make_batcher):
    class Short(RecordingPolicy):
        def infer(self, batch):
            return super().infer(batch)[1:]

    policy = Short()
    batcher = make_batcher(policy, max_batch=2, max_wait_s=FOREVER_S)
    futures = [batcher.submit(request(e)) for e in ("a", "b")]
    for f in futures:
        assert isinstance(f.exception(CEILING_S), InvalidActionsError)
        assert "returned 0 chunks for 1 observations" in str(f.exception(CEILING_S))
    assert policy.calls == [["a", "b"], ["a"], ["b"]]


def test_a_cancelled_request_is_never_computed(make_batcher):
    policy = RecordingPolicy()
    gate = policy.block()
    batcher = make_batcher(policy, max_batch=16, max_wait_s=FOREVER_S, expected=lambda: 0)
    running = batcher.submit(request("running"))
    assert policy.entered.wait(CEILING_S)
    assert not running.cancel()  # computing: too late to cancel
    abandoned, kept = batcher.submit(request("abandoned")), batcher.submit(request("kept"))
    assert abandoned.cancel()
    assert batcher.queued() == 1
    gate.set()
    kept.result(CEILING_S), running.result(CEILING_S)
    assert policy.calls == [["running"], ["kept"]]


def test_asyncio_callers_await_and_cancel(make_batcher):
    policy = RecordingPolicy()
    gate = policy.block()
    batcher = make_batcher(policy, max_batch=16, max_wait_s=FOREVER_S, expected=lambda: 0)

    async def main() -> np.ndarray:
        running = asyncio.ensure_future(asyncio.wrap_future(batcher.submit(request("running", 5))))
        await asyncio.to_thread(policy.entered.wait, CEILING_S)
        queued_future = batcher.submit(request("gone"))
        queued = asyncio.ensure_future(asyncio.wrap_future(queued_future))
        queued.cancel()  # the awaiting task gives up: the request is dropped
        await asyncio.gather(queued, return_exceptions=True)
        assert queued_future.cancelled()
        gate.set()
        return await asyncio.wait_for(running, CEILING_S)

    chunk = asyncio.run(main())
    np.testing.assert_array_equal(chunk, expected_chunk(request("running", 5)))
    assert policy.calls == [["running"]]


def test_on_batch_wakes_a_thread_waiting_on_a_pipe(make_batcher):
    reader, writer = Pipe(duplex=False)
    batcher = make_batcher(RecordingPolicy(), max_wait_s=0, on_batch=lambda: writer.send_bytes(b"1"))
    future = batcher.submit(request("ep"))
    assert wait([reader], timeout=CEILING_S) == [reader]
    assert reader.recv_bytes() == b"1" and future.done()


def test_warm_up_runs_alone_and_is_not_counted(make_batcher):
    policy = RecordingPolicy()
    batcher = make_batcher(policy, max_batch=4, max_wait_s=FOREVER_S)
    assert batcher.warm_up(request("warmup"), CEILING_S) >= 0
    assert batcher.stats().batches == 0 and batcher.stats().p95_ms is None
    futures = [batcher.submit(request(f"ep{i}")) for i in range(4)]
    for f in futures:
        f.result(CEILING_S)
    assert policy.calls == [["warmup"], ["ep0", "ep1", "ep2", "ep3"]]
    assert batcher.stats().batches == 1 and batcher.stats().requests == 4


def test_close_cancels_queued_requests_and_gives_the_running_batch_its_grace(make_batcher):
    policy = RecordingPolicy()
    gate = policy.block()
    batcher = make_batcher(policy, max_batch=16, max_wait_s=FOREVER_S, expected=lambda: 0)
    running = batcher.submit(request("running"))
    assert policy.entered.wait(CEILING_S)
    queued = batcher.submit(request("queued"))
    assert not batcher.close(grace_s=0.01)  # the running call outlives the grace
    assert batcher.busy and queued.cancelled()
    assert batcher.submit(request("late")).cancelled()
    gate.set()
    running.result(CEILING_S)
    assert policy.calls == [["running"]]


def test_close_of_an_idle_batcher_returns_at_once(make_batcher):
    batcher = make_batcher(RecordingPolicy())
    assert batcher.close(grace_s=CEILING_S) and not batcher.busy


def test_bad_settings_are_refused():
    with pytest.raises(EvalkitError, match="max batch"):
        DynamicBatcher(RecordingPolicy(), max_batch=0)
    with pytest.raises(EvalkitError, match="max wait"):
        DynamicBatcher(RecordingPolicy(), max_wait_s=float("nan"))


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        (np.zeros((5, 6)), "shape"),
        (np.zeros((0, 7)), "shape"),
        (np.zeros(7), "shape"),
        (np.full((5, 7), np.inf), "non-finite"),
        (np.array([["a"] * 7]), "non-finite"),
        ([[0.0] * 7, [0.0] * 3], "numpy cannot read"),
    ],
)
def test_validate_chunk_refuses(chunk, message):
    with pytest.raises(InvalidActionsError, match=message):
        validate_chunk(chunk, 7, "e")


def test_validate_chunk_returns_float64():
    assert validate_chunk(np.zeros((5, 7), np.float32), 7, "e").dtype == np.float64
