"""The DROID suite's data model: scenes, objects, cameras and tasks parsed from `tasks/droid/*.yaml`.

Everything here is plain data (no MuJoCo), so a suite can be listed and validated without a simulator. A task
names a scene, an instruction and one success predicate; the progress rubric is derived from the predicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evalkit.core.errors import EvalkitError

PREDICATES = ("inside", "on_top", "lifted", "next_to", "joint_above", "joint_below")


@dataclass(frozen=True)
class ObjectDef:
    """One object in a scene. `asset` is `libero:<path under libero's assets without .xml>`,
    `box`, or `cylinder` (primitives use `size` and `rgba`)."""

    name: str
    asset: str
    size: tuple[float, ...] = ()
    rgba: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 1.0)
    fixed: bool = False  # welded to the table (articulated furniture)
    x: tuple[float, float] = (0.0, 0.0)  # range of the object's position on the table (table frame, m)
    y: tuple[float, float] = (0.0, 0.0)
    yaw: tuple[float, float] = (0.0, 0.0)  # degrees
    z: float = 0.0  # extra height above the table top (m)
    upright: tuple[float, float, float] = (
        0.0,
        0.0,
        0.0,
    )  # xyz Euler (deg) making the asset stand up, before yaw
    density: float | None = None  # primitives only (kg/m^3)
    friction: float | None = None  # sliding friction of primitives
    joints: dict[str, tuple[float, float]] = field(default_factory=dict)  # initial ranges of articulations


@dataclass(frozen=True)
class CameraDef:
    name: str
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)  # position: world, or gripper frame if `wrist`
    lookat: tuple[float, float, float] = (0.0, 0.0, 0.0)  # point it looks at (same frame)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)  # direction that is up in the image (same frame)
    fovy: float = 60.0  # vertical field of view, degrees
    wrist: bool = False  # mounted on the gripper


@dataclass(frozen=True)
class SceneDef:
    name: str
    objects: tuple[ObjectDef, ...]
    min_spacing: float = 0.02  # free space (m) kept between sampled objects' footprints

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
    value: float = 0.0  # joint threshold (m or rad), lift height (m) or next-to distance (m)


@dataclass(frozen=True)
class TaskDef:
    name: str
    scene: str
    instruction: str
    success: Predicate
    init_joints: dict[str, tuple[float, float]] = field(
        default_factory=dict
    )  # per-task articulation overrides


@dataclass(frozen=True)
class RobotDef:
    home: tuple[float, ...]  # 7 joint angles of the reset pose
    home_noise: float  # uniform +- noise (rad) added per joint at reset
    base_pos: tuple[float, float, float]  # robot base (world)
    max_joint_delta: float  # joint_velocity mode: rad per step at |v| = 1 (DROID's RobotIKSolver: 0.2)
    kp: tuple[float, ...]  # joint servo stiffness (N m / rad)
    kd: tuple[float, ...]  # joint servo damping (N m s / rad)


@dataclass(frozen=True)
class DroidData:
    """Everything `make_env` needs, carried in `SuiteSpec.options["droid"]` (picklable)."""

    scenes: dict[str, SceneDef]
    tasks: tuple[TaskDef, ...]
    cameras: tuple[CameraDef, ...]
    camera_jitter_m: float
    camera_jitter_deg: float
    robot: RobotDef
    table_size: tuple[float, float, float]  # full x, y, thickness
    table_height: float  # z of the table top
    substeps: int  # physics steps per control step
    settle_s: float  # physics time objects settle at reset (not counted, renders nothing)
    msaa_samples: int  # multisampling of rendered images (each sample costs a full pass on a CPU renderer)
    action_mode: str  # joint_velocity | joint_position
    gripper_threshold: float  # gripper actions above it close the gripper
    control_hz: float
    render_size: tuple[int, int]  # (H, W) rendered
    image_size: tuple[int, int]  # (H, W) sent to the policy
    image_transforms: tuple[str, ...]
    camera_keys: tuple[tuple[str, str], ...]  # (wire key, camera name)


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
