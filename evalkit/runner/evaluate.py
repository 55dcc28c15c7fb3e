"""`evaluate(config)`: one command's worth of evaluation, resumable, from suite resolution to the stored episodes."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

from evalkit.core.compatibility import check_compatible
from evalkit.core.embodiment import embodiment
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Policy
from evalkit.core.protocol import SuiteSpec, episodes_for
from evalkit.policies.registry import make_policy
from evalkit.rundir.lock import RunLock
from evalkit.rundir.manifest import now, open_manifest, write_manifest
from evalkit.rundir.store import EpisodeStore, RunIdentity
from evalkit.runner.config import VIDEO_MODES, EvalConfig, default_workers
from evalkit.runner.plan import describe_plan
from evalkit.runner.runner import Runner


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


def build_policy(config: EvalConfig, suites: list[SuiteSpec]) -> Policy:
    """The policy for these suites: its embodiment and action dims are the suites'."""
    body = embodiment(suites[0].embodiment)
    return make_policy(dataclasses.replace(config.policy, embodiment=body.name, action_dim=body.action_dim))


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


def evaluate(config: EvalConfig, progress: bool = True, command: list[str] | None = None) -> Path:
    """Run (or resume) an evaluation; returns the run directory. Raises EvalkitError on bad input."""
    if config.video not in VIDEO_MODES:
        raise EvalkitError(f"unknown video mode {config.video!r}; choose one of {', '.join(VIDEO_MODES)}")
    if config.batch_size < 1 or (config.workers is not None and config.workers < 1):
        raise EvalkitError("--workers and --batch-size must be at least 1")
    suites = resolve_suites(config)
    for suite in suites if progress and config.tasks is None else ():  # what a kind left out, and why
        if suite.options.get("unavailable_note"):
            print(f"evalkit: {suite.name}: {suite.options['unavailable_note']}")
    all_episodes = episodes_for(suites)
    policy = build_policy(config, suites)
    try:
        check_compatible(policy.meta, suites)
        if policy.meta.cameras or config.video != "none":
            from evalkit.rendering import check_gl

            check_gl()
        command = command if command is not None else [os.path.basename(sys.argv[0]), *sys.argv[1:]]
        resolved = config.replace(workers=config.workers or default_workers())
        run_dir = config.run_dir()
        created = prepare_run_dir(run_dir)
        runner: Runner | None = None
        try:
            with RunLock(run_dir):
                manifest = open_manifest(run_dir, resolved.to_dict(), suites, policy.meta, command)
                identity = RunIdentity(manifest.run_id, policy.meta.identity, manifest.suite_fingerprints())
                store = EpisodeStore(run_dir, identity)
                session = manifest.sessions[-1]
                try:
                    write_manifest(run_dir, manifest)
                    finished = store.finished()
                    todo = [spec for spec in all_episodes if spec not in finished]
                    if progress:
                        print(
                            describe_plan(
                                suites, all_episodes, todo, resolved.workers, policy.meta.name, str(run_dir)
                            )
                        )
                    runner = Runner(resolved, suites, policy, store, run_dir, progress=progress)
                    session.status = "interrupted"
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
    finally:
        policy.close()
    return run_dir
