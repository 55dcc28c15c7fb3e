"""Success predicates and the partial-progress rubric, computed from simulator state only.

`World` is a read-only view of one MuJoCo state (object boxes, contacts, joints). Predicates are pure functions of
a `World`; the rubric keeps PolaRiS-style "ever reached" flags (reached → grasped → lifted/moved → success).
"""

from __future__ import annotations

import numpy as np

from evalkit.suites.droid.definitions import Predicate
from evalkit.suites.droid.scene import SceneModel, geoms_aabb

REACH_DISTANCE = 0.03  # grip site within this distance of an object's box counts as reaching it (m)
LIFT_PROGRESS = 0.03  # an object raised this much above where it settled counts as lifted (m)
MOVE_PROGRESS = 0.02  # an articulation moved this much toward its goal counts as moved (m or rad)
INSIDE_MARGIN = 0.01  # an object's center must be this far inside a container's footprint (m)


class World:
    """Geometry and contact queries on one simulator state."""

    def __init__(self, scene: SceneModel, data, table_height: float):
        self.scene = scene
        self.model = scene.model
        self.data = data
        self.table_height = table_height
        self._joint_geoms: dict[int, np.ndarray] = {}

    def box(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return geoms_aabb(self.model, self.data, self.scene.objects[name].geoms)

    def center(self, name: str) -> np.ndarray:
        lo, hi = self.box(name)
        return (lo + hi) / 2

    def joint_qpos(self, name: str, joint: str) -> float:
        j = self.scene.objects[name].joints[joint]
        return float(self.data.qpos[self.model.jnt_qposadr[j]])

    def joint_geoms(self, name: str, joint: str) -> np.ndarray:
        """Collision geoms that move with an articulation (the drawer or door itself)."""
        j = self.scene.objects[name].joints[joint]
        if j not in self._joint_geoms:
            body = self.model.jnt_bodyid[j]
            geoms = [
                g for g in self.scene.objects[name].geoms if self._descends(self.model.geom_bodyid[g], body)
            ]
            self._joint_geoms[j] = np.array(geoms, dtype=int)
        return self._joint_geoms[j]

    def _descends(self, body: int, root: int) -> bool:
        while body > 0:
            if body == root:
                return True
            body = self.model.body_parentid[body]
        return False

    def touching(self, geoms_a: np.ndarray, geoms_b: np.ndarray) -> bool:
        d = self.data
        if d.ncon == 0:
            return False
        g1, g2 = d.contact.geom1[: d.ncon], d.contact.geom2[: d.ncon]
        in_a1, in_b2 = np.isin(g1, geoms_a), np.isin(g2, geoms_b)
        in_a2, in_b1 = np.isin(g2, geoms_a), np.isin(g1, geoms_b)
        return bool(np.any((in_a1 & in_b2) | (in_a2 & in_b1)))

    def grip_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.scene.grip_site].copy()

    def released(self, name: str) -> bool:
        return not self.touching(self.scene.gripper_geoms, self.scene.objects[name].geoms)

    def grasped(self, name: str, geoms: np.ndarray | None = None) -> bool:
        geoms = self.scene.objects[name].geoms if geoms is None else geoms
        pads = self.scene.finger_pad_geoms
        return self.touching(pads[:1], geoms) and self.touching(pads[1:], geoms)

    def on_table(self, name: str) -> bool:
        return self.touching(np.array([self.scene.table_geom]), self.scene.objects[name].geoms)

    def distance_to_box(self, point: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
        return float(np.linalg.norm(np.maximum(0.0, np.maximum(lo - point, point - hi))))


def xy_within(point: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float) -> bool:
    return bool(np.all(point[:2] >= lo[:2] + margin) and np.all(point[:2] <= hi[:2] - margin))


def xy_gap(lo_a: np.ndarray, hi_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray) -> float:
    """Distance between two boxes' footprints (0 if they overlap)."""
    gap = np.maximum(0.0, np.maximum(lo_a[:2] - hi_b[:2], lo_b[:2] - hi_a[:2]))
    return float(np.linalg.norm(gap))


def holds(pred: Predicate, world: World) -> bool:
    """Whether the task's success predicate holds in the current state."""
    return bool(_holds(pred, world))


def _holds(pred: Predicate, world: World) -> bool:
    if pred.kind in ("joint_above", "joint_below"):
        q = world.joint_qpos(pred.target, pred.joint)
        return q > pred.value if pred.kind == "joint_above" else q < pred.value
    lo, hi = world.box(pred.object)
    center = (lo + hi) / 2
    if pred.kind == "lifted":
        return bool(lo[2] > world.table_height + pred.value) and not world.on_table(pred.object)
    tlo, thi = world.box(pred.target)
    if pred.kind == "inside":
        return (
            xy_within(center, tlo, thi, INSIDE_MARGIN)
            and lo[2] < thi[2]
            and center[2] > tlo[2]
            and world.released(pred.object)
        )
    if pred.kind == "on_top":
        target_geoms = world.scene.objects[pred.target].geoms
        return (
            xy_within(center, tlo, thi, 0.0)
            and center[2] > thi[2]
            and world.touching(world.scene.objects[pred.object].geoms, target_geoms)
            and world.released(pred.object)
        )
    if pred.kind == "next_to":
        return (
            xy_gap(lo, hi, tlo, thi) <= pred.value
            and world.on_table(pred.object)
            and world.released(pred.object)
        )
    raise ValueError(f"unknown predicate {pred.kind}")


ARTICULATION_KINDS = ("joint_above", "joint_below")


def progress_stages(pred: Predicate) -> tuple[str, ...]:
    """The rubric's flags for a task with this success predicate, in the order an episode reaches them."""
    if pred.kind in ARTICULATION_KINDS:
        return ("reached", "moved", "success")
    return ("reached", "grasped", "lifted", "success")


class Rubric:
    """PolaRiS-style partial progress: each flag is set once its condition has held at any step."""

    def __init__(self, pred: Predicate, world: World):
        self.pred = pred
        self.world = world
        self.articulation = pred.kind in ARTICULATION_KINDS
        self.names = progress_stages(pred)
        if self.articulation:
            self.start = world.joint_qpos(pred.target, pred.joint)
        else:
            self.start = float(world.box(pred.object)[0][2])
        self.flags = dict.fromkeys(self.names, False)

    def update(self) -> bool:
        """Update the flags from the current state; return whether the success predicate holds now."""
        w, p, f = self.world, self.pred, self.flags
        success = holds(p, w)
        if self.articulation:
            geoms = w.joint_geoms(p.target, p.joint)
            if not f["reached"]:
                lo, hi = geoms_aabb(w.model, w.data, geoms)
                f["reached"] = w.distance_to_box(w.grip_pos(), lo, hi) < REACH_DISTANCE
            q = w.joint_qpos(p.target, p.joint)
            toward = q - self.start if p.kind == "joint_above" else self.start - q
            f["moved"] = f["moved"] or toward > MOVE_PROGRESS
        else:
            lo, hi = w.box(p.object)
            if not f["reached"]:
                f["reached"] = w.distance_to_box(w.grip_pos(), lo, hi) < REACH_DISTANCE
            f["grasped"] = f["grasped"] or w.grasped(p.object)
            f["lifted"] = f["lifted"] or bool(lo[2] > self.start + LIFT_PROGRESS)
        f["success"] = bool(f["success"] or success)
        return success
