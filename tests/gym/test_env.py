"""Registration, spaces, episode identity, step budget, rendering and pickling of `EvalkitEnv`."""

import pickle
import re

import gymnasium
import numpy as np
import pytest

import evalkit.gym
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import episodes_for
from evalkit.runner import EvalConfig
from evalkit.runner.evaluate import resolve_suites

# slow: LIBERO and DROID-style scenes
pytestmark = pytest.mark.slow


def test_one_id_per_suite_and_none_per_group():
    ids = set(evalkit.gym.register_suites())
    for name in ("libero_spatial", "libero_10", "libero_90", "libero_spatial_lan", "droid", "droid_demo"):
        assert f"evalkit/{name}-v0" in ids and f"evalkit/{name}-v0" in gymnasium.registry
    assert "evalkit/libero-v0" not in ids and "evalkit/libero_pro-v0" not in ids  # groups
    spec = gymnasium.spec("evalkit/libero_spatial-v0")
    assert spec.kwargs == {"suite": "libero_spatial"} and spec.entry_point == evalkit.gym.ENTRY_POINT


def test_libero_spaces_follow_the_protocol():
    env = gymnasium.make("evalkit/libero_spatial-v0", task=3, protocol="lerobot")
    try:
        obs_space, act_space = env.observation_space, env.action_space
        assert set(obs_space.keys()) == {
            "observation/image",
            "observation/wrist_image",
            "observation/state",
            "prompt",
        }
        for key in ("observation/image", "observation/wrist_image"):
            assert obs_space[key].shape == (224, 224, 3) and obs_space[key].dtype == np.uint8
        assert (
            obs_space["observation/state"].shape == (8,)
            and obs_space["observation/state"].dtype == np.float32
        )
        assert isinstance(obs_space["prompt"], gymnasium.spaces.Text)
        assert obs_space["prompt"].contains(env.unwrapped.instruction)
        assert act_space.shape == (7,) and act_space.dtype == np.float32
        assert np.all(act_space.low == -1) and np.all(act_space.high == 1)
        assert env.unwrapped.protocol.name == "lerobot" and env.metadata["render_fps"] == 20
    finally:
        env.close()


def test_droid_action_bounds_per_action_mode():
    velocity = gymnasium.make("evalkit/droid-v0", task=0)
    position = gymnasium.make("evalkit/droid-v0", task=0, protocol="droid_jointpos")
    try:
        np.testing.assert_array_equal(velocity.action_space.low, [-1] * 7 + [0])
        np.testing.assert_array_equal(velocity.action_space.high, [1] * 8)
        sim = position.unwrapped.sim
        np.testing.assert_array_equal(position.action_space.low[:7], sim.joint_low.astype(np.float32))
        np.testing.assert_array_equal(position.action_space.high[:7], sim.joint_high.astype(np.float32))
        assert position.action_space.low[7] == 0 and position.action_space.high[7] == 1
        obs_space = velocity.observation_space
        assert obs_space["observation/joint_position"].shape == (7,)
        assert obs_space["observation/gripper_position"].shape == (1,)
        assert obs_space["observation/wrist_image_left"].shape == (224, 224, 3)
        assert velocity.metadata["render_fps"] == 15
    finally:
        velocity.close()
        position.close()


def test_default_seed_is_the_runner_episode_seed():
    """lerobot's protocol reseeds episode k with seed + k: reset() starts the episode `evalkit eval` runs."""
    config = EvalConfig(
        suite="libero_spatial", policy="zero", tasks=(1,), episodes_per_task=3, protocol="lerobot"
    )
    expected = [e.episode_id for e in episodes_for(resolve_suites(config))]
    assert expected[-1] == "libero_spatial/1/2/1002"
    env = gymnasium.make("evalkit/libero_spatial-v0", task=1, init_state=2, protocol="lerobot", max_steps=2)
    try:
        obs, info = env.reset()
        assert info["episode_id"] == expected[-1]
        assert env.observation_space.contains(obs) and info["instruction"] == obs["prompt"]
        _, info = env.reset(seed=5, options={"init_state": 0})
        assert info["episode_id"] == "libero_spatial/1/0/5"
    finally:
        env.close()


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(EvalkitError, match="unknown suite"):
        evalkit.gym.EvalkitEnv("libero_spatail")
    with pytest.raises(EvalkitError, match="no task"):
        gymnasium.make("evalkit/libero_spatial-v0", task=99)
    with pytest.raises(EvalkitError, match="images must be"):
        gymnasium.make("evalkit/droid-v0", images="sometimes")
    with pytest.raises(EvalkitError, match="initial states"):
        gymnasium.make("evalkit/libero_spatial-v0", init_state=50)
    with pytest.raises(EvalkitError, match="unknown protocol"):
        gymnasium.make("evalkit/droid-v0", protocol="openpi")


@pytest.mark.parametrize("value", ["0", 1.5, True, None])
def test_task_and_init_state_must_be_integers(value):
    """Issue 22: task="0", 1.5 and True were taken as task 0, 1 and 1."""
    with pytest.raises(EvalkitError, match=rf"^task must be an integer, not {re.escape(repr(value))} \("):
        gymnasium.make("evalkit/droid-v0", task=value)
    with pytest.raises(
        EvalkitError, match=rf"^init_state must be an integer, not {re.escape(repr(value))} \("
    ):
        gymnasium.make("evalkit/droid-v0", task=0, init_state=value)
    env = gymnasium.make("evalkit/droid-v0", task=np.int64(1), init_state=np.int32(2)).unwrapped
    assert (env.task_id, env.init_state) == (1, 2) and type(env.task_id) is int
    env.close()


@pytest.fixture(scope="module")
def droid_env():
    env = gymnasium.make("evalkit/droid-v0", task=0, max_steps=3, render_mode="rgb_array").unwrapped
    yield env
    env.close()


def test_episode_identity_and_reset_options(droid_env):
    with pytest.raises(EvalkitError, match="before reset"):
        droid_env.step(np.zeros(8))
    first, info = droid_env.reset()
    assert info["episode_id"] == "droid/0/0/7"
    again, _ = droid_env.reset()
    np.testing.assert_array_equal(
        first["observation/exterior_image_1_left"], again["observation/exterior_image_1_left"]
    )
    other, info = droid_env.reset(options={"init_state": 1})
    assert info["episode_id"] == "droid/0/1/7"
    assert not np.array_equal(other["observation/joint_position"], first["observation/joint_position"])
    _, info = droid_env.reset()  # the init state is kept
    assert info["episode_id"] == "droid/0/1/7"
    _, info = droid_env.reset(seed=3, options={"init_state": 0})
    assert info["episode_id"] == "droid/0/0/3"
    with pytest.raises(EvalkitError, match="reset option"):
        droid_env.reset(options={"task": 1})


def test_step_budget_truncates(droid_env):
    droid_env.reset()
    results = [droid_env.step(np.zeros(8)) for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True]  # truncated once the budget is spent
    assert not any(r[2] for r in results)
    obs, reward, _, _, info = results[-1]
    assert reward == 0.0 and info["steps"] == 3 and info["success"] is False
    assert set(info["progress"]) == {"reached", "grasped", "lifted", "success"}
    assert droid_env.observation_space.contains(obs)
    with pytest.raises(EvalkitError, match="has ended"):
        droid_env.step(np.zeros(8))
    with pytest.raises(EvalkitError, match="8 values"):
        droid_env.reset()
        droid_env.step(np.zeros(7))


def test_render_on_request_only(droid_env):
    droid_env.reset()
    sim = droid_env.sim
    before = sim.render_calls
    frame = droid_env.render()
    assert frame.shape == (180, 3 * 320, 3) and frame.dtype == np.uint8
    assert sim.render_calls == before + 3  # one per camera, only because render() was called
    plain = gymnasium.make("evalkit/droid-v0", task=0).unwrapped
    try:
        plain.reset()
        assert plain.render() is None
    finally:
        plain.close()


def test_policy_steps_mode_renders_only_where_a_policy_is_asked():
    env = gymnasium.make("evalkit/droid-v0", task=0, images="policy_steps").unwrapped
    try:
        obs, _ = env.reset()
        replan = env.protocol.replan_steps
        calls = env.sim.render_calls
        previous = obs["observation/wrist_image_left"]
        for step in range(1, replan + 1):
            obs, _, _, _, info = env.step(np.full(8, 0.3))
            fresh = step % replan == 0
            assert info["images_fresh"] is fresh and info["policy_step"] is fresh
            if not fresh:
                np.testing.assert_array_equal(obs["observation/wrist_image_left"], previous)
                assert not np.shares_memory(obs["observation/wrist_image_left"], previous)
        assert env.sim.render_calls == calls + 3  # three cameras, once, at step `replan`
        assert not np.array_equal(obs["observation/wrist_image_left"], previous)  # the arm moved
    finally:
        env.close()


def test_pickled_env_rebuilds_the_same_episode():
    env = gymnasium.make("evalkit/droid-v0", task=1, init_state=4).unwrapped
    clone = pickle.loads(pickle.dumps(env))
    try:
        a, _ = env.reset()
        b, _ = clone.reset()
        assert clone.init_state == 4 and clone.sim is not env.sim
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    finally:
        env.close()
        clone.close()
