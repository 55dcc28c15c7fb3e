"""`evaluate(config)`: one command's worth of evaluation, resumable, from suite resolution to the stored episodes."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from evalkit.core.compatibility import check_compatible
from evalkit.core.embodiment import embodiment
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Policy, PolicyMeta, PolicyOptions
from evalkit.core.protocol import SuiteSpec, episodes_for
from evalkit.policies.registry import make_policy
from evalkit.rundir.lock import RunLock
from evalkit.rundir.manifest import now, open_manifest, write_manifest
from evalkit.rundir.store import EpisodeStore, RunIdentity
from evalkit.runner.config import VIDEO_MODES, EvalConfig, default_workers
from evalkit.runner.plan import describe_plan
from evalkit.runner.runner import Runner, stop_on_interrupt


def resolve_suites(config: EvalConfig) -> list[SuiteSpec]:
    from evalkit.suites import registry

    suites = registry.resolve(
        config.suite,
        protocol=config.protocol,
        episodes_per_task=config.episodes_per_task,
        max_steps=config.max_steps,
        seed=config.seed,
        tasks=config.tasks,
    )
    kinds = {(s.embodiment, s.protocol.action_dim) for s in suites}
    if len(kinds) > 1:
        raise EvalkitError(f"suite {config.suite} mixes embodiments {sorted(kinds)}; run them separately")
    return suites


def policy_options(config: EvalConfig, suites: list[SuiteSpec]) -> PolicyOptions:
    """The policy options for these suites: its embodiment and action dims are the suites'."""
    body = embodiment(suites[0].embodiment)
    return dataclasses.replace(
        config.policy, embodiment=body.name, action_dim=body.action_dim, max_batch=config.batch_size
    )


def build_policy(config: EvalConfig, suites: list[SuiteSpec]) -> Policy:
    return make_policy(policy_options(config, suites))


class LocalBackend:
    """The policy in this process, env workers as local processes. A `policy` given ready-made (the Python API's)
    is used as it is and left open: its owner closes it."""

    def __init__(self, config: EvalConfig, suites: list[SuiteSpec], policy: Policy | None = None):
        self.owned = policy is None
        self.policy = build_policy(config, suites) if policy is None else policy
        self.runner: Runner | None = None

    @property
    def meta(self) -> PolicyMeta:
        return self.policy.meta

    def default_workers(self) -> int:
        return default_workers()

    def execution(self, config: EvalConfig) -> dict[str, Any]:
        return {"backend": "local", "workers": config.workers, "batch_size": config.batch_size}

    def make_runner(
        self, config: EvalConfig, suites: list[SuiteSpec], store: EpisodeStore, run_dir: Path, progress: bool
    ) -> Runner:
        self.runner = Runner(config, suites, self.policy, store, run_dir, progress=progress)
        return self.runner

    def kill_now(self) -> None:
        if self.runner is not None:
            self.runner.kill_now()

    def close(self, graceful: bool = True) -> None:
        if self.owned:
            self.policy.close()


def check_execution(config: EvalConfig) -> None:
    if config.episode_timeout_s <= 0:
        raise EvalkitError("--episode-timeout must be positive")
    if config.ray is None:
        if config.policy_replicas != 1 or config.gpus_per_replica:
            raise EvalkitError("--policy-replicas and --gpus-per-replica need --ray")
        return
    if config.policy_replicas < 1:
        raise EvalkitError("--policy-replicas must be at least 1")
    if config.gpus_per_replica < 0:
        raise EvalkitError("--gpus-per-replica must not be negative")


def start_backend(config: EvalConfig, suites: list[SuiteSpec], policy: Policy | None = None):
    """LocalBackend, or RayBackend for `--ray` (Ray is imported only then)."""
    if config.ray is None:
        return LocalBackend(config, suites, policy)
    if policy is not None:
        raise EvalkitError("a policy object runs in this process: it cannot be used with ray")
    from evalkit.runner.ray_runner import RayBackend

    return RayBackend(config, suites, policy_options(config, suites))


def prepare_run_dir(run_dir: Path) -> bool:
    """Create the run directory if needed and check it is writable; True if it was created now."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise EvalkitError(f"output directory {run_dir} is not writable: {exc.strerror or exc}") from exc
    return created


def evaluate(
    config: EvalConfig, progress: bool = True, command: list[str] | None = None, policy: Policy | None = None
) -> Path:
    """Run (or resume) an evaluation; returns the run directory. Raises EvalkitError on bad input.
    `policy`: a ready-made policy to evaluate instead of building `config.policy` (it is not closed here).

    Ctrl-C prints "stopping…" at once, stops the workers and keeps what finished (the session is marked
    interrupted); a second Ctrl-C exits at once."""
    if config.video not in VIDEO_MODES:
        raise EvalkitError(f"unknown video mode {config.video!r}; choose one of {', '.join(VIDEO_MODES)}")
    if config.batch_size < 1 or (config.workers is not None and config.workers < 1):
        raise EvalkitError("--workers and --batch-size must be at least 1")
    check_execution(config)
    suites = resolve_suites(config)
    for suite in suites if progress and config.tasks is None else ():  # what a kind left out, and why
        if suite.options.get("unavailable_note"):
            print(f"evalkit: {suite.name}: {suite.options['unavailable_note']}")
    all_episodes = episodes_for(suites)
    backend = None
    with stop_on_interrupt(lambda: backend.kill_now() if backend is not None else None):
        backend = start_backend(config, suites, policy)
        try:
            _evaluate(config, suites, all_episodes, backend, progress, command)
        except BaseException:
            backend.close(graceful=False)  # e.g. Ctrl-C: no waiting on a replica in the middle of a batch
            raise
        backend.close()
    return config.run_dir()


def _evaluate(config, suites, all_episodes, backend, progress, command) -> None:
    check_compatible(backend.meta, suites)
    if backend.meta.cameras or config.video != "none":
        from evalkit.rendering import check_gl

        check_gl()
    command = command if command is not None else [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    resolved = config.replace(workers=config.workers or backend.default_workers())
    run_dir = config.run_dir()
    created = prepare_run_dir(run_dir)
    runner: Runner | None = None
    try:
        with RunLock(run_dir):
            manifest = open_manifest(
                run_dir, resolved.to_dict(), suites, backend.meta, command, backend.execution(resolved)
            )
            identity = RunIdentity(manifest.run_id, backend.meta.identity, manifest.suite_fingerprints())
            store = EpisodeStore(run_dir, identity)
            session = manifest.sessions[-1]
            try:
                # "interrupted" until it ends: a driver killed outright leaves the right status behind
                session.status = "interrupted"
                write_manifest(run_dir, manifest)
                finished = store.finished()
                todo = [spec for spec in all_episodes if spec not in finished]
                if progress:
                    print(
                        describe_plan(
                            suites, all_episodes, todo, resolved.workers, backend.meta.name, str(run_dir)
                        )
                    )
                runner = backend.make_runner(resolved, suites, store, run_dir, progress)
                try:
                    runner.run(todo, all_episodes)
                    session.status = "completed"
                except EvalkitError as exc:
                    session.status = f"failed: {exc}"
                    raise
                finally:
                    session.ended_at, session.episodes_run = now(), runner.tally.done
                    write_manifest(run_dir, manifest)
            finally:
                store.close()
    except BaseException:
        if created and (runner is None or runner.tally.done == 0):  # a failed start leaves nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
