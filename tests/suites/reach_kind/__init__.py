"""A fourth suite kind, for tests: a point effector in a tiny MuJoCo scene moves to a target.

It is all a new kind takes: this package (a `SuiteKind` and its env) and one registration,
`EVALKIT_SUITE_KINDS=reach=tests.suites.reach_kind:ReachKind` (`REGISTRATION`). Its suite file is
`tasks/reach_demo.yaml` (put `TASKS_DIR` on `$EVALKIT_TASKS`). It speaks the LIBERO embodiment's contract, so
evalkit's LIBERO policies can drive it: 7-dim EEF-delta actions (the first three move the effector), 8-dim state,
two cameras, 20 Hz.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import (
    Availability,
    SuiteSpec,
    TaskSpec,
    UnavailableTask,
    check_embodiment,
    protocol_from_dict,
)
from evalkit.suites.base import SimEnv, SuiteKind

REGISTRATION = "reach=tests.suites.reach_kind:ReachKind"
TASKS_DIR = Path(__file__).parent / "tasks"
EMBODIMENT = EMBODIMENTS["libero"]
# how far the effector can get from its start (m); a target beyond it is listed as unavailable
REACH_M = 0.5
# how close to the target counts as success (m)
SUCCESS_M = 0.03
# start positions of the init states are jittered by up to this much (m), from (task, init state, seed)
START_JITTER_M = 0.005
# init states per task
INIT_STATES = 4


class ReachKind(SuiteKind):
    task_tags = {"goal": "reach suite: where the target lies from the start (here, left, right, far)"}

    def load_suite(self, name: str, data: dict[str, Any]) -> SuiteSpec:
        protocol = protocol_from_dict(data.get("protocol"), where=f"suite {name!r}")
        check_embodiment(protocol, EMBODIMENT, f"suite {name!r}")
        tasks, unavailable, targets = [], [], {}
        for task_id, task in enumerate(data.get("tasks") or []):
            target = np.asarray(task["target"], dtype=float)
            tags = {"goal": str(task["goal"])}
            if np.linalg.norm(target) > REACH_M:
                reason = f"target beyond the effector's reach ({REACH_M} m)"
                unavailable.append(
                    UnavailableTask(task_id, task["name"], task["instruction"], reason, tags=tags)
                )
                continue
            tasks.append(TaskSpec(task_id, task["name"], task["instruction"], INIT_STATES, tags=tags))
            targets[task_id] = tuple(target)
        if not tasks:
            raise EvalkitError(f"suite {name!r}: no task within reach")
        return SuiteSpec(
            name=name,
            kind="reach",
            embodiment=EMBODIMENT.name,
            protocol=protocol,
            tasks=tuple(tasks),
            simulator_packages=("mujoco",),
            availability=Availability(tuple(unavailable)),
            options={"targets": targets},
        )

    def make_env(self, suite: SuiteSpec, task_id: int) -> SimEnv:
        from tests.suites.reach_kind.env import ReachEnv

        return ReachEnv(suite, task_id)
