"""The runner: schedules episodes over env workers, serves their observations to the policy in dynamic batches,
and stores every episode the moment it ends.

Data flows one way: suite -> env workers -> runner -> policy -> runner -> store. The runner knows no model
internals (only the `Policy` protocol) and no simulator internals (only what workers send).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import sys
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

import numpy as np

from evalkit.core.episode import EpisodeResult, EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Policy, PolicyRequest, PolicyUnavailableError
from evalkit.core.protocol import SuiteSpec
from evalkit.rundir.store import EpisodeStore
from evalkit.runner.config import EvalConfig
from evalkit.runner.worker import worker_main

POLL_S = 1.0


@dataclass
class Worker:
    process: mp.process.BaseProcess
    conn: Connection
    episode: EpisodeSpec | None = None
    last_task: tuple[str, int] | None = None


@dataclass
class Tally:
    done: int = 0
    successes: int = 0
    errors: int = 0
    results: list[EpisodeResult] = field(default_factory=list)


def validate_chunk(chunk: object, action_dim: int, episode_id: str) -> np.ndarray:
    arr = np.asarray(chunk)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != action_dim:
        raise EvalkitError(
            f"policy returned actions of shape {arr.shape} for {episode_id}; expected (horizon, {action_dim})"
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise EvalkitError(f"policy returned non-finite actions for {episode_id}")
    return arr.astype(np.float64)


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
        process.start()
        child.close()
        return Worker(process, parent)

    def _stop_workers(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.conn.send(("stop",))
        for worker in self.workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)
            worker.conn.close()
        self.workers = []

    # -- scheduling ----------------------------------------------------------------------------------------
    def _next_episode(self, todo: deque[EpisodeSpec], worker: Worker) -> EpisodeSpec:
        """Prefer an episode of the worker's last task, so its simulator is reused."""
        if worker.last_task is not None:
            for i, spec in enumerate(todo):
                if (spec.suite, spec.task_id) == worker.last_task:
                    del todo[i]
                    return spec
        return todo.popleft()

    def _record_video(self, spec: EpisodeSpec, first_of_task: dict[tuple[str, int], int]) -> bool:
        mode = self.config.video
        if mode == "first-per-task":
            return first_of_task.get((spec.suite, spec.task_id)) == spec.init_state
        return mode in ("all", "failures")

    def _error_result(self, spec: EpisodeSpec, message: str) -> EpisodeResult:
        task = self.suites[spec.suite].task(spec.task_id).language
        return EpisodeResult(spec, task, False, 0, "error", 0.0, error=message)

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, episodes: list[EpisodeSpec], all_episodes: list[EpisodeSpec]) -> Tally:
        tally = self.tally
        if not episodes:
            return tally
        first_of_task: dict[tuple[str, int], int] = {}
        for spec in all_episodes:
            key = (spec.suite, spec.task_id)
            first_of_task[key] = min(first_of_task.get(key, spec.init_state), spec.init_state)
        todo = deque(episodes)
        n_workers = max(1, min(self.config.workers or 1, len(episodes)))
        bar = self._progress_bar(len(episodes))
        try:
            self.workers = [self._start_worker() for _ in range(n_workers)]
            while True:
                for i, worker in enumerate(self.workers):
                    if worker.episode is None and todo and self.stop_error is None:
                        if not worker.process.is_alive():  # died while idle
                            worker.conn.close()
                            worker = self.workers[i] = self._start_worker()
                        spec = self._next_episode(todo, worker)
                        worker.episode, worker.last_task = spec, (spec.suite, spec.task_id)
                        worker.conn.send(("episode", spec, self._record_video(spec, first_of_task)))
                if all(w.episode is None for w in self.workers):
                    break
                pending = self._collect(tally, todo, bar)
                if pending:
                    self._serve(pending)
        finally:
            if bar is not None:
                bar.close()
            self._stop_workers()
        if self.stop_error is not None:
            raise self.stop_error
        return tally

    def _collect(self, tally: Tally, todo: deque[EpisodeSpec], bar) -> list[tuple[Worker, int, dict]]:
        """Wait for worker messages; returns pending policy requests (worker, call index, observation)."""
        busy = [w for w in self.workers if w.episode is not None]
        handles = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(wait(handles, timeout=POLL_S))
        pending = []
        for worker in busy:
            if worker.conn not in ready and worker.process.sentinel not in ready:
                continue
            try:
                while worker.conn.poll():
                    msg = worker.conn.recv()
                    if msg[0] == "request":
                        pending.append((worker, msg[1], msg[2]))
                    else:
                        self._finish(worker, msg, tally, todo, bar)
                        break
            except (EOFError, OSError):
                pass
            if not worker.process.is_alive() and worker.episode is not None:
                self._replace_dead(worker, tally, todo, bar)
        return pending

    def _finish(self, worker: Worker, msg: tuple, tally: Tally, todo: deque[EpisodeSpec], bar) -> None:
        spec = worker.episode
        assert spec is not None
        worker.episode = None
        if msg[0] == "result":
            self._store(msg[1], tally, bar)
        elif msg[0] == "aborted":
            self._store(self._error_result(spec, f"policy unavailable: {self.stop_error}"), tally, bar)
        elif msg[0] == "crashed":
            self._retry(spec, f"simulator error: {msg[1]}", tally, todo, bar)

    def _replace_dead(self, worker: Worker, tally: Tally, todo: deque[EpisodeSpec], bar) -> None:
        spec = worker.episode
        code = worker.process.exitcode
        worker.conn.close()
        index = self.workers.index(worker)
        self.workers[index] = self._start_worker()
        if spec is not None:
            self._retry(spec, f"env worker died (exit code {code})", tally, todo, bar)

    def _retry(self, spec: EpisodeSpec, reason: str, tally: Tally, todo: deque[EpisodeSpec], bar) -> None:
        self.attempts[spec] = self.attempts.get(spec, 0) + 1
        if self.attempts[spec] < self.config.max_attempts:
            todo.appendleft(spec)
            print(f"evalkit: retrying {spec.episode_id} ({reason})", file=sys.stderr)
        else:
            self._store(
                self._error_result(spec, f"{reason} (after {self.attempts[spec]} attempts)"), tally, bar
            )

    def _store(self, result: EpisodeResult, tally: Tally, bar) -> None:
        self.store.add(result)  # written the moment the episode ends
        tally.done += 1
        tally.successes += int(result.success)
        tally.errors += int(result.termination == "error")
        tally.results.append(result)
        if bar is not None:
            valid = tally.done - tally.errors
            rate = f"{100 * tally.successes / valid:.1f}%" if valid else "-"
            bar.set_postfix_str(f"success {tally.successes}/{valid} ({rate}), errors {tally.errors}")
            bar.update(1)

    def _serve(self, pending: list[tuple[Worker, int, dict]]) -> None:
        """Answer pending observations in batches of at most `batch_size`."""
        if self.stop_error is not None:
            for worker, _, _ in pending:
                worker.conn.send(("abort",))
            return
        size = max(1, self.config.batch_size)
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            requests = [
                PolicyRequest(obs, w.episode.episode_id, w.episode.request_seed(call), self.action_dim)
                for w, call, obs in batch
            ]
            try:
                chunks = self.policy.infer(requests)
            except PolicyUnavailableError as exc:
                self.stop_error = exc
                for worker, _, _ in pending[start:]:
                    worker.conn.send(("abort",))
                return
            if len(chunks) != len(requests):
                raise EvalkitError(f"policy returned {len(chunks)} chunks for {len(requests)} observations")
            for (worker, _, _), req, chunk in zip(batch, requests, chunks, strict=True):
                worker.conn.send(("chunk", validate_chunk(chunk, self.action_dim, req.episode_id)))

    def _progress_bar(self, total: int):
        if not self.progress:
            return None
        from evalkit.runner.plan import progress_bar

        return progress_bar(total, self.config.workers or 1)
