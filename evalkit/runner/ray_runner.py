"""`evalkit eval --ray`: env workers and policy replicas as Ray actors, the driver keeping store, manifest, resume
and progress. Imported only with `--ray`; Ray is the optional extra `pip install -e '.[ray]'`.

The driver never blocks on inference, and is not on an observation's path: each env actor runs whole episodes and
sends its observations to the replicas itself (in turn), and each replica batches what it receives from all env
actors (`PolicyReplica`). The driver schedules episodes, follows each one's reports (a streaming generator: waiting
on the policy / stepping / the end) for the watchdog, and stores results in the run's `EpisodeLedger`.

Reuse across policies (`evalkit watch`): `RayBackend.load(options)` replaces the replicas and keeps the env
actors; each `run` names the replicas its episodes ask.

Faults:
- an env actor that dies (its node lost) or makes no progress for `episode_timeout_s` (while it waits on the
  policy: does not answer a ping within that time): its episode is retried on a new actor, wherever the cluster
  places it, and stored once;
- a replica that dies: Ray restarts it and re-sends its in-flight requests (`max_restarts`/`max_task_retries`);
  the requests are seeded by the episode identity, so the answers are the same;
- this machine's node marked dead, or the cluster silent for `CLUSTER_TIMEOUT_S`: one line, the run stops
  (`ClusterLostError`); what was stored stays and a re-run resumes;
- Ctrl-C or an error: every actor is killed; a Ray instance started here is shut down.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from typing import Any

from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyMeta, PolicyOptions
from evalkit.core.protocol import SuiteSpec
from evalkit.runner.config import BATCH_WAIT_MS, EvalConfig
from evalkit.runner.ledger import EpisodeLedger, Tally
from evalkit.runner.messages import (
    Aborted,
    ActorReport,
    EpisodeDone,
    EpisodeOptions,
    PolicyFailed,
    SimCrashed,
    Stepping,
    Waiting,
)
from evalkit.runner.runner import POLL_S
from evalkit.wire.auth import key_from_environment

try:
    import ray
    from ray.exceptions import RayError
except ImportError as exc:  # pragma: no cover - depends on the install
    raise EvalkitError("--ray needs Ray: pip install -e '.[ray]'") from exc

from evalkit.runner.ray_actors import EnvActor, PolicyReplica
from evalkit.runner.ray_cluster import ClusterWatch, connect

REPLICA_RESTARTS = 3  # a replica that dies is restarted this often, its in-flight requests re-sent
REPLICA_START_S = 600.0  # building a replica (loading weights, compiling) may take this long
CLOSE_S = 10.0  # how long actors get to close cleanly


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


@dataclass(frozen=True)
class Replicas:
    """The policy of a Ray run: its replica actors and what it declares."""

    actors: list[Any]
    meta: PolicyMeta


def start_replicas(config: EvalConfig, options: PolicyOptions) -> Replicas:
    builder = builder_of(options)
    if options.api_key is None:
        # resolved here: a replica on another node lacks the driver's $EVALKIT_API_KEY (never put in the runtime_env)
        options = replace(options, api_key=key_from_environment())
    replica_class = ray.remote(PolicyReplica).options(
        num_cpus=1, num_gpus=config.gpus_per_replica, max_restarts=REPLICA_RESTARTS, max_task_retries=-1
    )
    actors = [
        replica_class.remote(builder, options, config.batch_size, BATCH_WAIT_MS)
        for _ in range(config.policy_replicas)
    ]
    try:
        metas = ray.get([r.meta.remote() for r in actors], timeout=REPLICA_START_S)
    except EvalkitError as exc:
        stop_replicas(actors, graceful=False)
        raise EvalkitError(str(_cause(exc))) from None
    except RayError as exc:
        stop_replicas(actors, graceful=False)
        raise EvalkitError(f"policy replica failed to start: {str(_cause(exc)).splitlines()[0]}") from None
    return Replicas(actors, metas[0])


def stop_replicas(actors: list[Any], graceful: bool) -> None:
    if graceful:
        with contextlib.suppress(Exception):
            ray.get([r.close.remote() for r in actors], timeout=CLOSE_S)
    for replica in actors:
        with contextlib.suppress(Exception):
            ray.kill(replica)


class RayBackend:
    """The Ray connection, the env actors (a `RayRunner`, kept across policies) and the current policy's replicas."""

    def __init__(self, config: EvalConfig, suites: list[SuiteSpec]):
        self.started = connect(config.ray or "local", (config.workers or 0) + config.policy_replicas)
        self.replicas: Replicas | None = None
        try:
            self.config = config.replace(workers=config.workers or self._default_workers(config))
            self._check_resources(self.config)
            self.runner = RayRunner(self.config, suites)
        except BaseException:
            self.close(graceful=False)
            raise

    @staticmethod
    def _default_workers(config: EvalConfig) -> int:
        return max(1, int(ray.cluster_resources().get("CPU", 1)) - config.policy_replicas)

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

    def load(self, options: PolicyOptions) -> PolicyMeta:
        """Start the replicas of `options`' policy (replacing the previous policy's)."""
        self.unload()
        self.replicas = start_replicas(self.config, options)
        return self.replicas.meta

    def unload(self, graceful: bool = True) -> None:
        if self.replicas is not None:
            stop_replicas(self.replicas.actors, graceful)
            self.replicas = None

    def run(self, ledger: EpisodeLedger) -> Tally:
        assert self.replicas is not None, "load a policy first"
        return self.runner.run(self.replicas, ledger)

    def execution(self) -> dict[str, Any]:
        total = ray.cluster_resources()
        config = self.config
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
            "max_wait_ms": BATCH_WAIT_MS,
        }

    def kill_now(self) -> None:
        if getattr(self, "runner", None) is not None:
            self.runner.kill_now()
        if self.replicas is not None:
            for replica in self.replicas.actors:
                with contextlib.suppress(Exception):
                    ray.kill(replica)

    def close(self, graceful: bool = True) -> None:
        """Stop replicas and env actors; a Ray instance started here is shut down. After a lost cluster
        (`graceful=False`) nothing waits on an actor."""
        self.unload(graceful)
        if getattr(self, "runner", None) is not None:
            self.runner.close(graceful)
        if self.started:
            ray.shutdown()


@dataclass(eq=False)
class EnvSlot:
    """An env actor and what the driver knows of it."""

    actor: Any
    ready: bool = False
    episode: EpisodeSpec | None = None
    last_task: tuple[str, int] | None = None
    # it owes a report by then (or, while it waits on the policy, an answer to a ping)
    deadline: float | None = None
    # the ObjectRefGenerator of the episode in progress
    stream: Any = None
    # asked to drop its episode: it ends with `Aborted` at its next policy call
    aborting: bool = False
    # waiting on the policy, whose time the watchdog does not count
    waiting: bool = False
    # a `ready()` call in flight: a waiting actor must still answer it
    ping: Any = None


class RayRunner:
    """Env actors, started on the first run and kept across runs (and policies) until `close`."""

    def __init__(self, config: EvalConfig, suites: list[SuiteSpec]):
        self.config = config
        self.suites = {s.name: s for s in suites}
        self.slots: list[EnvSlot] = []
        self.waitables: dict[Any, tuple[str, EnvSlot]] = {}  # ready refs and episode streams
        self.started = 0
        # two threads: `abort` reaches an actor while `run` streams an episode
        self.env_class = ray.remote(EnvActor).options(
            num_cpus=1, scheduling_strategy="SPREAD", max_restarts=0, max_concurrency=2
        )
        self.watch: ClusterWatch | None = None

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, replicas: Replicas, ledger: EpisodeLedger) -> Tally:
        if not ledger.has_work():
            return ledger.finish()
        n_workers = max(1, min(self.config.workers or 1, ledger.total))
        options = ledger.episode_options(replicas.meta)
        interrupted = True
        try:
            self.watch = self.watch or ClusterWatch()
            while len(self.slots) < n_workers:
                self.slots.append(self._start_env())
            while True:
                if ledger.stopping:
                    self._abort_all()
                self._assign(ledger, options, replicas, n_workers)
                if not any(s.episode for s in self.slots) and not ledger.has_work():
                    break
                self._step(ledger)
                self._watchdog(ledger)
                self.watch.check()
            interrupted = False
        finally:
            if interrupted:
                self.close(graceful=False)
        return ledger.finish()

    def _assign(
        self, ledger: EpisodeLedger, options: EpisodeOptions, replicas: Replicas, n_workers: int
    ) -> None:
        for slot in self.slots:
            if slot.ready and slot.episode is None and ledger.has_work():
                spec = ledger.next_episode(slot.last_task, window=n_workers)
                slot.episode, slot.last_task = spec, (spec.suite, spec.task_id)
                slot.stream = slot.actor.run.options(num_returns="streaming").remote(
                    spec, ledger.record_video(spec), options, replicas.actors
                )
                self.waitables[slot.stream] = ("episode", slot)
                slot.deadline = self._deadline()

    def _step(self, ledger: EpisodeLedger) -> None:
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
                    self._replace(slot, ledger, "env worker could not start")
            else:
                self._on_report(slot, ledger)

    def _on_report(self, slot: EnvSlot, ledger: EpisodeLedger) -> None:
        spec = slot.episode
        assert spec is not None
        try:
            msg: ActorReport = ray.get(next(slot.stream))
        except (RayError, StopIteration) as exc:
            self._replace(slot, ledger, f"env worker lost ({type(exc).__name__}; its node died?)")
            return
        slot.waiting, slot.ping, slot.deadline = isinstance(msg, Waiting), None, self._deadline()
        if isinstance(msg, Waiting | Stepping):
            return
        del self.waitables[slot.stream]
        slot.episode, slot.deadline, slot.stream, slot.aborting = None, None, None, False
        if isinstance(msg, EpisodeDone):
            ledger.done(msg)
        elif isinstance(msg, SimCrashed):
            ledger.crashed(spec, f"simulator error: {msg.message}")
        elif isinstance(msg, PolicyFailed):
            ledger.policy_failed(spec, msg)
        elif isinstance(msg, Aborted):
            ledger.abandon(spec)

    def _abort_all(self) -> None:
        """The run stops: every episode in progress ends with `Aborted` at its next policy call."""
        for slot in self.slots:
            if slot.episode is not None and not slot.aborting:
                slot.aborting = True
                slot.actor.abort.remote(slot.episode.episode_id)

    # -- faults ----------------------------------------------------------------------------------------------
    def _deadline(self) -> float:
        return time.monotonic() + self.config.episode_timeout_s

    def _watchdog(self, ledger: EpisodeLedger) -> None:
        """An actor that owes a report past its deadline is replaced. One waiting on the policy is pinged instead:
        if it answers, it is alive and the policy is slow (not the env's fault), and it gets another period."""
        now = time.monotonic()
        for slot in list(self.slots):
            if slot.episode is None or slot.deadline is None or now <= slot.deadline:
                continue
            if slot.waiting and slot.ping is None:
                slot.ping, slot.deadline = slot.actor.ready.remote(), self._deadline()
            elif slot.waiting and ray.wait([slot.ping], timeout=0)[0]:
                slot.ping, slot.deadline = None, self._deadline()
            else:
                reason = f"no progress for {self.config.episode_timeout_s:g} s (env worker hung or stopped)"
                self._replace(slot, ledger, reason)

    def _replace(self, slot: EnvSlot, ledger: EpisodeLedger, reason: str) -> None:
        """Kill the slot's actor and start another in its place; its episode is retried (or dropped, when the run
        stops)."""
        with contextlib.suppress(Exception):
            ray.kill(slot.actor)
        self.waitables = {w: v for w, v in self.waitables.items() if v[1] is not slot}
        self.slots[self.slots.index(slot)] = self._start_env()
        spec, aborting, slot.episode = slot.episode, slot.aborting, None
        if spec is None:
            return
        if aborting:
            ledger.abandon(spec)
        else:
            ledger.crashed(spec, reason)

    # -- actors ----------------------------------------------------------------------------------------------
    def _start_env(self) -> EnvSlot:
        actor = self.env_class.remote(self.suites, self.started)
        self.started += 1
        slot = EnvSlot(actor)
        self.waitables[actor.ready.remote()] = ("ready", slot)
        return slot

    def close(self, graceful: bool = True) -> None:
        """Stop the env actors (closing their simulators first, unless `graceful` is False)."""
        if self.watch is not None:
            self.watch.stop()
            self.watch = None
        if graceful:
            with contextlib.suppress(Exception):
                ray.get([s.actor.close.remote() for s in self.slots if s.ready], timeout=CLOSE_S)
        self.kill_now()
        self.slots, self.waitables = [], {}

    def kill_now(self) -> None:
        for slot in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor)
