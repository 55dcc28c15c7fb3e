"""DROID-style table-top suite in MuJoCo: a Franka Panda with a Robotiq 2F-85, two jittered exterior cameras and
a wrist camera, 15 Hz joint-velocity (pi05_droid) or joint-position (*_droid_jointpos) control.

Scenes and tasks are data (`tasks/droid/droid.yaml`); a suite file either holds them (`scenes`, `tasks`, `sim`,
`protocol`) or names a `base` suite file in the same folder and picks task names from it (`droid_demo.yaml`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import EvalkitError
from evalkit.suites.base import EvalProtocol, SimEnv, SuiteSpec, TaskSpec, fingerprint
from evalkit.suites.droid.config import (
    ACTION_MODES,
    CameraDef,
    DroidData,
    RobotDef,
    _check_keys,
    _floats,
    parse_scene,
    parse_task,
)

TASKS_DIR = Path(__file__).resolve().parents[3] / "tasks" / "droid"
NUM_LAYOUTS = 1000  # layouts are generated from (task, index, seed); any index below this is valid

PROTOCOL_KEYS = {"control_hz", "render_size", "cameras", "replan_steps", "max_steps", "wait_steps",
                 "episodes_per_task", "seed", "action_mode"}
SIM_KEYS = {"substeps", "settle_s", "table_size", "table_height", "robot", "camera_jitter_m", "camera_jitter_deg",
            "cameras"}
ROBOT_KEYS = {"home", "home_noise", "base_pos", "max_joint_delta", "kp", "kd"}


def _resolve(name: str, data: dict) -> dict:
    """Merge a suite file with its `base` suite (same folder): protocol keys override, tasks pick by name."""
    if "base" not in data:
        return data
    base_name = str(data["base"])
    path = TASKS_DIR / f"{base_name}.yaml"
    if not path.is_file():
        raise EvalkitError(f"suite {name!r}: base suite file {path} not found")
    base = _resolve(base_name, yaml.safe_load(path.read_text()))
    merged = {**base, "name": name, "protocol": {**base.get("protocol", {}), **(data.get("protocol") or {})}}
    if "tasks" in data:
        by_name = {t["name"]: t for t in base.get("tasks", [])}
        picked = []
        for entry in data["tasks"]:
            if isinstance(entry, str):
                if entry not in by_name:
                    raise EvalkitError(f"suite {name!r}: task {entry!r} is not in base suite {base_name!r}")
                picked.append(by_name[entry])
            else:
                picked.append(entry)
        merged["tasks"] = picked
    return merged


def parse_droid_data(name: str, data: dict) -> tuple[DroidData, dict]:
    _check_keys(data, {"name", "kind", "description", "base", "protocol", "sim", "scenes", "tasks"}, f"suite {name!r}")
    proto = data.get("protocol") or {}
    _check_keys(proto, PROTOCOL_KEYS, f"suite {name!r} protocol")
    sim = data.get("sim") or {}
    _check_keys(sim, SIM_KEYS, f"suite {name!r} sim")
    robot = sim.get("robot") or {}
    _check_keys(robot, ROBOT_KEYS, f"suite {name!r} sim.robot")
    scenes = {str(k): parse_scene(str(k), v) for k, v in (data.get("scenes") or {}).items()}
    tasks = tuple(parse_task(t, scenes) for t in data.get("tasks") or [])
    if not tasks:
        raise EvalkitError(f"suite {name!r} has no tasks")
    if len({t.name for t in tasks}) != len(tasks):
        raise EvalkitError(f"suite {name!r}: task names must be unique")
    cameras = []
    for c in sim.get("cameras") or []:
        _check_keys(c, {"name", "pos", "lookat", "up", "fovy", "wrist"}, f"suite {name!r} camera")
        cameras.append(CameraDef(
            name=str(c["name"]),
            pos=_floats(c.get("pos", [0, 0, 0]), 3, "camera pos"),  # type: ignore[arg-type]
            lookat=_floats(c.get("lookat", [0, 0, 0]), 3, "camera lookat"),  # type: ignore[arg-type]
            up=_floats(c.get("up", [0, 0, 1]), 3, "camera up"),  # type: ignore[arg-type]
            fovy=float(c.get("fovy", 60.0)),
            wrist=bool(c.get("wrist", False)),
        ))
    camera_names = {c.name for c in cameras}
    camera_keys = tuple((str(k), str(v)) for k, v in (proto.get("cameras") or {}).items())
    for wire, cam in camera_keys:
        if cam not in camera_names:
            raise EvalkitError(f"suite {name!r}: protocol camera {wire!r} names unknown camera {cam!r}")
    action_mode = str(proto.get("action_mode", "joint_velocity"))
    if action_mode not in ACTION_MODES:
        raise EvalkitError(f"suite {name!r}: action_mode must be one of {', '.join(ACTION_MODES)}")
    try:
        droid = DroidData(
            scenes=scenes,
            tasks=tasks,
            cameras=tuple(cameras),
            camera_jitter_m=float(sim.get("camera_jitter_m", 0.0)),
            camera_jitter_deg=float(sim.get("camera_jitter_deg", 0.0)),
            robot=RobotDef(
                home=_floats(robot["home"], 7, "robot home"),
                home_noise=float(robot.get("home_noise", 0.0)),
                base_pos=_floats(robot["base_pos"], 3, "robot base_pos"),  # type: ignore[arg-type]
                max_joint_delta=float(robot.get("max_joint_delta", 0.2)),
                kp=_floats(robot["kp"], 7, "robot kp"),
                kd=_floats(robot["kd"], 7, "robot kd"),
            ),
            table_size=_floats(sim["table_size"], 3, "table_size"),  # type: ignore[arg-type]
            table_height=float(sim["table_height"]),
            substeps=int(sim.get("substeps", 34)),
            settle_s=float(sim.get("settle_s", 0.5)),
            action_mode=action_mode,
            control_hz=float(proto.get("control_hz", 15)),
            render_size=tuple(int(v) for v in proto.get("render_size", (180, 320))),  # type: ignore[arg-type]
            camera_keys=camera_keys,
        )
    except KeyError as exc:
        raise EvalkitError(f"suite {name!r}: missing sim setting {exc}") from None
    return droid, proto


def load_suite(name: str, data: dict[str, Any]) -> SuiteSpec:
    data = _resolve(name, data)
    droid, proto = parse_droid_data(name, data)
    used_scenes = {t.scene for t in droid.tasks}
    sim_payload = {
        "sim": data.get("sim"),
        "scenes": {k: v for k, v in (data.get("scenes") or {}).items() if k in used_scenes},
    }
    protocol = EvalProtocol(
        name="droid",
        cameras=droid.camera_keys,
        render_size=droid.render_size,
        image_size=droid.render_size,  # sent as rendered (DROID's 180x320); servers resize_with_pad to 224
        image_transforms=(),
        control_hz=droid.control_hz,
        wait_steps=int(proto.get("wait_steps", 0)),
        dummy_action=(0.0,) * 8,
        max_steps=int(proto.get("max_steps", 400)),
        episodes_per_task=int(proto.get("episodes_per_task", 20)),
        init_states="index",
        seed=int(proto.get("seed", 0)),
        replan_steps=int(proto.get("replan_steps", 8)),
        action_dim=8,
        state_dim=8,
        extra=(
            ("action_mode", droid.action_mode),
            ("max_joint_delta", droid.robot.max_joint_delta),
            ("gripper_threshold", 0.5),
            ("scene_fingerprint", fingerprint(sim_payload)),
        ),
    )
    if droid.action_mode == "joint_position" and protocol.wait_steps:
        raise EvalkitError(f"suite {name!r}: wait_steps must be 0 in joint_position mode (no constant hold action)")
    tasks = tuple(
        TaskSpec(task_id=i, name=t.name, language=t.instruction, num_init_states=NUM_LAYOUTS)
        for i, t in enumerate(droid.tasks)
    )
    return SuiteSpec(name=name, kind="droid", embodiment="droid", protocol=protocol, tasks=tasks,
                     options={"droid": droid})


def make_env(suite: SuiteSpec, task_id: int) -> SimEnv:
    from evalkit.suites.droid.env import DroidEnv

    droid: DroidData = suite.options["droid"]
    if not 0 <= task_id < len(droid.tasks):
        raise EvalkitError(f"suite {suite.name!r} has no task {task_id}")
    return DroidEnv(droid, task_id, droid.tasks[task_id], suite.name)
