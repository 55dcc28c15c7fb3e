"""`DroidEnv`: one DROID-style task in MuJoCo behind the `SimEnv` API.

Control follows DROID's real-robot client at 15 Hz: actions are 7 joint values + 1 gripper position, every dim
clipped to [-1, 1] in joint-velocity mode (a velocity of 1 moves a joint `max_joint_delta` rad per step, as DROID's
`RobotIKSolver.joint_velocity_to_delta` does) or the 7 joints clipped to their limits in joint-position mode; the
gripper is binarized at 0.5. Cameras are rendered only by `observe(cameras=True)` and `frame()`; physics never
reads the renderer, so rendering cannot change an outcome.
"""

from __future__ import annotations

import json
import os

import numpy as np

from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Observation
from evalkit.suites.droid.definitions import DroidData, TaskDef
from evalkit.suites.droid.predicates import Rubric, World, holds
from evalkit.suites.droid.scene import FINGER_CLOSED, SceneModel, build_scene

MAX_LAYOUT_TRIES = 200


def layout_rng(task_id: int, episode: EpisodeSpec) -> np.random.Generator:
    """The layout of an episode depends on (task, init_state, seed) only."""
    return np.random.default_rng([int(task_id), int(episode.init_state), int(episode.seed)])


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


class DroidEnv:
    def __init__(self, data: DroidData, task_id: int, task: TaskDef, suite_name: str):
        import mujoco

        self._mj = mujoco
        self.cfg = data
        self.task_id = task_id
        self.task = task
        self.suite_name = suite_name
        self.scene_def = data.scenes[task.scene]
        self.scene: SceneModel = build_scene(data, self.scene_def)
        self.model = self.scene.model
        self.data = mujoco.MjData(self.model)
        self.world = World(self.scene, self.data, data.table_height)
        self.rubric: Rubric | None = None
        self.steps = 0
        self.render_calls = 0  # cameras rendered (observe(cameras=True) and frame()); tests count these
        self._renderer = None
        # The arm's servos take joint targets within the joint limits (scene.py sets their ctrlrange so).
        self.joint_low, self.joint_high = self.model.actuator_ctrlrange[self.scene.arm_actuators].T.copy()
        self.episode: EpisodeSpec | None = None

    # ----------------------------------------------------------------------------------------------- reset
    def reset(self, episode: EpisodeSpec) -> None:
        rng = layout_rng(self.task_id, episode)
        for _ in range(MAX_LAYOUT_TRIES):
            if not self._sample_layout(rng):
                continue
            self._settle()
            if not holds(self.task.success, self.world):
                break
        else:
            raise EvalkitError(
                f"task {self.task.name!r}: no layout found with room for all objects where the task "
                "is not already solved"
            )
        self.episode = episode
        self.steps = 0
        self.rubric = Rubric(self.task.success, self.world)

    def _sample_layout(self, rng: np.random.Generator) -> bool:
        """Place the robot, objects, articulations and cameras; False if the objects did not fit."""
        m, d, cfg = self.model, self.data, self.cfg
        self._mj.mj_resetData(m, d)
        home = np.asarray(cfg.robot.home) + rng.uniform(-cfg.robot.home_noise, cfg.robot.home_noise, 7)
        d.qpos[self.scene.arm_qpos] = home
        d.ctrl[self.scene.arm_actuators] = home
        d.ctrl[self.scene.gripper_actuators] = 0.0
        placed: list[tuple[np.ndarray, float]] = []
        for obj in self.scene_def.objects:
            info = self.scene.objects[obj.name]
            radius = float(np.linalg.norm(np.maximum(np.abs(info.local_min[:2]), np.abs(info.local_max[:2]))))
            for _ in range(50):
                xy = np.array([rng.uniform(*obj.x), rng.uniform(*obj.y)])
                if all(np.linalg.norm(xy - p) >= radius + r + self.scene_def.min_spacing for p, r in placed):
                    break
            else:
                return False
            placed.append((xy, radius))
            yaw = np.deg2rad(rng.uniform(*obj.yaw))
            z = cfg.table_height - info.local_min[2] + obj.z + 0.002
            quat = _quat_mul(_yaw_quat(yaw), info.upright)
            if info.free_qpos is None:
                m.body_pos[info.body] = [xy[0], xy[1], z]
                m.body_quat[info.body] = quat
            else:
                d.qpos[info.free_qpos : info.free_qpos + 7] = [xy[0], xy[1], z, *quat]
            ranges = {
                **obj.joints,
                **{
                    k.split("/", 1)[1]: v
                    for k, v in self.task.init_joints.items()
                    if k.split("/", 1)[0] == obj.name
                },
            }
            for joint, j in info.joints.items():
                lo, hi = ranges.get(joint, (0.0, 0.0))
                d.qpos[m.jnt_qposadr[j]] = rng.uniform(lo, hi)
        self._jitter_cameras(rng)
        self._mj.mj_forward(m, d)
        return True

    def _jitter_cameras(self, rng: np.random.Generator) -> None:
        for name, (pos, quat) in self.scene.camera_base.items():
            cam = self.scene.cameras[name]
            self.model.cam_pos[cam] = pos + rng.uniform(
                -self.cfg.camera_jitter_m, self.cfg.camera_jitter_m, 3
            )
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            angle = np.deg2rad(rng.uniform(0, self.cfg.camera_jitter_deg))
            turn = np.array([np.cos(angle / 2), *(np.sin(angle / 2) * axis)])
            self.model.cam_quat[cam] = _quat_mul(turn, quat)

    def _settle(self) -> None:
        n = int(round(self.cfg.settle_s * self.cfg.control_hz)) * self.cfg.substeps
        if n > 0:
            self._mj.mj_step(self.model, self.data, nstep=n)

    # ----------------------------------------------------------------------------------------------- step
    def step(self, action: np.ndarray) -> bool:
        if self.rubric is None:
            raise EvalkitError("step() before reset()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (8,):
            raise EvalkitError(f"DROID actions have 8 dims (7 joints + gripper), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise EvalkitError("non-finite action")
        d, sc = self.data, self.scene
        if self.cfg.action_mode == "joint_velocity":
            a = np.clip(a, -1.0, 1.0)
            target = d.qpos[sc.arm_qpos] + a[:7] * self.cfg.robot.max_joint_delta
        else:
            target = a[:7]
        d.ctrl[sc.arm_actuators] = np.clip(target, self.joint_low, self.joint_high)
        d.ctrl[sc.gripper_actuators] = FINGER_CLOSED if a[7] > self.cfg.gripper_threshold else 0.0
        self._mj.mj_step(self.model, d, nstep=self.cfg.substeps)
        self.steps += 1
        return bool(self.rubric.update())

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """7 joint velocities in [-1, 1] (DROID's RobotIKSolver) or 7 joint targets within the arm's limits, then
        the gripper position in [0, 1] (0 open, 1 closed; openpi examples/droid/main.py)."""
        if self.cfg.action_mode == "joint_velocity":
            low, high = -np.ones(7), np.ones(7)
        else:
            low, high = self.joint_low, self.joint_high
        return np.append(low, 0.0), np.append(high, 1.0)

    def progress(self) -> dict[str, bool]:
        return {k: bool(v) for k, v in self.rubric.flags.items()} if self.rubric is not None else {}

    # ----------------------------------------------------------------------------------------------- observe
    def joint_position(self) -> np.ndarray:
        return self.data.qpos[self.scene.arm_qpos].astype(np.float32)

    def gripper_position(self) -> np.ndarray:
        q = self.data.qpos[self.scene.finger_qpos] / FINGER_CLOSED
        return np.array([np.clip(q, 0.0, 1.0)], dtype=np.float32)

    def observe(self, cameras: bool, privileged: bool = False) -> Observation:
        obs: Observation = {
            "observation/joint_position": self.joint_position(),
            "observation/gripper_position": self.gripper_position(),
            "prompt": self.task.instruction,
        }
        if cameras:
            from evalkit.images import apply_image_transforms

            for wire, cam in self.cfg.camera_keys:
                obs[wire] = apply_image_transforms(
                    self.render(cam), self.cfg.image_transforms, self.cfg.image_size
                )
        if privileged:
            obs.update(self._privileged())
        return obs

    def _privileged(self) -> Observation:
        m, d, sc, mj = self.model, self.data, self.scene, self._mj
        jacp = np.zeros((3, m.nv))
        jacr = np.zeros((3, m.nv))
        mj.mj_jacSite(m, d, jacp, jacr, sc.grip_site)
        out: Observation = {
            "privileged/eef_pos": d.site_xpos[sc.grip_site].copy(),
            "privileged/eef_rot": d.site_xmat[sc.grip_site].reshape(3, 3).copy(),
            "privileged/jacobian": np.concatenate([jacp[:, sc.arm_dof], jacr[:, sc.arm_dof]]),
            "privileged/joint_position": d.qpos[sc.arm_qpos].copy(),
            "privileged/joint_limits": np.stack([self.joint_low, self.joint_high], axis=1),
            "privileged/max_joint_delta": float(self.cfg.robot.max_joint_delta),
            "privileged/action_mode": self.cfg.action_mode,
            "privileged/table_height": float(self.cfg.table_height),
            "privileged/task": json.dumps(self.task.success.__dict__),
        }
        for name, info in sc.objects.items():
            lo, hi = self.world.box(name)
            out[f"privileged/object/{name}/box"] = np.stack([lo, hi])
            out[f"privileged/object/{name}/quat"] = d.xquat[info.body].copy()
            upright = np.zeros(9)
            self._mj.mju_quat2Mat(upright, info.upright)
            yaw_frame = d.xmat[info.body].reshape(3, 3) @ upright.reshape(3, 3).T
            out[f"privileged/object/{name}/yaw"] = float(np.arctan2(yaw_frame[1, 0], yaw_frame[0, 0]))
            out[f"privileged/object/{name}/size"] = (
                info.local_max - info.local_min
            )  # in its upright, unyawed frame
            out[f"privileged/object/{name}/grasped"] = self.world.grasped(name)
        pred = self.task.success
        if pred.joint is not None:
            out.update(self._articulation(pred.target, pred.joint))
        return out

    def _articulation(self, name: str, joint: str) -> Observation:
        """Handle position and opening direction of a prismatic/hinged part (for the oracle)."""
        m, d = self.model, self.data
        j = self.scene.objects[name].joints[joint]
        axis = d.xaxis[j].copy()
        low, high = m.jnt_range[j]
        open_sign = -1.0 if abs(low) > abs(high) else 1.0  # the long side of the joint's range is "open"
        open_dir = open_sign * axis
        geoms = self.world.joint_geoms(name, joint)
        reach = d.geom_xpos[geoms] @ open_dir
        handle = geoms[int(np.argmax(reach))]
        return {
            "privileged/articulation/qpos": float(d.qpos[m.jnt_qposadr[j]]),
            "privileged/articulation/open_dir": open_dir,
            "privileged/articulation/open_sign": open_sign,
            "privileged/articulation/handle_pos": d.geom_xpos[handle].copy(),
            "privileged/articulation/handle_half": m.geom_aabb[handle, 3:].copy(),
            "privileged/articulation/handle_rot": d.geom_xmat[handle].reshape(3, 3).copy(),
        }

    # ----------------------------------------------------------------------------------------------- render
    def render(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            os.environ.setdefault("MUJOCO_GL", "egl")
            h, w = self.cfg.render_size
            self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, w)
            self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, h)
            self.model.vis.quality.offsamples = self.cfg.msaa_samples
            self._renderer = self._mj.Renderer(self.model, height=h, width=w)
            self._scene_option = self._mj.MjvOption()
            self._scene_option.geomgroup[0] = 0  # collision geometry
            self._scene_option.sitegroup[:] = 0  # markers
        self.render_calls += 1
        self._renderer.update_scene(
            self.data, camera=self.scene.cameras[camera], scene_option=self._scene_option
        )
        return self._renderer.render().copy()

    def frame(self) -> np.ndarray:
        """Both exterior views and the wrist view side by side (upright RGB)."""
        return np.concatenate([self.render(cam) for _, cam in self.cfg.camera_keys], axis=1)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
