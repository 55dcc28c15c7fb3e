"""The suite kinds evalkit knows: one table, one lookup, used by the registry, the env workers and evalkit.gym.

A kind is a `SuiteKind` (evalkit.suites.base) registered here by name as "module:Class", imported on first use.
Adding a kind takes a package that defines its `SuiteKind` and one registration: a line in `KINDS` for a kind
shipped with evalkit, or `$EVALKIT_SUITE_KINDS` (`name=module:Class`, several separated by commas) for one that
lives elsewhere. Env workers look kinds up too: the local runner's worker processes and the Ray workers of a cluster
started on this machine inherit the variable; the workers of a cluster started elsewhere get it through the job's
runtime_env (`evalkit.runner.ray_cluster`), and need the module importable there.
"""

from __future__ import annotations

import importlib
import os
from functools import cache

from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import SuiteSpec
from evalkit.suites.base import SimEnv, SuiteKind

KINDS: dict[str, str] = {
    "libero": "evalkit.suites.libero:LiberoKind",
    "liberoplus": "evalkit.suites.liberoplus:LiberoPlusKind",
    "droid": "evalkit.suites.droid:DroidKind",
}
KINDS_ENV = "EVALKIT_SUITE_KINDS"


def registered_kinds() -> dict[str, str]:
    """Kind name -> "module:Class": evalkit's own, then those `$EVALKIT_SUITE_KINDS` adds."""
    kinds = dict(KINDS)
    for entry in os.environ.get(KINDS_ENV, "").split(","):
        if not entry.strip():
            continue
        name, _, target = (part.strip() for part in entry.partition("="))
        if not name or ":" not in target:
            raise EvalkitError(f"{KINDS_ENV}: {entry.strip()!r} is not name=module:Class")
        if name in KINDS:
            raise EvalkitError(f"{KINDS_ENV}: {name!r} is one of evalkit's own suite kinds")
        kinds[name] = target
    return kinds


def suite_kind(name: str) -> SuiteKind:
    """The kind a suite file's `kind:` names."""
    kinds = registered_kinds()
    if name not in kinds:
        raise EvalkitError(
            f"{name!r} is not a suite kind (known: {', '.join(sorted(kinds))}; {KINDS_ENV} registers others)"
        )
    return _instance(name, kinds[name])


def make_env(suite: SuiteSpec, task_id: int) -> SimEnv:
    """An env for one task of `suite`, built by the suite's kind (in the process that will simulate it)."""
    return suite_kind(suite.kind).make_env(suite, task_id)


@cache
def _instance(name: str, target: str) -> SuiteKind:
    module_name, _, attribute = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise EvalkitError(f"suite kind {name!r}: cannot load {target} ({exc})") from exc
    if not (isinstance(cls, type) and issubclass(cls, SuiteKind)):
        raise EvalkitError(f"suite kind {name!r}: {target} is not a SuiteKind (evalkit.suites.base)")
    return cls()


def task_tags() -> dict[str, str]:
    """Every tag the registered kinds' tasks carry, with what it means (kinds sharing a tag share a flag)."""
    tags: dict[str, list[str]] = {}
    for name in registered_kinds():
        try:
            kind = suite_kind(name)
        except EvalkitError:
            continue  # its suites say why when they are listed
        for tag, meaning in kind.task_tags.items():
            tags.setdefault(tag, []).append(f"{name}: {meaning}")
    return {tag: "; ".join(meanings) for tag, meanings in tags.items()}
