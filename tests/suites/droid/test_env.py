"""The DROID env's observation/action spec, timing, determinism, orientation and render-free stepping."""

import dataclasses

import numpy as np
import pytest
import yaml

from evalkit.core.errors import EvalkitError
from evalkit.suites.kinds import make_env
from evalkit.suites.registry import PACKAGED_TASKS, build_suite
from tests.suites.droid.conftest import episode

# slow: DROID-style MuJoCo scenes
pytestmark = pytest.mark.slow

TASK = "put_red_block_in_bowl"
WIRE_IMAGES = (
    "observation/exterior_image_1_left",
    "observation/exterior_image_2_left",
    "observation/wrist_image_left",
)


def test_observation_spec(env_factory):
    env = env_factory(TASK)
    env.reset(episode(env))
    obs = env.observe(cameras=False)
    assert set(obs) == {"observation/joint_position", "observation/gripper_position", "prompt"}
    q, g = obs["observation/joint_position"], obs["observation/gripper_position"]
    assert q.shape == (7,) and q.dtype == np.float32 and g.shape == (1,) and g.dtype == np.float32
    assert np.all(q >= env.joint_low) and np.all(q <= env.joint_high)
    assert 0.0 <= g[0] < 0.05  # open at reset
    assert obs["prompt"] == "put the red block in the bowl"

    obs = env.observe(cameras=True)
    for key in WIRE_IMAGES:
        assert obs[key].shape == (224, 224, 3) and obs[key].dtype == np.uint8
        assert (
            obs[key][:20].max() == 0 and obs[key][-20:].max() == 0
        )  # resize_with_pad's black bands (180x320)
        assert obs[key][60:160].std() > 5  # a real picture in between
    assert not any(k.startswith("privileged/") for k in obs)

    priv = env.observe(cameras=False, privileged=True)
    assert priv["privileged/jacobian"].shape == (6, 7)
    assert priv["privileged/object/red_block/box"].shape == (2, 3)
    assert not any(k in priv for k in WIRE_IMAGES)


def test_gripper_closes_to_one_and_reopens(env_factory):
    env = env_factory(TASK)
    env.reset(episode(env))
    for _ in range(15):
        env.step(np.array([0, 0, 0, 0, 0, 0, 0, 0.9]))
    assert env.gripper_position()[0] > 0.9
    for _ in range(15):
        env.step(np.array([0, 0, 0, 0, 0, 0, 0, 0.4]))  # binarized at 0.5: open
    assert env.gripper_position()[0] < 0.05


def test_control_rate_is_15_hz_in_sim_time(env_factory):
    env = env_factory(TASK)
    env.reset(episode(env))
    t0 = env.data.time
    for _ in range(30):
        env.step(np.zeros(8))
    assert env.data.time - t0 == pytest.approx(2.0, abs=1e-9)


def test_velocity_actions_are_clipped_to_unit_range(env_factory):
    env = env_factory(TASK)
    results = []
    for scale in (1.0, 7.0):
        env.reset(episode(env))
        env.step(np.array([scale, 0, 0, 0, 0, 0, 0, 0]))
        results.append(env.data.qpos[env.scene.arm_qpos].copy())
    np.testing.assert_array_equal(results[0], results[1])
    env.reset(episode(env))
    q0 = env.data.qpos[env.scene.arm_qpos].copy()
    for _ in range(3):
        env.step(np.array([0.5, 0, 0, 0, 0, 0, 0, 0]))
    moved = env.data.qpos[env.scene.arm_qpos] - q0
    assert 0.1 < moved[0] < 0.3 + 1e-6  # 3 steps x 0.5 x 0.2 rad commanded; the servo lags a little
    with pytest.raises(EvalkitError):
        env.step(np.zeros(7))
    with pytest.raises(EvalkitError):
        env.step(np.full(8, np.nan))


def test_joint_position_mode_clips_to_limits():
    from evalkit.suites.registry import resolve

    suite = resolve("droid", protocol="droid_jointpos")[0]
    task = next(t for t in suite.tasks if t.name == "pick_up_blue_block")
    env = make_env(suite, task.task_id)
    try:
        env.reset(episode(env))
        target = env.data.qpos[env.scene.arm_qpos].copy()
        target[0] += 0.1
        for _ in range(20):
            env.step(np.r_[target, 0.0])
        assert env.data.qpos[env.scene.arm_qpos][0] == pytest.approx(target[0], abs=0.005)
        env.step(np.r_[np.full(7, 100.0), 0.0])
        ctrl = env.data.ctrl[env.scene.arm_actuators]
        np.testing.assert_allclose(ctrl, env.joint_high)
    finally:
        env.close()


def test_layouts_are_deterministic_per_episode(env_factory):
    env = env_factory(TASK)

    def layout(index, seed):
        env.reset(episode(env, index, seed))
        return env.data.qpos.copy(), env.model.cam_pos.copy()

    a, b, c, d = layout(3, 7), layout(3, 7), layout(4, 7), layout(3, 8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0]) and not np.allclose(a[0], d[0])
    assert not np.allclose(a[1], c[1])  # camera jitter differs too
    jitter = np.abs(a[1][env.scene.cameras["exterior_1"]] - env.scene.camera_base["exterior_1"][0])
    assert np.all(jitter <= env.cfg.camera_jitter_m + 1e-12) and jitter.max() > 0


def test_step_never_renders_and_physics_ignores_rendering(env_factory):
    env = env_factory(TASK)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (12, 8))
    trajectories = []
    for render in (False, True):
        env.reset(episode(env))
        calls = env.render_calls
        for a in actions:
            env.step(a)
            if render:
                env.observe(cameras=True)
        assert env.render_calls - calls == (3 * len(actions) if render else 0)
        trajectories.append(env.data.qpos.copy())
    np.testing.assert_array_equal(trajectories[0], trajectories[1])
    calls = env.render_calls
    env.observe(cameras=False, privileged=True)
    assert env.render_calls == calls
    frame = env.frame()
    assert frame.shape == (180, 3 * 320, 3) and frame.dtype == np.uint8 and env.render_calls == calls + 3


def test_images_are_upright():
    """A red marker hung high above a blue one on the table shows up nearer the top of every exterior view."""
    data = yaml.safe_load((PACKAGED_TASKS / "droid" / "droid.yaml").read_text())
    data["scenes"]["markers"] = {
        "objects": [
            {
                "name": "high",
                "asset": "box",
                "size": [0.03, 0.03, 0.03],
                "rgba": [1, 0, 0, 1],
                "fixed": True,
                "x": -0.1,
                "y": 0.0,
                "z": 0.35,
            },
            {
                "name": "low",
                "asset": "box",
                "size": [0.03, 0.03, 0.03],
                "rgba": [0, 0, 1, 1],
                "fixed": True,
                "x": -0.1,
                "y": 0.3,
            },
        ]
    }
    data["tasks"] = [
        {
            "name": "markers",
            "scene": "markers",
            "instruction": "look",
            "success": {"kind": "lifted", "object": "low", "value": 0.5},
        }
    ]
    suite = build_suite("markers", data)
    env = make_env(suite, 0)
    try:
        env.reset(episode(env))
        for cam in ("exterior_1", "exterior_2"):
            image = env.render(cam).astype(int)
            red = np.argwhere((image[..., 0] > 150) & (image[..., 1] < 60) & (image[..., 2] < 60))
            blue = np.argwhere((image[..., 2] > 150) & (image[..., 0] < 60) & (image[..., 1] < 60))
            assert len(red) > 20 and len(blue) > 20, cam
            assert red[:, 0].mean() < blue[:, 0].mean(), cam  # rows grow downward
    finally:
        env.close()


def test_wrist_camera_sees_the_fingers_at_the_bottom(env_factory):
    env = env_factory(TASK)
    env.reset(episode(env))
    image = env.render("wrist").astype(int)
    dark = image.sum(axis=2) < 120  # the black finger pads
    h = image.shape[0]
    assert dark[h // 2 :].mean() > 3 * dark[: h // 2].mean()


def test_zero_policy_never_succeeds(env_factory):
    for name in ("put_red_block_in_bowl", "close_top_drawer"):
        env = env_factory(name)
        env.reset(episode(env))
        assert not any(env.step(np.zeros(8)) for _ in range(60))
        assert not env.progress()["success"]


def test_suite_spec_is_picklable(droid_suite):
    import pickle

    clone = pickle.loads(pickle.dumps(droid_suite))
    assert dataclasses.asdict(clone.protocol) == dataclasses.asdict(droid_suite.protocol)
