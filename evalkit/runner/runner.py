"""The runner: schedules episodes over env workers, serves their observations to the policy in dynamic batches,
and stores every episode the moment it ends.

Data flows one way: suite -> env workers -> runner -> policy -> runner -> store. The runner knows no model
internals (only the `Policy` protocol) and no simulator internals (only what workers send).

The scheduling loop never waits on the policy: inference runs in one thread (`InferenceThread`), and
observations that arrive meanwhile are answered together in the next batch, as soon as the current one returns.
A watchdog kills a worker that makes no progress for `episode_timeout_s` and retries its episode.
`RayRunner` (evalkit.runner.ray_runner) runs the same bookkeeping with Ray actors.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.batching import validate_chunk
from evalkit.core.episode import EpisodeResult, EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Observation, Policy, PolicyRequest, PolicyUnavailableError
from evalkit.core.protocol import SuiteSpec
from evalkit.rundir.store import EpisodeStore
from evalkit.runner.config import EvalConfig
from evalkit.runner.worker import save_actions, worker_main

POLL_S = 1.0
STOP_GRACE_S = 2.0  # how long stopped workers get to exit before they are killed


@dataclass
class Worker:
    process: mp.process.BaseProcess
    conn: Connection
    episode: EpisodeSpec | None = None
    last_task: tuple[str, int] | None = None
    deadline: float | None = (
        None  # the worker owes a message by then (None: it waits on the policy, or is idle)
    )


@dataclass
class Tally:
    done: int = 0
    successes: int = 0
    errors: int = 0
    results: list[EpisodeResult] = field(default_factory=list)


@dataclass
class Pending:
    """An observation waiting for the policy: who asked, for which episode, and which call of it."""

    worker: Any
    spec: EpisodeSpec
    call: int
    obs: Observation

    def request(self, action_dim: int) -> PolicyRequest:
        return PolicyRequest(self.obs, self.spec.episode_id, self.spec.request_seed(self.call), action_dim)


class InferenceThread:
    """Runs `policy.infer` off the scheduling loop, one batch at a time; `ready` wakes `wait()` when it returns."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.ready, self._signal = mp.Pipe(duplex=False)
        self.batch: list[Pending] | None = None  # in flight
        self._jobs: queue.Queue[list[PolicyRequest] | None] = queue.Queue()
        self._outcome: list[np.ndarray] | BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="evalkit-inference", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self.batch is not None

    def submit(self, batch: list[Pending], requests: list[PolicyRequest]) -> None:
        assert self.batch is None
        self.batch = batch
        self._jobs.put(requests)

    def take(self) -> tuple[list[Pending], list[np.ndarray] | BaseException]:
        """The finished batch and its chunks (or the exception it raised); call when `ready` is readable."""
        self.ready.recv_bytes()
        batch, outcome = self.batch, self._outcome
        assert batch is not None and outcome is not None
        self.batch, self._outcome = None, None
        return batch, outcome

    def close(self) -> None:
        """Stop after the batch in flight (the thread is a daemon: an interrupted run does not wait for it)."""
        self._jobs.put(None)

    def _loop(self) -> None:
        while (requests := self._jobs.get()) is not None:
            try:
                self._outcome = list(self.policy.infer(requests))
            except BaseException as exc:  # handed to the scheduling loop, which decides
                self._outcome = exc
            with contextlib.suppress(OSError):
                self._signal.send_bytes(b"1")


@contextlib.contextmanager
def stop_on_interrupt(kill_now: Any):
    """Ctrl-C: the first press prints "stopping…" at once and raises KeyboardInterrupt (the run winds down and
    keeps what finished); a second press calls `kill_now()` and exits at once with status 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    presses = 0

    def handler(signum: int, frame: object) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            print("\nevalkit: stopping… (Ctrl-C again to exit at once)", file=sys.stderr, flush=True)
            raise KeyboardInterrupt
        with contextlib.suppress(Exception):
            kill_now()
        print("evalkit: exited at once; finished episodes are kept", file=sys.stderr, flush=True)
        import os

        os._exit(130)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Runner:
    def __init__(
        self,
        config: EvalConfig,
        suites: list[SuiteSpec],
        policy: Policy,
        store: EpisodeStore,
        run_dir: Path,
        progress: bool = True,
    ):
        self.config = config
        self.suites = {s.name: s for s in suites}
        self.policy = policy
        self.store = store
        self.run_dir = run_dir
        self.progress = progress
        self.action_dim = suites[0].protocol.action_dim
        self.ctx = mp.get_context("spawn")
        self.workers: list[Worker] = []
        self.attempts: dict[EpisodeSpec, int] = {}
        self.stop_error: PolicyUnavailableError | None = None
        self.tally = Tally()
        self.todo: deque[EpisodeSpec] = deque()
        self.pending: list[Pending] = []
        self.first_of_task: dict[tuple[str, int], int] = {}
        self.bar = None

    # -- workers -------------------------------------------------------------------------------------------
    def _start_worker(self) -> Worker:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(
            target=worker_main,
            args=(
                child,
                self.suites,
                str(self.run_dir),
                bool(self.policy.meta.cameras),
                self.policy.meta.privileged,
                self.config.video,
                self.config.save_actions,
            ),
            daemon=True,
        )
        # Started with SIGINT ignored (inherited through exec), so a Ctrl-C while it boots prints no traceback.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            process.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        child.close()
        return Worker(process, parent)

    def _stop_workers(self, interrupted: bool) -> None:
        """Idle workers get "stop"; after an interrupt, workers are terminated at once (SIGTERM, then SIGKILL)."""
        for worker in self.workers:
            with contextlib.suppress(OSError):
                if interrupted:
                    worker.process.terminate()
                else:
                    worker.conn.send(("stop",))
        deadline = time.monotonic() + (STOP_GRACE_S if interrupted else 10.0)
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2)
            worker.conn.close()
        self.workers = []

    def kill_now(self) -> None:
        """For a second Ctrl-C: kill every worker without waiting."""
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.process.kill()

    # -- bookkeeping shared with RayRunner ------------------------------------------------------------------
    def _begin(self, episodes: list[EpisodeSpec], all_episodes: list[EpisodeSpec]) -> None:
        for spec in all_episodes:
            key = (spec.suite, spec.task_id)
            self.first_of_task[key] = min(self.first_of_task.get(key, spec.init_state), spec.init_state)
        self.todo = deque(episodes)
        self.bar = self._progress_bar(len(episodes))

    def _next_episode(self, last_task: tuple[str, int] | None) -> EpisodeSpec:
        """Prefer an episode of the worker's last task, so its simulator is reused."""
        if last_task is not None:
            for i, spec in enumerate(self.todo):
                if (spec.suite, spec.task_id) == last_task:
                    del self.todo[i]
                    return spec
        return self.todo.popleft()

    def _record_video(self, spec: EpisodeSpec) -> bool:
        mode = self.config.video
        if mode == "first-per-task":
            return self.first_of_task.get((spec.suite, spec.task_id)) == spec.init_state
        return mode in ("all", "failures")

    def _error_result(self, spec: EpisodeSpec, message: str) -> EpisodeResult:
        task = self.suites[spec.suite].task(spec.task_id).language
        return EpisodeResult(spec, task, False, 0, "error", 0.0, error=message)

    def _handle_end(self, spec: EpisodeSpec, msg: tuple) -> None:
        """A worker's closing message for `spec`: a result, or a crash to retry."""
        if msg[0] == "result":
            result, actions = msg[1], msg[2]
            if actions is not None:
                save_actions(self.run_dir, spec, actions)
            self._store(result)
        elif msg[0] == "aborted":
            self._store(self._error_result(spec, f"policy unavailable: {self.stop_error}"))
        elif msg[0] == "crashed":
            self._retry(spec, f"simulator error: {msg[1]}")

    def _retry(self, spec: EpisodeSpec, reason: str) -> None:
        self.attempts[spec] = self.attempts.get(spec, 0) + 1
        if self.attempts[spec] < self.config.max_attempts and self.stop_error is None:
            self.todo.appendleft(spec)
            print(f"evalkit: retrying {spec.episode_id} ({reason})", file=sys.stderr)
        else:
            self._store(self._error_result(spec, f"{reason} (after {self.attempts[spec]} attempts)"))

    def _store(self, result: EpisodeResult) -> None:
        self.store.add(result)  # written the moment the episode ends
        tally = self.tally
        tally.done += 1
        tally.successes += int(result.success)
        tally.errors += int(result.termination == "error")
        tally.results.append(result)
        if self.bar is not None:
            valid = tally.done - tally.errors
            rate = f"{100 * tally.successes / valid:.1f}%" if valid else "-"
            self.bar.set_postfix_str(f"success {tally.successes}/{valid} ({rate}), errors {tally.errors}")
            self.bar.update(1)

    def _deadline(self) -> float:
        return time.monotonic() + self.config.episode_timeout_s

    def _hung_reason(self) -> str:
        return f"no progress for {self.config.episode_timeout_s:g} s (env worker hung or stopped)"

    def _chunks(
        self, batch: Sequence[Pending], outcome: list[np.ndarray] | BaseException
    ) -> list[np.ndarray]:
        """Validated chunks of a finished batch; a PolicyUnavailableError stops the run, other errors propagate."""
        if isinstance(outcome, PolicyUnavailableError):
            self.stop_error = outcome
            return []
        if isinstance(outcome, BaseException):
            raise outcome
        if len(outcome) != len(batch):
            raise EvalkitError(f"policy returned {len(outcome)} chunks for {len(batch)} observations")
        return [
            validate_chunk(c, self.action_dim, p.spec.episode_id) for p, c in zip(batch, outcome, strict=True)
        ]

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, episodes: list[EpisodeSpec], all_episodes: list[EpisodeSpec]) -> Tally:
        if not episodes:
            return self.tally
        self._begin(episodes, all_episodes)
        n_workers = max(1, min(self.config.workers or 1, len(episodes)))
        inference = InferenceThread(self.policy)
        interrupted = True
        try:
            self.workers = [self._start_worker() for _ in range(n_workers)]
            while True:
                self._assign()
                if all(w.episode is None for w in self.workers) and not inference.busy:
                    break
                self._collect(inference)
                self._watchdog()
                self._dispatch(inference)
            interrupted = False
        finally:
            inference.close()
            if self.bar is not None:
                self.bar.close()
            self._stop_workers(interrupted)
        if self.stop_error is not None:
            raise self.stop_error
        return self.tally

    def _assign(self) -> None:
        for i, worker in enumerate(self.workers):
            if worker.episode is None and self.todo and self.stop_error is None:
                if not worker.process.is_alive():  # died while idle
                    worker.conn.close()
                    worker = self.workers[i] = self._start_worker()
                spec = self._next_episode(worker.last_task)
                worker.episode, worker.last_task = spec, (spec.suite, spec.task_id)
                worker.deadline = self._deadline()
                worker.conn.send(("episode", spec, self._record_video(spec)))

    def _collect(self, inference: InferenceThread) -> None:
        """Wait for worker messages and the inference thread; queue observations in `self.pending`."""
        busy = [w for w in self.workers if w.episode is not None]
        handles = [w.conn for w in busy] + [w.process.sentinel for w in busy] + [inference.ready]
        ready = set(wait(handles, timeout=POLL_S))
        if inference.ready in ready:
            self._answer(*inference.take())
        for worker in busy:
            if worker.conn not in ready and worker.process.sentinel not in ready:
                continue
            try:
                while worker.episode is not None and worker.conn.poll():
                    self._on_message(worker, worker.conn.recv())
            except (EOFError, OSError):
                pass
            if not worker.process.is_alive() and worker.episode is not None:
                self._replace(worker, f"env worker died (exit code {worker.process.exitcode})")

    def _on_message(self, worker: Worker, msg: tuple) -> None:
        spec = worker.episode
        assert spec is not None
        if msg[0] == "request":
            worker.deadline = None  # now waiting on the policy, which the watchdog does not time
            if self.stop_error is not None:
                worker.conn.send(("abort",))
                worker.deadline = self._deadline()
            else:
                self.pending.append(Pending(worker, spec, msg[1], msg[2]))
            return
        worker.episode, worker.deadline = None, None
        self._handle_end(spec, msg)

    def _answer(self, batch: list[Pending], outcome: list[np.ndarray] | BaseException) -> None:
        chunks = self._chunks(batch, outcome)
        for i, item in enumerate(batch):
            worker = item.worker
            if not any(w is worker for w in self.workers) or worker.episode != item.spec:
                continue  # the worker died or was replaced meanwhile; its episode is being retried
            with contextlib.suppress(OSError):
                worker.conn.send(("chunk", chunks[i]) if chunks else ("abort",))
                worker.deadline = self._deadline()

    def _dispatch(self, inference: InferenceThread) -> None:
        """Send the next batch (oldest observations first) if the policy is free."""
        if self.stop_error is not None:
            batch, self.pending = self.pending, []
            self._answer(batch, self.stop_error)
            return
        self.pending = [p for p in self.pending if any(w is p.worker for w in self.workers)]
        if inference.busy or not self.pending:
            return
        size = max(1, self.config.batch_size)
        batch, self.pending = self.pending[:size], self.pending[size:]
        inference.submit(batch, [p.request(self.action_dim) for p in batch])

    def _watchdog(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.episode is not None and worker.deadline is not None and now > worker.deadline:
                worker.process.kill()  # also ends a stopped (SIGSTOP) process
                worker.process.join(timeout=5)
                self._replace(worker, self._hung_reason())

    def _replace(self, worker: Worker, reason: str) -> None:
        spec = worker.episode
        worker.conn.close()
        self.workers[self.workers.index(worker)] = self._start_worker()
        if spec is not None:
            self._retry(spec, reason)

    def _progress_bar(self, total: int):
        if not self.progress:
            return None
        from evalkit.runner.plan import progress_bar

        return progress_bar(total, self.config.workers or 1)
