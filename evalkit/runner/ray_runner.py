"""`evalkit eval --ray`: env workers and policy replicas as Ray actors, the driver keeping store, manifest, resume
and progress bar. Imported only with `--ray`; Ray is the optional extra `pip install -e '.[ray]'`.

The driver never blocks on inference, and is not on an observation's path: each env actor runs whole episodes and
sends its observations to the replicas itself (in turn), and each replica batches what it receives from all env
actors (`PolicyReplica`). The driver schedules episodes, follows each one's reports (a streaming generator: waiting
on the policy / stepping / the result) for the watchdog, and stores results. Faults:
- an env actor that dies (its node lost) or makes no progress for `episode_timeout_s`: its episode is retried on
  a new actor, wherever the cluster places it, and stored once;
- a replica that dies: Ray restarts it and re-sends its in-flight requests (`max_restarts`/`max_task_retries`);
  the requests are seeded by the episode identity, so the answers are the same;
- Ctrl-C or an error: every actor is killed; a Ray instance started here is shut down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyMeta, PolicyOptions, PolicyUnavailableError
from evalkit.core.protocol import SuiteSpec
from evalkit.rundir.store import EpisodeStore
from evalkit.runner.config import EvalConfig
from evalkit.runner.runner import POLL_S, Runner

try:
    import ray
    from ray.exceptions import RayError
except ImportError as exc:  # pragma: no cover - depends on the install
    raise EvalkitError("--ray needs Ray: pip install -e '.[ray]'") from exc

from evalkit.runner.ray_actors import EnvActor, PolicyReplica

MAX_WAIT_MS = 5.0  # a replica waits this long for more requests to batch with (as `evalkit serve` does)
REPLICA_RESTARTS = 3  # a replica that dies is restarted this often, its in-flight requests re-sent
REPLICA_START_S = 600.0  # building a replica (loading weights, compiling) may take this long


def builder_of(options: PolicyOptions) -> str:
    """The "module:function" that builds this policy, resolved here so that replicas need no registry entry."""
    from evalkit.policies.registry import BUILDERS, REMOTE_BUILDER, policy_names

    if options.name.startswith(("ws://", "wss://")):
        return REMOTE_BUILDER
    if options.name in BUILDERS:
        return BUILDERS[options.name]
    raise EvalkitError(
        f"unknown policy {options.name!r}; choose one of {', '.join(policy_names())} or a ws:// address"
    )


def _cause(exc: BaseException) -> BaseException:
    """The user-level exception inside a Ray error."""
    return getattr(exc, "cause", None) or exc


def connect(address: str, cpus_needed: int) -> bool:
    """Join or start Ray; True if a local instance was started here (and must be shut down).

    A process already connected to Ray (e.g. a test's or a benchmark's cluster) keeps its connection."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False, "include_dashboard": False}
    if address == "local":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        # Env workers are mostly waiting on the policy or the GPU: as in the local runner, --workers may exceed cores.
        ray.init(num_cpus=max(cores, cpus_needed), **quiet)
        return True
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EvalkitError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}") from exc
    return False


class RayBackend:
    """Ray connection, policy replicas and (once running) the `RayRunner`; `evaluate` drives it like LocalBackend."""

    def __init__(self, config: EvalConfig, suites: list[SuiteSpec], options: PolicyOptions):
        self.config = config
        self.replicas: list[Any] = []
        self.runner: RayRunner | None = None
        builder = builder_of(options)
        self.started = connect(config.ray or "local", (config.workers or 0) + config.policy_replicas)
        try:
            self._check_resources(config)
            replica_class = ray.remote(PolicyReplica).options(
                num_cpus=1,
                num_gpus=config.gpus_per_replica,
                max_restarts=REPLICA_RESTARTS,
                max_task_retries=-1,
            )
            self.replicas = [
                replica_class.remote(builder, options, config.batch_size, MAX_WAIT_MS)
                for _ in range(config.policy_replicas)
            ]
            try:
                metas = ray.get([r.meta.remote() for r in self.replicas], timeout=REPLICA_START_S)
            except EvalkitError as exc:
                raise EvalkitError(str(_cause(exc))) from None
            except RayError as exc:
                raise EvalkitError(
                    f"policy replica failed to start: {str(_cause(exc)).splitlines()[0]}"
                ) from None
            self.meta: PolicyMeta = metas[0]
        except BaseException:
            self.close(graceful=False)
            raise

    def _check_resources(self, config: EvalConfig) -> None:
        total = ray.cluster_resources()
        cpus, gpus = total.get("CPU", 0), total.get("GPU", 0)
        need_gpus = config.policy_replicas * config.gpus_per_replica
        if need_gpus > gpus + 1e-9:
            raise EvalkitError(
                f"{config.policy_replicas} replicas x {config.gpus_per_replica:g} GPUs need {need_gpus:g} GPUs; "
                f"the Ray cluster has {gpus:g}"
            )
        need_cpus = (config.workers or 1) + config.policy_replicas
        if need_cpus > cpus:
            raise EvalkitError(
                f"{config.workers or 1} env workers + {config.policy_replicas} policy replicas need {need_cpus} "
                f"CPUs; the Ray cluster has {cpus:g}"
            )

    def default_workers(self) -> int:
        return max(1, int(ray.cluster_resources().get("CPU", 1)) - self.config.policy_replicas)

    def execution(self, config: EvalConfig) -> dict[str, Any]:
        total = ray.cluster_resources()
        return {
            "backend": "ray",
            "ray_version": ray.__version__,
            "address": config.ray,
            "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
            "resources": {k: total[k] for k in ("CPU", "GPU", "memory") if k in total},
            "workers": config.workers,
            "policy_replicas": config.policy_replicas,
            "gpus_per_replica": config.gpus_per_replica,
            "batch_size": config.batch_size,
            "max_wait_ms": MAX_WAIT_MS,
        }

    def make_runner(
        self, config: EvalConfig, suites: list[SuiteSpec], store: EpisodeStore, run_dir: Path, progress: bool
    ) -> RayRunner:
        self.runner = RayRunner(config, suites, self.meta, self.replicas, store, run_dir, progress)
        return self.runner

    def kill_now(self) -> None:
        if self.runner is not None:
            self.runner.kill_now()
        for replica in self.replicas:
            with contextlib.suppress(Exception):
                ray.kill(replica)

    def close(self, graceful: bool = True) -> None:
        if graceful:
            with contextlib.suppress(Exception):
                ray.get([r.close.remote() for r in self.replicas], timeout=10)
        for replica in self.replicas:
            with contextlib.suppress(Exception):
                ray.kill(replica)
        self.replicas = []
        if self.started:
            ray.shutdown()


@dataclass(eq=False)
class EnvSlot:
    """An env actor and what the driver knows of it."""

    actor: Any
    ready: bool = False
    episode: EpisodeSpec | None = None
    last_task: tuple[str, int] | None = None
    deadline: float | None = None  # it owes a report by then (None: idle, or waiting on the policy)
    stream: Any = None  # the ObjectRefGenerator of the episode in progress


class _Meta:
    def __init__(self, meta: PolicyMeta):
        self.meta = meta


class RayRunner(Runner):
    def __init__(
        self,
        config: EvalConfig,
        suites: list[SuiteSpec],
        meta: PolicyMeta,
        replicas: list[Any],
        store: EpisodeStore,
        run_dir: Path,
        progress: bool = True,
    ):
        super().__init__(config, suites, _Meta(meta), store, run_dir, progress)  # type: ignore[arg-type]
        self.meta = meta
        self.replicas = replicas
        self.slots: list[EnvSlot] = []
        self.waitables: dict[Any, tuple[str, EnvSlot]] = {}  # ready refs and episode streams
        self.started = 0
        self.env_class = ray.remote(EnvActor).options(
            num_cpus=1, scheduling_strategy="SPREAD", max_restarts=0
        )

    # -- actors ----------------------------------------------------------------------------------------------
    def _start_env(self) -> EnvSlot:
        actor = self.env_class.remote(
            self.suites,
            bool(self.meta.cameras),
            self.meta.privileged,
            self.config.video,
            self.config.save_actions,
            self.replicas,
            self.started,
        )
        self.started += 1
        slot = EnvSlot(actor)
        self.waitables[actor.ready.remote()] = ("ready", slot)
        return slot

    def _stop_envs(self, interrupted: bool) -> None:
        if not interrupted:
            with contextlib.suppress(Exception):
                ray.get([s.actor.close.remote() for s in self.slots if s.ready], timeout=10)
        for slot in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor)
        self.slots, self.waitables = [], {}

    def kill_now(self) -> None:
        for slot in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor)

    def _drop(self, slot: EnvSlot) -> EpisodeSpec | None:
        """Kill the slot's actor and start another in its place; returns the episode it was running."""
        with contextlib.suppress(Exception):
            ray.kill(slot.actor)
        self.waitables = {w: v for w, v in self.waitables.items() if v[1] is not slot}
        self.slots[self.slots.index(slot)] = self._start_env()
        spec, slot.episode = slot.episode, None
        return spec

    def _replace(self, slot: EnvSlot, reason: str) -> None:  # type: ignore[override]
        spec = self._drop(slot)
        if spec is not None:
            self._retry(spec, reason)

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, episodes: list[EpisodeSpec], all_episodes: list[EpisodeSpec]):
        if not episodes:
            return self.tally
        self._begin(episodes, all_episodes)
        n_workers = max(1, min(self.config.workers or 1, len(episodes)))
        interrupted = True
        try:
            self.slots = [self._start_env() for _ in range(n_workers)]
            while True:
                self._assign()
                if not any(s.episode for s in self.slots) and (self.stop_error or not self.todo):
                    break
                self._step()
                self._watchdog()
            interrupted = False
        finally:
            if self.bar is not None:
                self.bar.close()
            self._stop_envs(interrupted)
        if self.stop_error is not None:
            raise self.stop_error
        return self.tally

    def _assign(self) -> None:
        for slot in self.slots:
            if slot.ready and slot.episode is None and self.todo and self.stop_error is None:
                spec = self._next_episode(slot.last_task)
                slot.episode, slot.last_task = spec, (spec.suite, spec.task_id)
                slot.stream = slot.actor.run.options(num_returns="streaming").remote(
                    spec, self._record_video(spec), self.action_dim
                )
                self.waitables[slot.stream] = ("episode", slot)
                slot.deadline = self._deadline()

    def _step(self) -> None:
        """Wait for anything to report (at most POLL_S), then handle everything that has."""
        if not self.waitables:
            time.sleep(POLL_S)
            return
        ready, _ = ray.wait(list(self.waitables), num_returns=1, timeout=POLL_S)
        if ready:
            ready, _ = ray.wait(list(self.waitables), num_returns=len(self.waitables), timeout=0)
        for waitable in ready:
            if waitable not in self.waitables:
                continue  # its slot was dropped while handling an earlier one
            kind, slot = self.waitables[waitable]
            if kind == "ready":
                del self.waitables[waitable]
                try:
                    ray.get(waitable)
                    slot.ready = True
                except RayError:  # could not start (its node died): try again
                    self._replace(slot, "env worker could not start")
            else:
                self._on_report(slot)

    def _on_report(self, slot: EnvSlot) -> None:
        spec = slot.episode
        assert spec is not None
        try:
            msg = ray.get(next(slot.stream))
        except (RayError, StopIteration) as exc:
            self._replace(slot, f"env worker lost ({type(exc).__name__}; its node died?)")
            return
        if msg[0] == "waiting":
            slot.deadline = None  # the policy's time, which the watchdog does not count
            return
        if msg[0] == "stepping":
            slot.deadline = self._deadline()
            return
        del self.waitables[slot.stream]
        slot.episode, slot.deadline, slot.stream = None, None, None
        if msg[0] == "policy_error":
            raise EvalkitError(f"policy failed: {msg[1]}")
        if msg[0] == "unavailable":
            self.stop_error = PolicyUnavailableError(msg[1])
            self._store(self._error_result(spec, f"policy unavailable: {msg[1]}"))
            for other in list(self.slots):  # episodes waiting on the policy: recorded as errors, not failures
                if other.episode is not None:
                    lost = self._drop(other)
                    assert lost is not None
                    self._store(self._error_result(lost, f"policy unavailable: {msg[1]}"))
            return
        if msg[0] == "result" and msg[3] is not None:
            path = self.run_dir / msg[1].video
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(msg[3])
        self._handle_end(spec, msg[:3])

    def _watchdog(self) -> None:
        now = time.monotonic()
        for slot in list(self.slots):
            if slot.episode is not None and slot.deadline is not None and now > slot.deadline:
                self._replace(slot, self._hung_reason())
