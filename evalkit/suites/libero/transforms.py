"""openpi's LIBERO robot state: eef position, axis-angle of the xyzw quaternion (robosuite's, no antipodal flip)
and the two gripper joints (openpi `examples/libero/main.py`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def quat2axisangle(quat: Sequence[float] | np.ndarray) -> np.ndarray:
    """robosuite's quaternion (x, y, z, w) -> axis-angle (3), as openpi's LIBERO client computes it.

    w is clipped to [-1, 1]; if sqrt(1 - w^2) is close to 0 the result is zero; otherwise
    `xyz * 2 * acos(w) / sqrt(1 - w^2)`. There is no antipodal (w >= 0) normalization, so q and -q give
    different vectors (angles theta and 2*pi - theta). The input is not modified.
    """
    # A copy: robosuite clips w in place, which would mutate the caller's (possibly read-only) buffer.
    q = np.array(quat, dtype=np.float64)
    w = min(max(q[3], -1.0), 1.0)
    den = np.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return (q[:3] * 2.0 * math.acos(w)) / den


def libero_state(eef_pos: np.ndarray, eef_quat: np.ndarray, gripper_qpos: np.ndarray) -> np.ndarray:
    """openpi's 8-D LIBERO state: eef position (3), axis-angle of the eef quaternion (3), gripper qpos (2)."""
    state = np.concatenate(
        [
            np.asarray(eef_pos, dtype=np.float64),
            quat2axisangle(eef_quat),
            np.asarray(gripper_qpos, np.float64),
        ]
    )
    if state.shape != (8,):
        raise ValueError(f"LIBERO state has shape {state.shape}, expected (8,)")
    return state.astype(np.float32)
