"""Real run directories for report tests, written by the runner's own writers (`open_manifest`, `write_manifest`,
`EpisodeStore`) for real suites resolved from `tasks/`, so a change in what the runner records reaches these tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalkit.core.episode import EpisodeResult, EpisodeSpec
from evalkit.core.policy import PolicyMeta
from evalkit.rundir.manifest import open_manifest, write_manifest
from evalkit.rundir.store import EpisodeStore, RunIdentity
from evalkit.runner.config import EvalConfig
from evalkit.suites import registry


def write_run(
    run_dir: Path,
    outcomes: dict[tuple[str, int, int, int], bool | str],
    *,
    policy: str = "pi05",
    policy_fp: str = "aaaa1111bbbb2222",
    checkpoint: str | None = "ckpt/a",
    protocol_changes: dict[str, dict[str, Any]] | None = None,
    videos: dict[tuple[str, int, int, int], str] | None = None,
    progress: dict[str, bool] | None = None,
    progress_of: Callable[[tuple[str, int, int, int]], dict[str, bool]] | None = None,
    created_at: str = "2026-11-24T00:00:00+00:00",
) -> Path:
    """outcomes: (suite, task_id, init_state, seed) -> True (success), False (max_steps) or "error".

    `protocol_changes` changes a suite's protocol (e.g. {"libero_spatial": {"max_steps": 280}}), as --protocol
    or --max-steps would. Episodes carry their task's real instruction; partial progress is `progress` for every
    episode, or `progress_of(key)` per episode.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    suites = []
    for name in sorted({key[0] for key in outcomes}):
        (spec,) = registry.resolve(name)
        changes = (protocol_changes or {}).get(name)
        if changes:
            spec = dataclasses.replace(spec, protocol=dataclasses.replace(spec.protocol, **changes))
        suites.append(spec)
    config = EvalConfig(suite=",".join(s.name for s in suites), policy=policy, out=run_dir)
    config = config.replace(policy=dataclasses.replace(config.policy, checkpoint=checkpoint))
    meta = PolicyMeta(policy, policy_fp, action_dim=7)
    manifest = open_manifest(run_dir, config.to_dict(), suites, meta, ["evalkit", "eval", "--policy", policy])
    manifest.created_at = created_at
    write_manifest(run_dir, manifest)
    store = EpisodeStore(run_dir, RunIdentity(manifest.run_id, meta.identity, manifest.suite_fingerprints()))
    store._db.execute("PRAGMA synchronous=OFF")  # test speed only: no fsync per row on a loaded machine
    for key, outcome in outcomes.items():
        suite, task_id, init_state, seed = key
        error = outcome == "error"
        success = outcome is True
        steps = 60 + 7 * task_id + init_state if success else 220
        store.add(
            EpisodeResult(
                spec=EpisodeSpec(suite, task_id, init_state, seed),
                task=next(s for s in suites if s.name == suite).task(task_id).language,
                success=success,
                steps=steps if not error else 3,
                termination="error" if error else ("success" if success else "max_steps"),
                wall_s=1.5,
                policy_calls=steps // 5,
                latency_ms=[10.0 + (i % 7) for i in range(steps // 5)],
                progress={} if error else dict(progress_of(key) if progress_of else progress or {}),
                error="RuntimeError: simulator exploded" if error else None,
                video=(videos or {}).get((suite, task_id, init_state, seed)),
            )
        )
    store.close()
    return run_dir


def grid(suite: str, tasks: int, inits: int, seed: int = 7) -> list[tuple[str, int, int, int]]:
    return [(suite, t, i, seed) for t in range(tasks) for i in range(inits)]
