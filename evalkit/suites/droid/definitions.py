"""The DROID suite's definitions: scenes, objects, cameras, robot and tasks, parsed from `tasks/droid/*.yaml`.

Everything here is plain data (no MuJoCo), so a suite can be listed and validated without a simulator. A task
names a scene, an instruction and one success predicate; the progress rubric is derived from the predicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import EvalProtocol

DROID_KNOBS = {"max_joint_delta": 0.2, "gripper_threshold": 0.5}
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


PREDICATES = ("inside", "on_top", "lifted", "next_to", "joint_above", "joint_below")


@dataclass(frozen=True)
class ObjectDef:
    """One object in a scene. `asset` is `libero:<path under libero's assets without .xml>`,
    `box`, or `cylinder` (primitives use `size` and `rgba`)."""

    name: str
    asset: str
    size: tuple[float, ...] = ()
    rgba: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 1.0)
    # welded to the table (articulated furniture)
    fixed: bool = False
    # range of the object's position on the table (table frame, m)
    x: tuple[float, float] = (0.0, 0.0)
    y: tuple[float, float] = (0.0, 0.0)
    # degrees
    yaw: tuple[float, float] = (0.0, 0.0)
    # extra height above the table top (m)
    z: float = 0.0
    # xyz Euler (deg) making the asset stand up, before yaw
    upright: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # primitives only (kg/m^3)
    density: float | None = None
    # sliding friction of primitives
    friction: float | None = None
    # initial ranges of articulations
    joints: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class CameraDef:
    name: str
    # position: world, or gripper frame if `wrist`
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # point it looks at (same frame)
    lookat: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # direction that is up in the image (same frame)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    # vertical field of view, degrees
    fovy: float = 60.0
    # mounted on the gripper
    wrist: bool = False


@dataclass(frozen=True)
class SceneDef:
    name: str
    objects: tuple[ObjectDef, ...]
    # free space (m) kept between sampled objects' footprints
    min_spacing: float = 0.02

    def object(self, name: str) -> ObjectDef:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise EvalkitError(f"scene {self.name!r} has no object {name!r}")


@dataclass(frozen=True)
class Predicate:
    """A success check. kinds: inside(object, target), on_top(object, target), lifted(object, height),
    next_to(object, target, distance), joint_above/joint_below(target=articulated object, joint, value)."""

    kind: str
    object: str | None = None
    target: str | None = None
    joint: str | None = None
    # joint threshold (m or rad), lift height (m) or next-to distance (m)
    value: float = 0.0


@dataclass(frozen=True)
class TaskDef:
    name: str
    scene: str
    instruction: str
    success: Predicate
    # per-task articulation overrides
    init_joints: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class RobotDef:
    # 7 joint angles of the reset pose
    home: tuple[float, ...]
    # uniform +- noise (rad) added per joint at reset
    home_noise: float
    # robot base (world)
    base_pos: tuple[float, float, float]
    # joint_velocity mode: rad per step at |v| = 1 (DROID's RobotIKSolver: 0.2)
    max_joint_delta: float
    # joint servo stiffness (N m / rad)
    kp: tuple[float, ...]
    # joint servo damping (N m s / rad)
    kd: tuple[float, ...]


@dataclass(frozen=True)
class DroidData:
    """Everything `make_env` needs, carried in `SuiteSpec.options["droid"]` (picklable)."""

    scenes: dict[str, SceneDef]
    tasks: tuple[TaskDef, ...]
    cameras: tuple[CameraDef, ...]
    camera_jitter_m: float
    camera_jitter_deg: float
    robot: RobotDef
    # full x, y, thickness
    table_size: tuple[float, float, float]
    # z of the table top
    table_height: float
    # physics steps per control step
    substeps: int
    # physics time objects settle at reset (not counted, renders nothing)
    settle_s: float
    # multisampling of rendered images (each sample costs a full pass on a CPU renderer)
    msaa_samples: int
    # joint_velocity | joint_position
    action_mode: str
    # gripper actions above it close the gripper
    gripper_threshold: float
    control_hz: float
    # (H, W) rendered
    render_size: tuple[int, int]
    # (H, W) sent to the policy
    image_size: tuple[int, int]
    image_transforms: tuple[str, ...]
    # (wire key, camera name)
    camera_keys: tuple[tuple[str, str], ...]


def _pair(value: Any, what: str) -> tuple[float, float]:
    if isinstance(value, int | float):
        return (float(value), float(value))
    if isinstance(value, list | tuple) and len(value) == 2:
        return (float(value[0]), float(value[1]))
    raise EvalkitError(f"{what}: expected a number or a [low, high] pair, got {value!r}")


def floats(value: Any, n: int, what: str) -> tuple[float, ...]:
    if not isinstance(value, list | tuple) or len(value) != n:
        raise EvalkitError(f"{what}: expected {n} numbers, got {value!r}")
    return tuple(float(v) for v in value)


def check_keys(data: dict, allowed: set[str], what: str) -> None:
    if not isinstance(data, dict):
        raise EvalkitError(f"{what}: expected a mapping, got {type(data).__name__}")
    unknown = set(data) - allowed
    if unknown:
        raise EvalkitError(f"{what}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def parse_object(data: dict, scene: str) -> ObjectDef:
    what = f"scene {scene!r} object {data.get('name', '?')!r}"
    allowed = {
        "name",
        "asset",
        "size",
        "rgba",
        "fixed",
        "x",
        "y",
        "yaw",
        "z",
        "upright",
        "density",
        "friction",
        "joints",
    }
    check_keys(data, allowed, what)
    if "name" not in data or "asset" not in data:
        raise EvalkitError(f"{what}: needs `name` and `asset`")
    asset = str(data["asset"])
    if asset in ("box", "cylinder"):
        n = 3 if asset == "box" else 2
        size = floats(data.get("size"), n, f"{what} size")
    elif asset.startswith("libero:"):
        relative = PurePosixPath(asset.removeprefix("libero:"))
        if not relative.parts or relative.is_absolute() or ".." in relative.parts or "\\" in asset:
            raise EvalkitError(f"{what}: asset {asset!r} must be a relative path under LIBERO's assets")
        size = ()
    else:
        raise EvalkitError(f"{what}: asset must be `box`, `cylinder` or `libero:<path>`, got {asset!r}")
    return ObjectDef(
        name=str(data["name"]),
        asset=asset,
        size=size,
        rgba=floats(data.get("rgba", [0.5, 0.5, 0.5, 1.0]), 4, f"{what} rgba"),  # type: ignore[arg-type]
        fixed=bool(data.get("fixed", False)),
        x=_pair(data.get("x", 0.0), f"{what} x"),
        y=_pair(data.get("y", 0.0), f"{what} y"),
        yaw=_pair(data.get("yaw", 0.0), f"{what} yaw"),
        z=float(data.get("z", 0.0)),
        upright=floats(data.get("upright", [0, 0, 0]), 3, f"{what} upright"),  # type: ignore[arg-type]
        density=None if data.get("density") is None else float(data["density"]),
        friction=None if data.get("friction") is None else float(data["friction"]),
        joints={str(k): _pair(v, f"{what} joint {k}") for k, v in (data.get("joints") or {}).items()},
    )


def parse_predicate(data: dict, task: str) -> Predicate:
    what = f"task {task!r} success"
    check_keys(data, {"kind", "object", "target", "joint", "value"}, what)
    kind = data.get("kind")
    if kind not in PREDICATES:
        raise EvalkitError(f"{what}: kind must be one of {', '.join(PREDICATES)}, got {kind!r}")
    pred = Predicate(
        kind=kind,
        object=data.get("object"),
        target=data.get("target"),
        joint=data.get("joint"),
        value=float(data.get("value", {"lifted": 0.1, "next_to": 0.15}.get(kind, 0.0))),
    )
    needs = {
        "inside": ("object", "target"),
        "on_top": ("object", "target"),
        "lifted": ("object",),
        "next_to": ("object", "target"),
        "joint_above": ("target", "joint"),
        "joint_below": ("target", "joint"),
    }[kind]
    missing = [k for k in needs if getattr(pred, k) is None]
    if missing:
        raise EvalkitError(f"{what}: {kind} needs {', '.join(missing)}")
    return pred


def parse_scene(name: str, data: dict) -> SceneDef:
    check_keys(data, {"objects", "min_spacing"}, f"scene {name!r}")
    objects = tuple(parse_object(o, name) for o in data.get("objects") or [])
    if not objects:
        raise EvalkitError(f"scene {name!r} has no objects")
    names = [o.name for o in objects]
    if len(set(names)) != len(names):
        raise EvalkitError(f"scene {name!r}: object names must be unique")
    return SceneDef(name=name, objects=objects, min_spacing=float(data.get("min_spacing", 0.02)))


def parse_task(data: dict, scenes: dict[str, SceneDef]) -> TaskDef:
    check_keys(data, {"name", "scene", "instruction", "success", "init_joints"}, "task")
    for key in ("name", "scene", "instruction", "success"):
        if key not in data:
            raise EvalkitError(f"task {data.get('name', '?')!r}: missing `{key}`")
    name = str(data["name"])
    if data["scene"] not in scenes:
        raise EvalkitError(f"task {name!r}: unknown scene {data['scene']!r}")
    scene = scenes[data["scene"]]
    pred = parse_predicate(data["success"], name)
    for ref in (pred.object, pred.target):
        if ref is not None:
            scene.object(ref)
    init_joints = {
        str(k): _pair(v, f"task {name!r} init_joints") for k, v in (data.get("init_joints") or {}).items()
    }
    return TaskDef(
        name=name,
        scene=scene.name,
        instruction=str(data["instruction"]),
        success=pred,
        init_joints=init_joints,
    )


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
