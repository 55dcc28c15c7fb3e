"""`LiberoEnv`: one LIBERO task in a worker process, speaking openpi's LIBERO protocol.

Fidelity to openpi's client (`examples/libero/main.py`):
- the same robosuite environment (`ControlEnv`: OSC_POSE, 20 Hz, hard reset) built once per task and reset
  for every episode, `set_init_state(init_states[k])` for episode k, LIBERO's `done` as success;
- state and images are the values robosuite's observables sample during `step()` (they sample at a physics
  substep inside the control step, not at its end), so they equal `OffScreenRenderEnv`'s observations.

Differences, on purpose:
- Seeding: `env.seed(episode.seed)` before EVERY reset, so an episode never depends on which episodes ran
  before it in the same worker. openpi seeds once per task, so its episode k > 0 continues the RNG of the
  earlier episodes (the RNG places fixtures, which `set_init_state` does not overwrite).
- Rendering on demand: no camera is rendered inside `step()`. At the substep where robosuite would render the
  camera observations, the env keeps a copy of `MjData`; `observe(cameras=True)` and `frame()` render from that
  copy. Physics is untouched (bit-identical to rendering every step); images are pixel-identical.
- robosuite's horizon is raised to at least wait + max_steps + margin so it can never end an episode.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np

from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Observation
from evalkit.core.protocol import SuiteSpec
from evalkit.images import apply_image_transforms, rot180
from evalkit.suites.libero.progress import GoalProgress
from evalkit.suites.libero.transforms import libero_state
from evalkit.suites.robosuite_logs import quiet_robosuite_import

MAIN_CAMERA = "agentview"
HORIZON_MARGIN = 50
# Samples in lockstep with the camera observables (same rate, same update calls since construction).
_SNAPSHOT_OBSERVABLE = "robot0_eef_pos"


def import_control_env():
    """LIBERO's ControlEnv, imported without robosuite's three import-time "no private macro file" warnings."""
    with quiet_robosuite_import():
        from libero.libero.envs.env_wrapper import ControlEnv
    return ControlEnv


class LiberoEnv:
    """A `SimEnv` for one task of a LIBERO suite."""

    def __init__(self, suite: SuiteSpec, task_id: int):
        files = suite.options["task_files"].get(task_id)
        if files is None:
            raise EvalkitError(f"suite {suite.name!r} has no task {task_id}")
        self.suite_name = suite.name
        self.task_id = task_id
        self.protocol = suite.protocol
        self.language = suite.task(task_id).language
        self.bddl_file = files["bddl"]
        self.init_states_file = files["init_states"]
        self.horizon = max(1000, self.protocol.wait_steps + self.protocol.max_steps + HORIZON_MARGIN)
        self._env = None  # libero ControlEnv
        self._init_states: np.ndarray | None = None
        self._renderer = None
        self._bound_model = None
        self._obs: dict | None = None  # robosuite observation dict of the latest step / reset
        self._snapshot = None  # copy of MjData at the latest observable sample
        self._render_cache: dict[str, np.ndarray] = {}  # camera -> raw image of the current snapshot
        self._goal: GoalProgress | None = None

    # -- construction -------------------------------------------------------------------------------------
    def _control_env_class(self) -> type:
        """The ControlEnv to build (LIBERO's; a subclass may bring its fork's), its config in place."""
        from evalkit.suites.libero.config_file import ensure_libero_config

        ensure_libero_config()
        return import_control_env()

    def _build(self) -> None:
        from evalkit.rendering import configure_gl

        configure_gl()
        ControlEnv = self._control_env_class()
        height, width = self.protocol.render_size
        self._env = ControlEnv(
            bddl_file_name=self.bddl_file,
            camera_names=[cam for _, cam in self.protocol.cameras] or [MAIN_CAMERA],
            camera_heights=height,
            camera_widths=width,
            # cameras are rendered on demand from the snapshot (see module docstring), so ControlEnv.step renders
            # no image (nor corrupts one, in LIBERO-plus)
            use_camera_obs=False,
            has_offscreen_renderer=False,
            control_freq=self.protocol.control_hz,
            horizon=self.horizon,
        )
        observable = self._env.env._observables[_SNAPSHOT_OBSERVABLE]
        inner = observable._filter

        def record_snapshot(value):  # robosuite calls an observable's filter exactly when it samples
            self._take_snapshot()
            return inner(value)

        # The filter (unlike the sensor) survives robosuite's hard resets.
        self._env.env.modify_observable(_SNAPSHOT_OBSERVABLE, "filter", record_snapshot)

    def _take_snapshot(self) -> None:
        env = self._env.env if self._env is not None else None
        if env is None or env.sim is None:
            return
        self._snapshot = copy.copy(env.sim.data._data)
        self._render_cache.clear()

    def _init_state(self, index: int) -> np.ndarray:
        if self._init_states is None:
            from evalkit.suites.libero.catalog import load_init_states

            self._init_states = load_init_states(self.init_states_file)
        if not 0 <= index < len(self._init_states):
            raise EvalkitError(
                f"{self.suite_name} task {self.task_id} has {len(self._init_states)} initial states; asked for {index}"
            )
        return self._init_states[index]

    # -- SimEnv -------------------------------------------------------------------------------------------
    def reset(self, episode: EpisodeSpec) -> None:
        if self._env is None:
            self._build()
        init_state = self._init_state(episode.init_state)
        self._env.seed(episode.seed)  # np.random.seed: fixture placement during reset draws from it
        self._env.reset()  # hard reset: rebuilds the MuJoCo model and data
        self._snapshot = None
        self._obs = self._env.set_init_state(init_state)  # forces an observable sample -> snapshot
        self._goal = GoalProgress(self._env.env)

    def step(self, action: np.ndarray) -> bool:
        if self._env is None or self._obs is None:
            raise RuntimeError("LiberoEnv.step called before reset")
        obs, _reward, done, _info = self._env.step(np.asarray(action, dtype=np.float64))
        self._obs = obs
        self._goal.update()
        return bool(done)

    def observe(self, cameras: bool, privileged: bool = False) -> Observation:
        if self._obs is None:
            raise RuntimeError("LiberoEnv.observe called before reset")
        obs = self._obs
        out: Observation = {
            "observation/state": libero_state(
                obs["robot0_eef_pos"], obs["robot0_eef_quat"], obs["robot0_gripper_qpos"]
            ),
            "prompt": self.language,
        }
        if cameras:
            for wire, camera in self.protocol.cameras:
                out[wire] = apply_image_transforms(
                    self.raw_image(camera), self.protocol.image_transforms, self.protocol.image_size
                )
        return out

    def frame(self) -> np.ndarray:
        """The main camera, upright, at render size (for videos)."""
        camera = self.protocol.cameras[0][1] if self.protocol.cameras else MAIN_CAMERA
        return rot180(self.raw_image(camera))

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """6 OSC_POSE deltas and the gripper (-1 open .. 1 close), each in [-1, 1]: robosuite's OSC controller clips
        its input to input_min/input_max = -1/1 (robosuite controllers/config/osc_pose.json)."""
        return -np.ones(self.protocol.action_dim), np.ones(self.protocol.action_dim)

    def progress(self) -> dict[str, bool]:
        """The BDDL goal's conjuncts that held at the episode's best step (`evalkit.suites.libero.progress`)."""
        return self._goal.flags() if self._goal is not None else {}

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._env is not None:
            env, self._env = self._env, None
            with contextlib.suppress(Exception):
                env.close()
        self._snapshot = None
        self._obs = None

    # -- rendering ----------------------------------------------------------------------------------------
    def raw_image(self, camera: str) -> np.ndarray:
        """A camera image as robosuite's observation would hold it (render size, OpenGL rows: upside down)."""
        if self._snapshot is None:
            raise RuntimeError("LiberoEnv: no simulation state to render (call reset first)")
        cached = self._render_cache.get(camera)
        if cached is not None:
            return cached
        env = self._env.env
        model = env.sim.model._model
        if self._renderer is None:
            from evalkit.suites.libero.render import CameraRenderer

            self._renderer = CameraRenderer()
        if self._bound_model is not model:
            self._renderer.bind(model, env.model.get_xml())
            self._bound_model = model
        height, width = self.protocol.render_size
        image = self._renderer.render(self._snapshot, camera, height, width)
        self._render_cache[camera] = image
        return image

    @property
    def sim_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(qpos, qvel) copies of the live simulation (for tests)."""
        data = self._env.env.sim.data
        return np.array(data.qpos), np.array(data.qvel)
