"""DROID-style table-top suite in MuJoCo: a Franka Panda with a Robotiq 2F-85, two jittered exterior cameras and
a wrist camera, 15 Hz joint-velocity (pi05_droid) or joint-position (*_droid_jointpos) control.

Scenes and tasks are data (`tasks/droid/droid.yaml`: `sim`, `scenes`, `tasks`); the protocol is a preset in
`tasks/droid/protocols/` (`droid` = velocity, `droid_jointpos` = absolute joints). A suite that `extends` another
may pick a subset of its tasks with `task_names` (`droid_demo.yaml`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import SuiteSpec, TaskSpec, fingerprint
from evalkit.suites.base import SimEnv, SuiteKind
from evalkit.suites.droid.definitions import DROID_KNOBS, DroidData, parse_droid_data
from evalkit.suites.droid.predicates import progress_stages

NUM_LAYOUTS = 1000  # layouts are generated from (task, index, seed); any index below this is valid
TRANSFORMS = ("resize_with_pad",)


class DroidKind(SuiteKind):
    task_tags = {"scene": "DROID scene the task is set in"}

    def load_suite(self, name: str, data: dict[str, Any]) -> SuiteSpec:
        from evalkit.core.protocol import check_embodiment, protocol_from_dict

        protocol = protocol_from_dict(data.get("protocol"), where=f"suite {name!r} protocol")
        check_embodiment(protocol, EMBODIMENTS["droid"], f"suite {name!r}")
        unknown = [t for t in protocol.image_transforms if t not in TRANSFORMS]
        if unknown:
            raise EvalkitError(
                f"suite {name!r}: unknown image transforms {unknown}; DROID supports {list(TRANSFORMS)}"
            )
        droid = parse_droid_data(name, data, protocol)
        if droid.action_mode == "joint_position" and protocol.wait_steps:
            raise EvalkitError(
                f"suite {name!r}: wait_steps must be 0 in joint_position mode (no constant hold action)"
            )
        used_scenes = {t.scene for t in droid.tasks}
        scene_payload = {
            "sim": data.get("sim"),
            "scenes": {k: v for k, v in (data.get("scenes") or {}).items() if k in used_scenes},
            "tasks": [t for t in data.get("tasks") or [] if t.get("name") in {d.name for d in droid.tasks}],
        }
        extra = {**DROID_KNOBS, **dict(protocol.extra), "scene_fingerprint": fingerprint(scene_payload)}
        protocol = dataclasses.replace(protocol, extra=tuple(sorted(extra.items())))
        tasks = tuple(
            TaskSpec(
                task_id=i,
                name=t.name,
                language=t.instruction,
                num_init_states=NUM_LAYOUTS,
                progress_stages=progress_stages(t.success),
                tags={"scene": t.scene},
            )
            for i, t in enumerate(droid.tasks)
        )
        return SuiteSpec(
            name=name,
            kind="droid",
            embodiment="droid",
            protocol=protocol,
            tasks=tasks,
            # the oracle reads `privileged/*` keys
            privileged_obs=True,
            options={"droid": droid},
        )

    def make_env(self, suite: SuiteSpec, task_id: int) -> SimEnv:
        from evalkit.suites.droid.env import DroidEnv

        droid: DroidData = suite.options["droid"]
        if not 0 <= task_id < len(droid.tasks):
            raise EvalkitError(f"suite {suite.name!r} has no task {task_id}")
        return DroidEnv(droid, task_id, droid.tasks[task_id], suite.name)
