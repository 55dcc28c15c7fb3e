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
from evalkit.core.protocol import EvalProtocol, SuiteSpec, TaskSpec, fingerprint
from evalkit.suites.base import SimEnv
from evalkit.suites.droid.config import (
    CameraDef,
    DroidData,
    RobotDef,
    check_keys,
    floats,
    parse_scene,
    parse_task,
)
from evalkit.suites.droid.predicates import progress_stages

NUM_LAYOUTS = 1000  # layouts are generated from (task, index, seed); any index below this is valid
DROID_KNOBS = {"max_joint_delta": 0.2, "gripper_threshold": 0.5}
TRANSFORMS = ("resize_with_pad",)

SUITE_KEYS = {"name", "kind", "description", "protocol", "protocols", "sim", "scenes", "tasks", "task_names"}
SIM_KEYS = {
    "msaa_samples",
    "substeps",
    "settle_s",
    "table_size",
    "table_height",
    "robot",
    "camera_jitter_m",
    "camera_jitter_deg",
    "cameras",
}
ROBOT_KEYS = {"home", "home_noise", "base_pos", "kp", "kd"}


def _parse_cameras(name: str, sim: dict) -> tuple[CameraDef, ...]:
    cameras = []
    for c in sim.get("cameras") or []:
        check_keys(c, {"name", "pos", "lookat", "up", "fovy", "wrist"}, f"suite {name!r} camera")
        cameras.append(
            CameraDef(
                name=str(c["name"]),
                pos=floats(c.get("pos", [0, 0, 0]), 3, "camera pos"),  # type: ignore[arg-type]
                lookat=floats(c.get("lookat", [0, 0, 0]), 3, "camera lookat"),  # type: ignore[arg-type]
                up=floats(c.get("up", [0, 0, 1]), 3, "camera up"),  # type: ignore[arg-type]
                fovy=float(c.get("fovy", 60.0)),
                wrist=bool(c.get("wrist", False)),
            )
        )
    return tuple(cameras)


def parse_droid_data(name: str, data: dict, protocol: EvalProtocol) -> DroidData:
    check_keys(data, SUITE_KEYS, f"suite {name!r}")
    sim = data.get("sim") or {}
    check_keys(sim, SIM_KEYS, f"suite {name!r} sim")
    robot = sim.get("robot") or {}
    check_keys(robot, ROBOT_KEYS, f"suite {name!r} sim.robot")
    scenes = {str(k): parse_scene(str(k), v) for k, v in (data.get("scenes") or {}).items()}
    tasks = tuple(parse_task(t, scenes) for t in data.get("tasks") or [])
    if len({t.name for t in tasks}) != len(tasks):
        raise EvalkitError(f"suite {name!r}: task names must be unique")
    if data.get("task_names") is not None:
        by_name = {t.name: t for t in tasks}
        unknown = [n for n in data["task_names"] if n not in by_name]
        if unknown:
            raise EvalkitError(f"suite {name!r}: task_names has unknown tasks {unknown}")
        tasks = tuple(by_name[n] for n in data["task_names"])
    if not tasks:
        raise EvalkitError(f"suite {name!r} has no tasks")
    cameras = _parse_cameras(name, sim)
    for wire, cam in protocol.cameras:
        if cam not in {c.name for c in cameras}:
            raise EvalkitError(f"suite {name!r}: protocol camera {wire!r} names unknown camera {cam!r}")
    extra = {**DROID_KNOBS, **dict(protocol.extra)}
    try:
        return DroidData(
            scenes=scenes,
            tasks=tasks,
            cameras=cameras,
            camera_jitter_m=float(sim.get("camera_jitter_m", 0.0)),
            camera_jitter_deg=float(sim.get("camera_jitter_deg", 0.0)),
            robot=RobotDef(
                home=floats(robot["home"], 7, "robot home"),
                home_noise=float(robot.get("home_noise", 0.0)),
                base_pos=floats(robot["base_pos"], 3, "robot base_pos"),  # type: ignore[arg-type]
                max_joint_delta=float(extra["max_joint_delta"]),
                kp=floats(robot["kp"], 7, "robot kp"),
                kd=floats(robot["kd"], 7, "robot kd"),
            ),
            table_size=floats(sim["table_size"], 3, "table_size"),  # type: ignore[arg-type]
            table_height=float(sim["table_height"]),
            substeps=int(sim.get("substeps", 34)),
            settle_s=float(sim.get("settle_s", 0.5)),
            msaa_samples=int(sim.get("msaa_samples", 0)),
            action_mode=protocol.action_mode,
            gripper_threshold=float(extra["gripper_threshold"]),
            control_hz=protocol.control_hz,
            render_size=protocol.render_size,
            image_size=protocol.image_size,
            image_transforms=protocol.image_transforms,
            camera_keys=protocol.cameras,
        )
    except KeyError as exc:
        raise EvalkitError(f"suite {name!r}: missing sim setting {exc}") from None


def load_suite(name: str, data: dict[str, Any]) -> SuiteSpec:
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
        )
        for i, t in enumerate(droid.tasks)
    )
    return SuiteSpec(
        name=name,
        kind="droid",
        embodiment="droid",
        protocol=protocol,
        tasks=tasks,
        privileged_obs=True,  # the oracle reads `privileged/*` keys
        options={"droid": droid},
    )


def make_env(suite: SuiteSpec, task_id: int) -> SimEnv:
    from evalkit.suites.droid.env import DroidEnv

    droid: DroidData = suite.options["droid"]
    if not 0 <= task_id < len(droid.tasks):
        raise EvalkitError(f"suite {suite.name!r} has no task {task_id}")
    return DroidEnv(droid, task_id, droid.tasks[task_id], suite.name)
