"""`evaluate(config)`: one command's worth of evaluation, resumable, from suite resolution to the summary table."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from evalkit.episode import EpisodeSpec
from evalkit.errors import EvalkitError
from evalkit.policies.base import Policy
from evalkit.policies.registry import PolicyOptions, make_policy
from evalkit.runner.config import VIDEO_MODES, EvalConfig, default_workers
from evalkit.runner.manifest import now, open_manifest, write_manifest
from evalkit.runner.runner import Runner, check_compatible
from evalkit.store import EpisodeStore
from evalkit.suites.base import SuiteSpec


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


def episodes_for(suites: list[SuiteSpec]) -> list[EpisodeSpec]:
    """Episode k of a task starts from init state k (openpi's mapping), under the protocol's seed, or under seed + k
    for protocols that reseed every episode (`episode_seeds: plus_index`, lerobot's)."""
    episodes = []
    for suite in suites:
        n = suite.protocol.episodes_per_task
        step = 1 if dict(suite.protocol.extra).get("episode_seeds") == "plus_index" else 0
        for task in suite.tasks:
            if n > task.num_init_states:
                raise EvalkitError(
                    f"{suite.name} task {task.task_id} has {task.num_init_states} initial states; "
                    f"asked for {n} episodes per task"
                )
            episodes += [
                EpisodeSpec(suite.name, task.task_id, k, suite.protocol.seed + step * k) for k in range(n)
            ]
    return episodes


def prepare_run_dir(run_dir: Path) -> Path:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise EvalkitError(f"output directory {run_dir} is not writable: {exc.strerror or exc}") from exc
    return run_dir


def build_policy(config: EvalConfig, suites: list[SuiteSpec]) -> Policy:
    options = PolicyOptions(
        name=config.policy,
        embodiment=suites[0].embodiment,
        action_dim=suites[0].protocol.action_dim,
        checkpoint=config.checkpoint,
        tokenizer=config.tokenizer,
        device=config.device,
        dtype=config.dtype,
        api_key=config.api_key,
    )
    return make_policy(options)


def evaluate(config: EvalConfig, progress: bool = True, command: list[str] | None = None) -> Path:
    """Run (or resume) an evaluation; returns the run directory. Raises EvalkitError on bad input."""
    if config.video not in VIDEO_MODES:
        raise EvalkitError(f"unknown video mode {config.video!r}; choose one of {', '.join(VIDEO_MODES)}")
    if config.batch_size < 1 or (config.workers is not None and config.workers < 1):
        raise EvalkitError("--workers and --batch-size must be at least 1")
    suites = resolve_suites(config)
    all_episodes = episodes_for(suites)
    run_dir = prepare_run_dir(config.run_dir())
    policy = build_policy(config, suites)
    try:
        check_compatible(policy, suites)
        if policy.meta.cameras or config.video != "none":
            from evalkit.rendering import check_gl

            check_gl()
        command = command if command is not None else [os.path.basename(sys.argv[0]), *sys.argv[1:]]
        resolved = EvalConfig(**{**config.__dict__, "workers": config.workers or default_workers()})
        manifest = open_manifest(run_dir, resolved.to_dict(), suites, policy.meta, command)
        store = EpisodeStore(run_dir, manifest["run_id"])
        session = manifest["sessions"][-1]
        write_manifest(run_dir, manifest)
        finished = store.finished()
        todo = [spec for spec in all_episodes if spec not in finished]
        if progress and finished:
            print(
                f"evalkit: resuming {run_dir}: {len(all_episodes) - len(todo)} of {len(all_episodes)} episodes done"
            )
        status = "interrupted"
        runner = Runner(resolved, suites, policy, store, run_dir, progress=progress)
        try:
            runner.run(todo, all_episodes)
            status = "completed"
        except EvalkitError as exc:
            status = f"failed: {exc}"
            raise
        finally:
            session.update(ended_at=now(), status=status, episodes_run=runner.tally.done)
            store.close()
            write_manifest(run_dir, manifest)
    finally:
        policy.close()
    return run_dir
