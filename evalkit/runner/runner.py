"""The local runner: env worker processes, started once and kept across runs, fed by one `DynamicBatcher`.

Data flows one way: suite -> env workers -> runner -> policy -> runner -> store. The runner knows no model
internals (only the `Policy` protocol) and no simulator internals (only the messages of `evalkit.runner.messages`).

Reusing the workers across policies (what `evalkit watch` needs: simulators stay up between checkpoints):

    runner = LocalRunner(config, suites)       # no process yet; workers start on the first run
    try:
        for policy, ledger in evaluations:      # each evaluation: its own store and run directory (its ledger)
            runner.run(policy, ledger)          # the workers stay up, idle, between runs
    finally:
        runner.close()

`run` never waits on the policy: observations go to the batcher (which calls the policy in its own thread) and
its answers wake the loop through a pipe, so observations that arrive during an inference form the next batch.
A watchdog kills a worker that makes no progress for `episode_timeout_s` and retries its episode. An interrupted
run (Ctrl-C) terminates the workers; the next run starts new ones. `RayRunner` (evalkit.runner.ray_runner) is the
same over Ray actors; both keep their books in an `EpisodeLedger`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait

from evalkit.batching import DynamicBatcher
from evalkit.core.episode import EpisodeSpec
from evalkit.core.policy import Policy, PolicyRequest
from evalkit.core.protocol import SuiteSpec
from evalkit.runner.config import BATCH_WAIT_MS, EvalConfig
from evalkit.runner.ledger import EpisodeLedger, Tally
from evalkit.runner.messages import (
    Abort,
    Actions,
    EpisodeDone,
    EpisodeOptions,
    PolicyCall,
    PolicyFailed,
    RunEpisode,
    SimCrashed,
    Stop,
    WorkerMessage,
)
from evalkit.runner.worker import worker_main

POLL_S = 1.0
STOP_GRACE_S = 2.0  # how long stopped workers get to exit before they are killed
CLOSE_S = 10.0  # how long idle workers get to exit after `Stop`
# An interrupted run waits this long for the policy's batch in flight (its answers are dropped): a process that exits
# while the batcher's thread is inside torch aborts (SIGABRT, "terminate called without an active exception") instead
# of exiting 130/143. A second Ctrl-C exits at once.
INTERRUPT_GRACE_S = 60.0


@dataclass(eq=False)
class Worker:
    process: mp.process.BaseProcess
    conn: Connection
    episode: EpisodeSpec | None = None
    last_task: tuple[str, int] | None = None
    # the worker owes a message by then (None: it waits on the policy, or is idle)
    deadline: float | None = None
    # its policy call in flight
    waiting: Future | None = None
    # an Abort was sent (its episode is already accounted for): `Aborted` frees the worker
    aborting: bool = False


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (the run winds down and keeps what finished), but told apart for the exit
    code (143, not 130)."""


@contextlib.contextmanager
def stop_on_signals(kill_now: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C or SIGTERM: the first prints "stopping…" at once and raises KeyboardInterrupt (`Terminated` for
    SIGTERM; the run winds down and keeps what finished); a second calls `kill_now()` and exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            print("\nevalkit: stopping… (Ctrl-C again to exit at once)", file=sys.stderr, flush=True)
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        with contextlib.suppress(Exception):
            kill_now()
        print("evalkit: exited at once; finished episodes are kept", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """While a worker process starts: SIGINT blocked in this thread, so the worker inherits it blocked through exec
    (a Ctrl-C while it boots prints no traceback there; it ignores SIGINT once running), and a Ctrl-C that reaches
    this process meanwhile is held and handled once the worker has started, never lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # The first spawn starts multiprocessing's resource tracker, whose start unblocks SIGINT again (its
    # `ensure_running` blocks and then unblocks it): started first, so the worker itself is forked with SIGINT blocked.
    resource_tracker.ensure_running()
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


class LocalRunner:
    def __init__(self, config: EvalConfig, suites: list[SuiteSpec]):
        self.config = config
        self.suites = {s.name: s for s in suites}
        self.ctx = mp.get_context("spawn")
        self.workers: list[Worker] = []
        self.batcher: DynamicBatcher | None = None  # the current run's
        # the batcher writes a byte here after each batch; the loop waits on it with the workers' pipes
        self._woken, self._wake = self.ctx.Pipe(duplex=False)

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, policy: Policy, ledger: EpisodeLedger) -> Tally:
        """Run the ledger's episodes with `policy`; returns the tally (raises what stopped the run, if the policy
        did). The workers stay up for the next run unless this one was interrupted."""
        if not ledger.has_work():
            return ledger.finish()
        n_workers = max(1, min(self.config.workers or 1, ledger.total))
        options = ledger.episode_options(policy.meta)
        self.batcher = batcher = DynamicBatcher(
            policy,
            max(1, self.config.batch_size),
            BATCH_WAIT_MS / 1000,
            expected=self._stepping,
            on_batch=self._on_batch,
        )
        interrupted = True
        try:
            while len(self.workers) < n_workers:
                self.workers.append(self._start_worker())
            while True:
                if ledger.stopping:
                    self._abort_all(ledger)
                self._assign(ledger, options, n_workers)
                if all(w.episode is None for w in self.workers):
                    break
                self._collect(ledger, batcher)
                self._watchdog(ledger)
            interrupted = False
        finally:
            batcher.close(grace_s=INTERRUPT_GRACE_S if interrupted else 10.0)
            self.batcher = None
            if interrupted:
                self._stop_workers(interrupted=True)
        return ledger.finish()

    def _stepping(self) -> int:
        """Batcher hint: workers inside an episode and not waiting on the policy (they may still ask)."""
        return sum(1 for w in self.workers if w.episode is not None and w.waiting is None and not w.aborting)

    def _on_batch(self) -> None:
        with contextlib.suppress(OSError):
            self._wake.send_bytes(b"1")

    def _assign(self, ledger: EpisodeLedger, options: EpisodeOptions, n_workers: int) -> None:
        for i, worker in enumerate(self.workers):
            if worker.episode is not None or not ledger.has_work():
                continue
            if not worker.process.is_alive():  # died while idle
                worker.conn.close()
                worker = self.workers[i] = self._start_worker()
            spec = ledger.next_episode(worker.last_task, window=n_workers)
            worker.episode, worker.last_task = spec, (spec.suite, spec.task_id)
            worker.deadline = self._deadline()
            worker.conn.send(RunEpisode(spec, ledger.record_video(spec), options))

    def _collect(self, ledger: EpisodeLedger, batcher: DynamicBatcher) -> None:
        """Wait for worker messages and answered policy calls, and handle them."""
        busy = [w for w in self.workers if w.episode is not None]
        handles = [w.conn for w in busy] + [w.process.sentinel for w in busy] + [self._woken]
        ready = set(wait(handles, timeout=POLL_S))
        while self._woken.poll():
            self._woken.recv_bytes()
        for worker in busy:
            if worker.waiting is not None and worker.waiting.done():
                self._answer(worker, ledger)
            if worker.conn not in ready and worker.process.sentinel not in ready:
                continue
            try:
                while worker.episode is not None and worker.conn.poll():
                    self._on_message(worker, worker.conn.recv(), ledger, batcher)
            except (EOFError, OSError):
                pass
            if not worker.process.is_alive() and worker.episode is not None:
                self._replace(worker, ledger, f"env worker died (exit code {worker.process.exitcode})")
        batcher.notify()  # fewer workers may be stepping now

    def _on_message(
        self, worker: Worker, msg: WorkerMessage, ledger: EpisodeLedger, batcher: DynamicBatcher
    ) -> None:
        spec = worker.episode
        assert spec is not None
        if isinstance(msg, PolicyCall):
            if ledger.stopping:
                self._abort(worker, ledger)
                return
            worker.deadline = None  # now waiting on the policy, which the watchdog does not time
            request = PolicyRequest(
                msg.obs, spec.episode_id, spec.request_seed(msg.call), ledger.action_dim(spec)
            )
            worker.waiting = batcher.submit(request)
            return
        self._idle(worker)
        if isinstance(msg, EpisodeDone):
            ledger.done(msg)
        elif isinstance(msg, SimCrashed):
            ledger.crashed(spec, f"simulator error: {msg.message}")

    def _answer(self, worker: Worker, ledger: EpisodeLedger) -> None:
        """Send the worker its actions, or abort its episode if the policy call failed."""
        future, worker.waiting = worker.waiting, None
        assert future is not None
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self._abort(worker, ledger, PolicyFailed.of(error))
            return
        with contextlib.suppress(OSError):
            worker.conn.send(Actions(future.result()))
            worker.deadline = self._deadline()

    def _abort_all(self, ledger: EpisodeLedger) -> None:
        """The run stops: episodes waiting on the policy are aborted now, stepping ones at their next call."""
        for worker in self.workers:
            if worker.waiting is not None:
                worker.waiting.cancel()  # never computed, if its batch has not started
                self._abort(worker, ledger)

    def _abort(self, worker: Worker, ledger: EpisodeLedger, failure: PolicyFailed | None = None) -> None:
        """End the worker's episode in the ledger now (the policy failed on it, or the run stops) and tell the
        worker to drop it; its `Aborted` then frees it."""
        assert worker.episode is not None
        if failure is not None:
            ledger.policy_failed(worker.episode, failure)
        else:
            ledger.abandon(worker.episode)
        worker.aborting, worker.waiting = True, None
        worker.deadline = self._deadline()
        with contextlib.suppress(OSError):
            worker.conn.send(Abort())

    @staticmethod
    def _idle(worker: Worker) -> None:
        worker.episode, worker.deadline, worker.waiting, worker.aborting = None, None, None, False

    # -- faults ----------------------------------------------------------------------------------------------
    def _deadline(self) -> float:
        return time.monotonic() + self.config.episode_timeout_s

    def _watchdog(self, ledger: EpisodeLedger) -> None:
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.episode is not None and worker.deadline is not None and now > worker.deadline:
                worker.process.kill()  # also ends a stopped (SIGSTOP) process
                worker.process.join(timeout=5)
                reason = f"no progress for {self.config.episode_timeout_s:g} s (env worker hung or stopped)"
                self._replace(worker, ledger, reason)

    def _replace(self, worker: Worker, ledger: EpisodeLedger, reason: str) -> None:
        spec = None if worker.aborting else worker.episode  # an aborted episode is accounted for already
        worker.conn.close()
        self.workers[self.workers.index(worker)] = self._start_worker()
        if spec is not None:
            ledger.crashed(spec, reason)

    # -- processes -------------------------------------------------------------------------------------------
    def _start_worker(self) -> Worker:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=worker_main, args=(child, self.suites), daemon=True)
        with sigint_held():
            process.start()
        child.close()
        return Worker(process, parent)

    def _stop_workers(self, interrupted: bool) -> None:
        """Idle workers get `Stop`; after an interrupt, workers are terminated at once (SIGTERM, then SIGKILL)."""
        for worker in self.workers:
            with contextlib.suppress(OSError):
                if interrupted:
                    worker.process.terminate()
                else:
                    worker.conn.send(Stop())
        deadline = time.monotonic() + (STOP_GRACE_S if interrupted else CLOSE_S)
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2)
            worker.conn.close()
        self.workers = []

    def close(self, graceful: bool = True) -> None:
        """Stop the workers (they are idle between runs)."""
        self._stop_workers(interrupted=not graceful)

    def kill_now(self) -> None:
        """For a second Ctrl-C: kill every worker without waiting."""
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.process.kill()
