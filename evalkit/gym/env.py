"""`EvalkitEnv`: one task of an evalkit suite as a `gymnasium.Env`, run exactly as `evalkit eval` runs it.

An episode is (suite, task, init state, seed), as in `evalkit eval`: `reset(seed=None)` starts init state
`init_state` under the seed the protocol gives that episode (`EvalProtocol.episode_seed`, as `episodes_for` does),
`reset(seed=s)` under seed s; so a plain `reset()` (and a vector env's autoreset) replays the same episode.
The protocol's settle steps run inside `reset`; `terminated` is the task's success check, `truncated` the end of
the protocol's step budget. Observations are the wire format a policy gets from the runner (see `spaces.py`).

Cameras are rendered on demand. `images="every_step"` renders them for every observation;
`images="policy_steps"` only where the runner would ask the policy for a chunk (after reset and then every
`replan_steps` steps), and other steps return copies of the previous images (`info["images_fresh"]` is False).
"""

from __future__ import annotations

import numbers
from typing import Any

import gymnasium
import numpy as np
from gymnasium.utils import EzPickle

from evalkit.core.embodiment import embodiment
from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import SuiteSpec
from evalkit.gym import spaces as evalkit_spaces
from evalkit.suites.base import SimEnv
from evalkit.suites.kinds import make_env

IMAGE_MODES = ("every_step", "policy_steps")


def index_argument(value: Any, what: str) -> int:
    """`task` and `init_state` are integers (a numpy integer too); "0", 1.5 and True are refused, not converted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise EvalkitError(f"{what} must be an integer, not {value!r} ({type(value).__name__})")
    return int(value)


def resolve_suite(suite: str, task: int, protocol: str | None, max_steps: int | None) -> SuiteSpec:
    """The suite (one, not a group) with `task` selected and the protocol preset / step budget applied."""
    from evalkit.suites import registry

    specs = registry.resolve(suite, protocol=protocol, max_steps=max_steps, tasks=(task,))
    if len(specs) != 1:
        raise EvalkitError(f"{suite!r} is a group of {len(specs)} suites; make one of its suites")
    return specs[0]


class EvalkitEnv(gymnasium.Env, EzPickle):
    """One task of an evalkit suite (`gymnasium.make("evalkit/<suite>-v0", task=..., init_state=...)`)."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        suite: str,
        task: int = 0,
        init_state: int = 0,
        protocol: str | None = None,
        max_steps: int | None = None,
        images: str = "every_step",
        render_mode: str | None = None,
    ):
        EzPickle.__init__(self, suite, task, init_state, protocol, max_steps, images, render_mode)
        if images not in IMAGE_MODES:
            raise EvalkitError(f"images must be one of {', '.join(IMAGE_MODES)}, not {images!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise EvalkitError(f"render_mode must be None or 'rgb_array', not {render_mode!r}")
        from evalkit.rendering import configure_gl

        configure_gl()  # before any simulator module is imported in this process (spawned vector-env workers)
        self.task_id = index_argument(task, "task")
        self.suite = resolve_suite(suite, self.task_id, protocol, max_steps)
        self.protocol = self.suite.protocol
        self.instruction = self.suite.task(self.task_id).language
        self.images = images
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.protocol.control_hz}
        self.init_state = init_state
        self.sim: SimEnv = make_env(self.suite, self.task_id)
        self.observation_space = evalkit_spaces.observation_space(self.suite)
        self.action_space = evalkit_spaces.action_space(self.suite, self.sim.action_bounds())
        self.episode: EpisodeSpec | None = None
        self.steps = 0
        self.success = False
        self._images: dict[str, np.ndarray] = {}

    # -- the episode identity -----------------------------------------------------------------------------
    @property
    def init_state(self) -> int:
        """The init state the next `reset()` starts from (settable, e.g. `envs.set_attr("init_state", [...])`)."""
        return self._init_state

    @init_state.setter
    def init_state(self, value: int) -> None:
        value = index_argument(value, "init_state")
        n = self.suite.task(self.task_id).num_init_states
        if not 0 <= value < n:
            raise EvalkitError(
                f"{self.suite.name} task {self.task_id} has {n} initial states; asked for {value}"
            )
        self._init_state = value

    # -- gymnasium.Env ------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode: `options={"init_state": k}` picks the init state (kept for later resets); the seed
        defaults to the protocol's for that episode. Runs the protocol's settle steps."""
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"init_state"}
        if unknown:
            raise EvalkitError(f"unknown reset option(s) {sorted(unknown)}; known: init_state")
        if "init_state" in options:
            self.init_state = options["init_state"]
        if seed is None:
            seed = self.protocol.episode_seed(self.init_state)
        self.episode = EpisodeSpec(self.suite.name, self.task_id, self.init_state, int(seed))
        # as the runner's episode loop (evalkit/runner/worker.py): reset, then the settle steps, not counted
        self.sim.reset(self.episode)
        settle = np.asarray(self.protocol.dummy_action, dtype=np.float64)
        for _ in range(self.protocol.wait_steps):
            self.sim.step(settle)
        self.steps, self.success = 0, False
        obs = self._observe(fresh=True)
        return obs, self._info(policy_step=True, images_fresh=True)

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self.episode is None:
            raise EvalkitError("step() before reset()")
        if self.success or self.steps >= self.protocol.max_steps:
            raise EvalkitError("the episode has ended (terminated or truncated); call reset()")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.protocol.action_dim,) or not np.all(np.isfinite(a)):
            raise EvalkitError(
                f"actions are finite vectors of {self.protocol.action_dim} values, got shape {a.shape}"
            )
        self.success = bool(self.sim.step(a))
        self.steps += 1
        policy_step = self.steps % self.protocol.replan_steps == 0
        fresh = self.images == "every_step" or policy_step
        obs = self._observe(fresh)
        truncated = not self.success and self.steps >= self.protocol.max_steps
        info = self._info(policy_step=policy_step, images_fresh=fresh)
        return obs, float(self.success), self.success, truncated, info

    def render(self) -> np.ndarray | None:
        """The main camera(s), upright RGB at render size (what evalkit's videos show), for `rgb_array`."""
        if self.render_mode is None:
            return None
        if self.episode is None:
            raise EvalkitError("render() before reset()")
        return self.sim.frame()

    def close(self) -> None:
        sim = getattr(self, "sim", None)
        if sim is not None:
            sim.close()
        self.episode = None
        super().close()

    # -- helpers --------------------------------------------------------------------------------------------
    def _observe(self, fresh: bool) -> dict[str, Any]:
        obs = self.sim.observe(cameras=fresh)
        if fresh:
            self._images = {wire: obs[wire] for wire in self.protocol.wire_cameras}
        out = {wire: self._images[wire].copy() for wire in self.protocol.wire_cameras}
        for key in embodiment(self.suite.embodiment).state_keys:
            out[key] = np.asarray(obs[key], dtype=np.float32).copy()
        out["prompt"] = obs["prompt"]
        return out

    def _info(self, policy_step: bool, images_fresh: bool) -> dict[str, Any]:
        assert self.episode is not None
        return {
            "success": self.success,
            "progress": self.sim.progress(),
            "instruction": self.instruction,
            "steps": self.steps,
            "episode_id": self.episode.episode_id,
            # a policy would be asked for a new chunk with this observation
            "policy_step": policy_step,
            # images rendered for this step (False: copies of the previous ones)
            "images_fresh": images_fresh,
        }
