"""`ReachEnv`: the reach kind's `SimEnv`, a sphere on three slide joints in MuJoCo, servoed to where actions move it."""

from __future__ import annotations

import numpy as np

from evalkit.core.episode import EpisodeSpec
from evalkit.core.policy import Observation
from evalkit.core.protocol import SuiteSpec
from tests.suites.reach_kind import START_JITTER_M, SUCCESS_M

# metres an action of 1 moves the servo target per control step
STEP_M = 0.02
SCENE = """
<mujoco>
  <option timestep="0.01" gravity="0 0 0"/>
  <visual><global offwidth="64" offheight="64"/></visual>
  <worldbody>
    <light pos="0 0 2"/>
    <geom type="plane" size="1 1 0.01" rgba="0.8 0.8 0.8 1"/>
    <camera name="front" pos="0 -1.2 0.6" xyaxes="1 0 0 0 0.45 0.9"/>
    <camera name="top" pos="0 0 1.5"/>
    <body name="effector" pos="0 0 0.1">
      <joint name="x" type="slide" axis="1 0 0" damping="5"/>
      <joint name="y" type="slide" axis="0 1 0" damping="5"/>
      <joint name="z" type="slide" axis="0 0 1" damping="5"/>
      <geom type="sphere" size="0.03" mass="0.1" rgba="0.9 0.2 0.2 1"/>
    </body>
  </worldbody>
  <actuator>
    <position joint="x" kp="50"/>
    <position joint="y" kp="50"/>
    <position joint="z" kp="50"/>
  </actuator>
</mujoco>
"""


class ReachEnv:
    def __init__(self, suite: SuiteSpec, task_id: int):
        import mujoco

        self._mj = mujoco
        self.protocol = suite.protocol
        self.task_id = task_id
        self.language = suite.task(task_id).language
        self.target = np.asarray(suite.options["targets"][task_id])
        self.model = mujoco.MjModel.from_xml_string(SCENE)
        self.data = mujoco.MjData(self.model)
        self.substeps = round(1.0 / (self.protocol.control_hz * self.model.opt.timestep))
        self._renderer = None

    def reset(self, episode: EpisodeSpec) -> None:
        rng = np.random.default_rng([self.task_id, episode.init_state, episode.seed])
        self._mj.mj_resetData(self.model, self.data)
        self.data.qpos[:] = rng.uniform(-START_JITTER_M, START_JITTER_M, 3)
        self.data.ctrl[:] = self.data.qpos
        self._mj.mj_forward(self.model, self.data)

    def step(self, action: np.ndarray) -> bool:
        self.data.ctrl[:] += np.clip(np.asarray(action, dtype=np.float64)[:3], -1.0, 1.0) * STEP_M
        self._mj.mj_step(self.model, self.data, nstep=self.substeps)
        return bool(np.linalg.norm(self.data.qpos - self.target) < SUCCESS_M)

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return -np.ones(self.protocol.action_dim), np.ones(self.protocol.action_dim)

    def observe(self, cameras: bool, privileged: bool = False) -> Observation:
        state = np.concatenate([self.data.qpos, np.zeros(5)]).astype(np.float32)
        obs: Observation = {"observation/state": state, "prompt": self.language}
        for wire, camera in self.protocol.cameras if cameras else ():
            obs[wire] = self._render(camera)
        return obs

    def frame(self) -> np.ndarray:
        return self._render(self.protocol.cameras[0][1])

    def progress(self) -> dict[str, bool]:
        return {}

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _render(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            height, width = self.protocol.render_size
            self._renderer = self._mj.Renderer(self.model, height=height, width=width)
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render().copy()
