"""Suites by name: YAML files under `tasks/` (and `$EVALKIT_TASKS`), groups, protocol presets and overrides.

A suite file (`tasks/<kind>/<name>.yaml`) has `name`, `kind` (the suite kind that builds it, evalkit.suites.kinds)
and kind-specific data; a group file has `name` and `group: [suite names]`. `extends: <suite>` inherits another
suite's data. `protocol` is either a full mapping or the name of a preset file
`tasks/<kind>/protocols/<preset>.yaml`, with per-suite changes under `protocols: {<preset>: {...}}`
(schema: the comment at the top of `tasks/libero/libero_spatial.yaml`). A kind may also `discover()` suites its
simulator package registers beyond the YAML files.

`resolve()` turns a name plus command-line overrides into `SuiteSpec`s; `list_suites()` feeds `evalkit suites`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import MAX_PROTOCOL_SEED, SuiteSpec
from evalkit.suites.kinds import suite_kind

# The suite files shipped with evalkit (package data: `evalkit/tasks` is the repository's `tasks/`).
PACKAGED_TASKS = Path(str(importlib.resources.files("evalkit").joinpath("tasks")))
PROTOCOL_DIR = "protocols"
_MAX_EXTENDS_DEPTH = 8


@dataclass(frozen=True)
class SuiteInfo:
    name: str
    # suite kind, or "group"
    kind: str
    # tasks that can run here
    n_tasks: int
    # for an unavailable suite: why it cannot run
    description: str
    # False: it cannot load here (e.g. registered without its task files)
    available: bool = True
    # tasks it has that cannot run here
    n_unavailable: int = 0


@dataclass(frozen=True)
class SuiteEntry:
    name: str
    data: dict[str, Any]
    # the YAML file, or "<kind> kind's discover()"
    source: str

    @property
    def is_group(self) -> bool:
        return "group" in self.data

    @property
    def kind(self) -> str:
        return "group" if self.is_group else str(self.data.get("kind", ""))


def tasks_dirs() -> list[Path]:
    """Where suite files live: `$EVALKIT_TASKS` (os.pathsep-separated) first, then the ones evalkit ships."""
    dirs = [Path(p).expanduser() for p in os.environ.get("EVALKIT_TASKS", "").split(os.pathsep) if p]
    if PACKAGED_TASKS.is_dir():
        dirs.append(PACKAGED_TASKS)
    return dirs


def _read_yaml(path: Path) -> Any:
    from evalkit.suites.yamlfile import load_yaml

    return load_yaml(path)


def yaml_entries() -> dict[str, SuiteEntry]:
    """Every suite and group defined by a YAML file (protocol presets excluded). First directory wins."""
    entries: dict[str, SuiteEntry] = {}
    for root in tasks_dirs():
        seen_here: dict[str, Path] = {}
        for path in sorted(root.rglob("*.yaml")):
            if PROTOCOL_DIR in path.relative_to(root).parts:
                continue
            data = _read_yaml(path)
            if not isinstance(data, dict) or not ({"kind", "group", "extends"} & data.keys()):
                continue  # not a suite file (e.g. shared scene data)
            name = str(data.get("name") or path.stem)
            if name in seen_here:
                raise EvalkitError(f"suite {name!r} is defined twice: {seen_here[name]} and {path}")
            seen_here[name] = path
            entries.setdefault(name, SuiteEntry(name, {**data, "name": name}, str(path)))
    return entries


def check_suite_name(name: str, source: str) -> None:
    """Suite names end up in file names (videos, the default run directory): no path syntax, no control chars."""
    bad = (
        not name
        or name in (".", "..")
        or any(c in name for c in "/\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    )
    if bad:
        raise EvalkitError(
            f"invalid suite name {name!r} ({source}): no path separators, control characters, '.' or '..'"
        )


def discovered_entries(yaml: dict[str, SuiteEntry]) -> dict[str, SuiteEntry]:
    """Suites the kinds' simulator packages register that no YAML file defines."""
    kinds = sorted({e.kind for e in yaml.values() if not e.is_group and e.kind})
    found: dict[str, SuiteEntry] = {}
    for kind in kinds:
        try:
            discovered = suite_kind(kind).discover()
        except EvalkitError:
            continue  # its suites show the reason when they are loaded
        for data in discovered:
            name = str(data["name"])
            if name not in yaml and name not in found:
                found[name] = SuiteEntry(name, dict(data), f"{kind} kind's discover()")
    return found


def _all_entries(discover: bool) -> dict[str, SuiteEntry]:
    entries = yaml_entries()
    if discover:
        entries.update(discovered_entries(entries))
    return entries


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, **child}
    protocols = {k: dict(v or {}) for k, v in (base.get("protocols") or {}).items()}
    for preset, changes in (child.get("protocols") or {}).items():
        protocols[preset] = {**protocols.get(preset, {}), **(changes or {})}
    if protocols:
        merged["protocols"] = protocols
    if isinstance(base.get("protocol"), dict) and isinstance(child.get("protocol"), dict):
        merged["protocol"] = {**base["protocol"], **child["protocol"]}
    merged.pop("extends", None)
    return merged


def _flatten(entry: SuiteEntry, entries: dict[str, SuiteEntry], depth: int = 0) -> dict[str, Any]:
    """The entry's data with its `extends` chain merged in."""
    data = entry.data
    if "extends" not in data:
        return dict(data)
    if depth >= _MAX_EXTENDS_DEPTH:
        raise EvalkitError(f"suite {entry.name!r}: `extends` chain too deep (a cycle?)")
    base_name = str(data["extends"])
    base = entries.get(base_name)
    if base is None or base.is_group:
        raise EvalkitError(
            f"suite {entry.name!r} extends {base_name!r}, which is not a suite ({entry.source})"
        )
    return _merge(_flatten(base, entries, depth + 1), data)


def protocol_presets(kind: str) -> dict[str, Path]:
    presets: dict[str, Path] = {}
    for root in tasks_dirs():
        for path in sorted((root / kind / PROTOCOL_DIR).glob("*.yaml")):
            presets.setdefault(path.stem, path)
    return presets


def _resolve_protocol(name: str, data: dict[str, Any], preset_override: str | None) -> dict[str, Any]:
    """Replace `data["protocol"]` (a preset name or mapping) by the full protocol mapping."""
    kind = str(data.get("kind"))
    proto = data.get("protocol")
    preset = preset_override or (proto if isinstance(proto, str) else None)
    if preset is None:
        return data
    presets = protocol_presets(kind)
    if preset not in presets:
        available = ", ".join(sorted(presets)) or "none"
        raise EvalkitError(f"unknown protocol {preset!r} for suite {name!r} ({kind} protocols: {available})")
    base = _read_yaml(presets[preset])
    if not isinstance(base, dict):
        raise EvalkitError(f"protocol file {presets[preset]} is not a mapping")
    changes = (data.get("protocols") or {}).get(preset) or {}
    return {**data, "protocol": {"name": preset, **base, **changes}}


def _loads(name: str, entries: dict[str, SuiteEntry]) -> bool:
    """Whether a suite (or every member of a group) can be loaded here."""
    try:
        for entry in _expand(name, entries):
            _load(entry, entries, None)
    except EvalkitError:
        return False
    return True


def _unknown_suite(name: str, entries: dict[str, SuiteEntry]) -> EvalkitError:
    """The error for an unknown name; its "did you mean" offers only suites that can run here."""
    candidates = difflib.get_close_matches(name, sorted(entries), n=10, cutoff=0.6)
    close = [c for c in candidates if _loads(c, entries)][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return EvalkitError(f"unknown suite {name!r}{hint} (`evalkit suites` lists them)")


def _expand(name: str, entries: dict[str, SuiteEntry], seen: tuple[str, ...] = ()) -> list[SuiteEntry]:
    entry = entries[name]
    check_suite_name(name, entry.source)
    if not entry.is_group:
        return [entry]
    if name in seen:
        raise EvalkitError(f"suite group {name!r} contains itself")
    members = entry.data.get("group") or []
    out: list[SuiteEntry] = []
    for member in members:
        member = str(member)
        if member not in entries:
            raise EvalkitError(f"suite group {name!r} ({entry.source}) names unknown suite {member!r}")
        out += [e for e in _expand(member, entries, (*seen, name)) if e.name not in {o.name for o in out}]
    if not out:
        raise EvalkitError(f"suite group {name!r} is empty")
    return out


def build_suite(name: str, data: dict[str, Any], protocol: str | None = None) -> SuiteSpec:
    """A suite from its data (a suite file's mapping, `extends` already merged): the protocol preset is resolved
    (`protocol` overrides the file's), then the suite kind builds it."""
    data = _resolve_protocol(name, data, protocol)
    kind = str(data.get("kind", ""))
    spec = suite_kind(kind).load_suite(name, data)
    if not isinstance(spec, SuiteSpec):
        raise EvalkitError(f"suite kind {kind!r} built a {type(spec).__name__}, not a SuiteSpec")
    description = " ".join(str(data.get("description", "")).split())
    return dataclasses.replace(spec, description=spec.description or description)


def _load(entry: SuiteEntry, entries: dict[str, SuiteEntry], protocol: str | None) -> SuiteSpec:
    check_suite_name(entry.name, entry.source)
    return build_suite(entry.name, _flatten(entry, entries), protocol)


def apply_overrides(
    spec: SuiteSpec,
    episodes_per_task: int | None = None,
    max_steps: int | None = None,
    seed: int | None = None,
    tasks: tuple[int, ...] | list[int] | None = None,
) -> SuiteSpec:
    """Command-line overrides of one suite's protocol and task subset (unknown task ids are an error)."""
    changes = {
        k: v
        for k, v in (("episodes_per_task", episodes_per_task), ("max_steps", max_steps), ("seed", seed))
        if v is not None
    }
    for key, value in changes.items():
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < (0 if key == "seed" else 1)
            or value > MAX_PROTOCOL_SEED
        ):
            raise EvalkitError(
                f"--{key.replace('_', '-')} must be {'in [0, 2**63)' if key == 'seed' else 'positive'}, got {value!r}"
            )
    protocol = dataclasses.replace(spec.protocol, **changes) if changes else spec.protocol
    selected = spec.tasks
    if tasks is not None:
        ids = [int(t) for t in tasks]
        known = {t.task_id for t in spec.tasks}
        unknown = [t for t in ids if t not in known]
        for task_id in unknown:
            missing = spec.availability.task(task_id)
            if missing is not None:
                raise EvalkitError(
                    f"suite {spec.name!r}: task {task_id} ({missing.name}) is unavailable here: {missing.why}"
                )
        if unknown:
            raise EvalkitError(
                f"suite {spec.name!r} has no task(s) {', '.join(map(str, unknown))}; its task ids are "
                f"{_ranges(sorted(known))}"
            )
        if not ids:
            raise EvalkitError("--tasks selects no task")
        wanted = set(ids)
        selected = tuple(t for t in spec.tasks if t.task_id in wanted)
    return dataclasses.replace(spec, protocol=protocol, tasks=selected)


def _ranges(ids: list[int]) -> str:
    parts, start = [], None
    for i, v in enumerate(ids):
        if start is None:
            start = v
        if i + 1 == len(ids) or ids[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts) or "none"


def _entries_for(name: str) -> dict[str, SuiteEntry]:
    """The suite entries, discovered ones added when `name` is not in a YAML file; an unknown name is an error."""
    entries = yaml_entries()
    if name not in entries:
        entries.update(discovered_entries(entries))
    if name not in entries:
        raise _unknown_suite(name, entries)
    return entries


def is_group(name: str) -> bool:
    """Whether `name` is a group of suites (an unknown name is an error)."""
    return _entries_for(name)[name].is_group


def resolve(
    name: str,
    protocol: str | None = None,
    episodes_per_task: int | None = None,
    max_steps: int | None = None,
    seed: int | None = None,
    tasks: tuple[int, ...] | list[int] | None = None,
) -> list[SuiteSpec]:
    """The suites a name stands for (a group expands to its members), with overrides applied."""
    entries = _entries_for(name)
    specs = []
    for entry in _expand(name, entries):
        spec = _load(entry, entries, protocol)
        specs.append(apply_overrides(spec, episodes_per_task, max_steps, seed, tasks))
    alone = sorted({s.kind for s in specs if suite_kind(s.kind).runs_alone})
    if alone and len({s.kind for s in specs}) > 1:  # its workers must not import another kind's simulator
        raise EvalkitError(f"suite {name!r} mixes {alone[0]} suites with other kinds; run them separately")
    return specs


def list_suites(include_unavailable: bool = True, group: str | None = None) -> list[SuiteInfo]:
    """Groups, YAML suites, then discovered suites, with task counts (`group`: only that group's members). A suite
    that cannot load is listed with `available=False`, 0 tasks and the reason as its description;
    `include_unavailable=False` leaves those out."""
    entries = _all_entries(discover=True) if group is None else _entries_for(group)
    shown = list(entries.values()) if group is None else _expand(group, entries)
    loaded: dict[str, SuiteSpec | str] = {}
    for entry in shown:
        if not entry.is_group:
            try:
                loaded[entry.name] = _load(entry, entries, None)
            except EvalkitError as exc:
                loaded[entry.name] = str(exc)
    infos = [_info(entry, entries, loaded) for entry in shown]

    def sort_key(info: SuiteInfo) -> tuple:
        return (
            info.kind != "group",
            entries[info.name].source.endswith("discover()"),
            not info.available,
            info.name,
        )

    return sorted((i for i in infos if i.available or include_unavailable), key=sort_key)


def _info(entry: SuiteEntry, entries: dict[str, SuiteEntry], loaded: dict[str, SuiteSpec | str]) -> SuiteInfo:
    """One line of the listing; `loaded` holds each suite's spec, or why it cannot load."""
    if not entry.is_group:
        spec = loaded[entry.name]
        if isinstance(spec, str):
            return SuiteInfo(entry.name, entry.kind, 0, spec, available=False)
        unavailable = len(spec.availability.unavailable)
        return SuiteInfo(entry.name, spec.kind, len(spec.tasks), spec.description, n_unavailable=unavailable)
    description = " ".join(str(entry.data.get("description", "")).split())
    try:
        members = _expand(entry.name, entries)
    except EvalkitError as exc:
        return SuiteInfo(entry.name, "group", 0, str(exc), available=False)
    specs = [spec for m in members if isinstance(spec := loaded[m.name], SuiteSpec)]
    n_tasks = sum(len(spec.tasks) for spec in specs)
    n_unavailable = sum(len(spec.availability.unavailable) for spec in specs)
    broken = [m.name for m in members if isinstance(loaded[m.name], str)]
    if broken:
        return SuiteInfo(
            entry.name, "group", n_tasks, f"members cannot run: {', '.join(broken)}", False, n_unavailable
        )
    description = description or f"group of {', '.join(m.name for m in members)}"
    return SuiteInfo(entry.name, "group", n_tasks, description, n_unavailable=n_unavailable)
