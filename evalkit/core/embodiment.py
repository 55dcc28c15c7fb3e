"""Embodiments: the wire contract between a simulated robot and a policy, one row per robot.

The keys are the ones openpi's clients send (openpi `examples/libero/main.py`, `examples/droid/main.py`), so an
openpi policy server and an evalkit suite speak the same observation dict. Everything that needs these facts
(envs, the pi05 adapter, the policy server, the remote client, CLI choices, protocol validation) reads them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from evalkit.core.errors import EvalkitError

PROMPT_KEY = "prompt"
PRIVILEGED_PREFIX = "privileged/"  # simulator state for scripted oracles; never sent to a learned policy

ActionMode = Literal["eef_delta", "joint_velocity", "joint_position"]
ACTION_MODES: tuple[str, ...] = ("eef_delta", "joint_velocity", "joint_position")


@dataclass(frozen=True)
class Embodiment:
    name: str
    cameras: tuple[str, ...]  # every image key the robot can send, in wire order
    base_camera: str  # the key openpi's policy transforms feed into `base_0_rgb`
    wrist_camera: str  # the key fed into `left_wrist_0_rgb`
    state: tuple[tuple[str, int], ...]  # (wire key, dims), concatenated in this order into the model's state
    action_dim: int  # dims of each executed action
    action_modes: tuple[ActionMode, ...]  # what an action can mean on this robot; the first is the default
    control_hz: float

    @property
    def state_dim(self) -> int:
        return sum(dims for _, dims in self.state)

    @property
    def state_keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.state)

    @property
    def policy_cameras(self) -> tuple[str, ...]:
        """The images an openpi policy for this robot reads."""
        return (self.base_camera, self.wrist_camera)

    def state_vector(self, obs: dict[str, Any], where: str = "observation") -> np.ndarray:
        """The state keys of `obs` concatenated as float32; a missing key, wrong size or non-finite value is an error."""
        parts = []
        for key, dims in self.state:
            if key not in obs:
                raise EvalkitError(f"{where}: no {key!r} ({self.name} observations carry it)")
            value = np.asarray(obs[key], dtype=np.float32).reshape(-1)
            if value.shape != (dims,):
                raise EvalkitError(f"{where}: {key!r} has {value.size} values, expected {dims}")
            parts.append(value)
        state = np.concatenate(parts)
        if not np.all(np.isfinite(state)):
            raise EvalkitError(f"{where}: the robot state is not finite: {state.tolist()}")
        return state


EMBODIMENTS: dict[str, Embodiment] = {
    # LIBERO (openpi examples/libero/main.py): agentview + wrist at 224, state = eef pos (3) + axis-angle (3) +
    # gripper qpos (2); 7-dim actions = EEF delta (6) + gripper (-1 open, +1 close); 20 Hz.
    "libero": Embodiment(
        name="libero",
        cameras=("observation/image", "observation/wrist_image"),
        base_camera="observation/image",
        wrist_camera="observation/wrist_image",
        state=(("observation/state", 8),),
        action_dim=7,
        action_modes=("eef_delta",),
        control_hz=20.0,
    ),
    # DROID (openpi examples/droid/main.py): two exterior cameras + wrist, state = 7 joints + gripper (0 open,
    # 1 closed); 8-dim actions = joint velocities (pi05_droid) or absolute joint positions (*_droid_jointpos) +
    # gripper; 15 Hz.
    "droid": Embodiment(
        name="droid",
        cameras=(
            "observation/exterior_image_1_left",
            "observation/exterior_image_2_left",
            "observation/wrist_image_left",
        ),
        base_camera="observation/exterior_image_1_left",
        wrist_camera="observation/wrist_image_left",
        state=(("observation/joint_position", 7), ("observation/gripper_position", 1)),
        action_dim=8,
        action_modes=("joint_velocity", "joint_position"),
        control_hz=15.0,
    ),
}


def embodiment(name: str) -> Embodiment:
    try:
        return EMBODIMENTS[name]
    except KeyError:
        raise EvalkitError(f"unknown embodiment {name!r}; choose one of {', '.join(EMBODIMENTS)}") from None
