"""A scripted oracle for the DROID suite (`--policy oracle`).

It reads `privileged/*` simulator state (end-effector pose, Jacobian, object boxes, the task's predicate) and acts
through the same 8-dim action interface as any policy: joint velocities (or absolute joint targets) from damped
least-squares differential IK toward a staged goal, plus a gripper position. It is stateless: the stage is
re-derived from the state at every call, so any number of episodes can share one oracle in a batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Observation, PolicyMeta, PolicyOptions, PolicyRequest

HORIZON = 8  # actions per chunk (DROID's open-loop horizon)
CONTROL_DT = 1.0 / 15.0
MAX_SPEED = 0.25  # m/s of the end effector
CARRY_SPEED = 0.15  # m/s while holding an object (fast moves shake it loose)
MAX_TURN = 1.2  # rad/s of the end effector
HOVER = 0.08  # pre-grasp height above an object's top (m)
CLEARANCE = 0.06  # carried objects clear obstacles by this much (m)
GRASP_DEPTH = 0.02  # grip site at least this far below an object's top (the pads span ~3 cm above the site)
GRASP_TOL = 0.006  # grip site this close to the grasp point before closing
CHUNK_MOVE = 0.05  # grip-site travel per chunk (m), short enough for one Jacobian to plan it
LIMIT_MARGIN = 0.05  # rad kept from joint limits
SLOT_DEPTH = 0.05  # behind a drawer's handle: the gap a drawer ajar leaves between its front and the cabinet
PUSH_BELOW = 0.012  # push a drawer shut with the grip site this far below its handle (m)
XY_TOL = 0.012
Z_TOL = 0.012
POSTURE = np.array([0.0, -0.628, 0.0, -2.513, 0.0, 1.885, 0.785])  # DROID's home pose, a weak nullspace pull


@dataclass
class Goal:
    pos: np.ndarray  # grip-site target (world)
    rot: np.ndarray  # 3x3 target orientation of the grip site
    grip: float  # 0 open, 1 closed
    speed: float = MAX_SPEED  # m/s


def down_rotation(yaw: float) -> np.ndarray:
    """Grip site pointing down with its closing axis (x) at `yaw` in the table plane."""
    x = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return np.stack([x, np.cross(z, x), z], axis=1)


def rotation_error(rot: np.ndarray, goal: np.ndarray) -> np.ndarray:
    return 0.5 * sum(np.cross(rot[:, i], goal[:, i]) for i in range(3))


def closest_yaw(current: float, base: float, period: float) -> float:
    k = np.round((current - base) / period)
    return float(base + k * period)


class Scene:
    """The privileged part of one observation, with the queries the oracle needs."""

    def __init__(self, obs: Observation):
        try:
            self.p = np.asarray(obs["privileged/eef_pos"], dtype=float)
            self.rot = np.asarray(obs["privileged/eef_rot"], dtype=float)
            self.jac = np.asarray(obs["privileged/jacobian"], dtype=float)
            self.q = np.asarray(obs["privileged/joint_position"], dtype=float)
            self.limits = np.asarray(obs["privileged/joint_limits"], dtype=float)
            self.max_delta = float(obs["privileged/max_joint_delta"])
            self.mode = str(obs["privileged/action_mode"])
            self.table = float(obs["privileged/table_height"])
            self.task = json.loads(obs["privileged/task"])
            self.gripper = float(np.asarray(obs["observation/gripper_position"]).reshape(-1)[0])
        except KeyError as exc:
            raise EvalkitError(f"the oracle needs privileged DROID observations; missing {exc}") from None
        self.obs = obs

    def box(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        b = np.asarray(self.obs[f"privileged/object/{name}/box"], dtype=float)
        return b[0], b[1]

    def grasped(self, name: str) -> bool:
        return bool(self.obs[f"privileged/object/{name}/grasped"])

    def grasp_yaw(self, name: str) -> float:
        """Yaw of the closing axis across the object's narrow horizontal side, nearest the current one."""
        yaw = float(self.obs[f"privileged/object/{name}/yaw"])
        size = np.asarray(self.obs[f"privileged/object/{name}/size"], dtype=float)
        current = float(np.arctan2(self.rot[1, 0], self.rot[0, 0]))
        if abs(size[0] - size[1]) < 0.006:
            return closest_yaw(current, yaw, np.pi / 2)
        base = yaw if size[0] < size[1] else yaw + np.pi / 2
        return closest_yaw(current, base, np.pi)

    def current_yaw(self) -> float:
        return float(np.arctan2(self.rot[1, 0], self.rot[0, 0]))


# ------------------------------------------------------------------------------------------------ stages
def pick_and_place_goal(s: Scene) -> Goal:
    task = s.task
    name = task["object"]
    lo, hi = s.box(name)
    c = (lo + hi) / 2
    held = s.grasped(name) and s.gripper > 0.2
    if not held:
        yaw = s.grasp_yaw(name)
        grasp = np.array([c[0], c[1], max(min(c[2], hi[2] - GRASP_DEPTH), s.table + 0.016)])
        above = np.array([c[0], c[1], hi[2] + HOVER])
        if s.gripper > 0.15 and np.linalg.norm(s.p - grasp) > 0.02:
            return Goal(s.p + np.array([0, 0, 0.03]), down_rotation(s.current_yaw()), 0.0)  # missed: reopen
        xy_err = np.linalg.norm(s.p[:2] - grasp[:2])
        turned = np.linalg.norm(rotation_error(s.rot, down_rotation(yaw))) < 0.08
        if xy_err > XY_TOL or not turned:
            if s.p[2] < hi[2] + 0.02 and xy_err > 0.03:
                return Goal(np.array([s.p[0], s.p[1], above[2]]), down_rotation(yaw), 0.0)  # up first
            return Goal(above, down_rotation(yaw), 0.0)
        if s.p[2] - grasp[2] > Z_TOL or xy_err > GRASP_TOL:
            return Goal(grasp, down_rotation(yaw), 0.0)
        return Goal(grasp, down_rotation(yaw), 1.0)  # close
    # Holding the object: carry it to where the predicate wants it.
    hold = s.p - c  # grip site relative to the object's center
    yaw = s.current_yaw()
    if task["kind"] == "lifted":
        return Goal(
            np.array([s.p[0], s.p[1], s.table + task["value"] + 0.12 + (s.p[2] - lo[2])]),
            down_rotation(yaw),
            1.0,
        )
    tlo, thi = s.box(task["target"])
    tc = (tlo + thi) / 2
    half = (hi - lo) / 2
    if task["kind"] == "next_to":
        # Beside the target along the axis where the object already is most clearly to one side of it.
        half_t = (thi - tlo) / 2
        sep = (c[:2] - tc[:2]) / (half_t[:2] + half[:2])
        axis = int(np.argmax(np.abs(sep)))
        other = 1 - axis
        place = np.array([0.0, 0.0, s.table + half[2] + 0.008])
        place[axis] = tc[axis] + np.sign(sep[axis]) * (half_t[axis] + half[axis] + 0.025)
        place[other] = np.clip(
            c[other], tlo[other] + half[other], max(thi[other] - half[other], tlo[other] + half[other])
        )
        clear = thi[2] + half[2] + CLEARANCE
    else:
        place_z = thi[2] + half[2] + (0.01 if task["kind"] == "inside" else 0.006)
        place = np.array([tc[0], tc[1], place_z])
        clear = thi[2] + half[2] + CLEARANCE
    xy_err = np.linalg.norm(c[:2] - place[:2])
    if xy_err > XY_TOL:
        if c[2] < clear - 0.02:  # lift before moving sideways
            target_c = (
                np.array([c[0], c[1], clear]) if xy_err > 0.04 else np.array([place[0], place[1], clear])
            )
        else:
            target_c = np.array([place[0], place[1], max(clear, c[2])])
        return Goal(target_c + hold, down_rotation(yaw), 1.0, CARRY_SPEED)
    if c[2] - place[2] > Z_TOL:
        return Goal(place + hold, down_rotation(yaw), 1.0, CARRY_SPEED)
    return Goal(place + hold, down_rotation(yaw), 0.0)  # release


def articulation_goal(s: Scene) -> Goal:
    task = s.task
    h = np.asarray(s.obs["privileged/articulation/handle_pos"], dtype=float)
    d = np.asarray(s.obs["privileged/articulation/open_dir"], dtype=float)
    d = np.array([d[0], d[1], 0.0]) / (np.linalg.norm(d[:2]) + 1e-9)
    opening = (task["kind"] == "joint_below") == (float(s.obs["privileged/articulation/open_sign"]) < 0)
    if not opening:
        # Push the drawer shut with the closed fingers pointing down, their tips just below the handle bar.
        yaw = float(np.arctan2(d[1], d[0])) + np.pi / 2
        rot = down_rotation(closest_yaw(s.current_yaw(), yaw, np.pi))
        push_z = h[2] - PUSH_BELOW
        front = float((s.p - h) @ d)  # how far the grip site is in front of the handle
        lateral = float(np.linalg.norm((s.p - h)[:2] - front * d[:2]))
        if lateral < 0.02 and front > -0.01 and s.p[2] < push_z + 0.01:
            return Goal(np.array([*(h[:2] - d[:2] * 0.15), push_z]), rot, 1.0)  # push
        start = h + d * 0.06
        if lateral < 0.015 and front > 0.04:
            return Goal(np.array([*start[:2], push_z]), rot, 1.0)  # descend in front of the handle
        return Goal(np.array([*start[:2], max(h[2] + 0.08, s.p[2])]), rot, 1.0)  # get in front, from above
    # Opening a drawer that stands ajar: hook the closed fingers into the gap behind its front and pull.
    yaw = closest_yaw(s.current_yaw(), float(np.arctan2(d[1], d[0])) + np.pi / 2, np.pi)
    rot = down_rotation(yaw)
    slot = h - d * SLOT_DEPTH
    slot[2] = h[2] - 0.01
    behind = (s.p - h) @ (-d)
    if behind > 0.03 and s.p[2] < h[2] + 0.02:
        return Goal(np.array([*(s.p[:2] + d[:2] * 0.12), slot[2]]), rot, 1.0)  # pull
    if np.linalg.norm(s.p[:2] - slot[:2]) > 0.008:
        return Goal(np.array([*slot[:2], h[2] + 0.08]), rot, 1.0)
    return Goal(slot, rot, 1.0)


def goal_for(s: Scene) -> Goal:
    if s.task["kind"] in ("joint_above", "joint_below"):
        return articulation_goal(s)
    return pick_and_place_goal(s)


# ------------------------------------------------------------------------------------------------ control
def chunk_toward(s: Scene, goal: Goal, horizon: int = HORIZON) -> np.ndarray:
    """`horizon` actions moving the grip site toward `goal` along a straight line (linearized at the start)."""
    dp = goal.pos - s.p
    dr = rotation_error(s.rot, goal.rot)
    steps = float(horizon)
    step_p = dp / steps
    step_r = dr / steps
    max_p, max_r = goal.speed * CONTROL_DT, MAX_TURN * CONTROL_DT
    max_p = min(max_p, CHUNK_MOVE / horizon)  # the straight line is planned with one Jacobian: keep it short
    scale = min(1.0, max_p / (np.linalg.norm(step_p) + 1e-12), max_r / (np.linalg.norm(step_r) + 1e-12))
    delta = np.concatenate([step_p, step_r]) * scale
    jac = s.jac
    damping = 1e-4
    jjt = jac @ jac.T + damping * np.eye(6)
    pinv = jac.T @ np.linalg.inv(jjt)
    dq = pinv @ delta
    dq += (np.eye(7) - pinv @ jac) @ (0.05 * (POSTURE - s.q))
    # Stay clear of the joint limits over the whole chunk.
    low, high = s.limits[:, 0] + LIMIT_MARGIN, s.limits[:, 1] - LIMIT_MARGIN
    reach = s.q + horizon * dq
    room = np.where(dq > 0, (high - s.q) / horizon, (low - s.q) / horizon)
    dq = np.where((reach > high) | (reach < low), np.where(np.sign(room) == np.sign(dq), room, 0.0), dq)
    actions = np.zeros((horizon, 8), dtype=np.float32)
    actions[:, 7] = goal.grip
    if s.mode == "joint_velocity":
        v = dq / s.max_delta
        v = v / max(1.0, float(np.max(np.abs(v))))
        actions[:, :7] = v
    else:
        for k in range(horizon):
            actions[k, :7] = np.clip(s.q + (k + 1) * dq, s.limits[:, 0], s.limits[:, 1])
    return actions


class OraclePolicy:
    def __init__(self, action_dim: int = 8):
        if action_dim != 8:
            raise EvalkitError(f"the oracle drives DROID suites (8-dim actions), not {action_dim}-dim ones")
        self.meta = PolicyMeta(name="oracle", fingerprint="none", cameras=(), action_dim=8, privileged=True)

    def infer(self, batch: Sequence[PolicyRequest]) -> list[np.ndarray]:
        return [chunk_toward(scene := Scene(req.obs), goal_for(scene)) for req in batch]

    def close(self) -> None:
        pass


def make_oracle_policy(options: PolicyOptions) -> OraclePolicy:
    if options.embodiment != "droid":
        raise EvalkitError(f"the oracle only drives DROID suites, not {options.embodiment!r} ones")
    return OraclePolicy(options.action_dim)
