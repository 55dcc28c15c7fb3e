"""LiberoEnv against LIBERO's own OffScreenRenderEnv (what openpi's client runs): identical physics, identical
camera pixels, while rendering only on demand. One real LIBERO-Spatial scene; a few seconds per reset."""

import numpy as np
import pytest

from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyRequest
from evalkit.images import apply_image_transforms, rot180
from evalkit.policies.simple import RandomPolicy
from evalkit.suites import registry
from evalkit.suites.libero.transforms import libero_state

# slow: LIBERO scenes
pytestmark = pytest.mark.slow

STEPS = 15
REPLAN = 5
CAMERAS = ("agentview", "robot0_eye_in_hand")


def random_policy_actions(spec: EpisodeSpec) -> np.ndarray:
    """What the runner would execute with the `random` policy: the first REPLAN actions of each chunk."""
    policy = RandomPolicy(action_dim=7)
    chunks = [
        policy.infer([PolicyRequest({}, spec.episode_id, spec.request_seed(i), 7)])[0][:REPLAN]
        for i in range(STEPS // REPLAN)
    ]
    return np.concatenate(chunks).astype(np.float64)


@pytest.fixture(scope="module")
def suite():
    return registry.resolve("libero_spatial", tasks=[0])[0]


@pytest.fixture(scope="module")
def reference(suite):
    """Episodes (init states 0 and 1) in LIBERO's OffScreenRenderEnv, seeded like evalkit seeds every episode."""
    from libero.libero.envs import OffScreenRenderEnv

    from evalkit.suites.libero.catalog import load_init_states

    files = suite.options["task_files"][0]
    init_states = load_init_states(files["init_states"])
    env = OffScreenRenderEnv(bddl_file_name=files["bddl"], camera_heights=256, camera_widths=256)
    out = {}
    try:
        for k in (0, 1):
            spec = EpisodeSpec(suite.name, 0, k, suite.protocol.seed)
            env.seed(spec.seed)
            env.reset()
            obs = env.set_init_state(init_states[k])
            frames = [obs]
            for action in random_policy_actions(spec):
                obs, _, _, _ = env.step(action.tolist())
                frames.append(obs)
            out[k] = {
                "obs": [
                    {
                        key: np.array(v)
                        for key, v in o.items()
                        if key.endswith("_image") or key.startswith("robot0")
                    }
                    for o in frames
                ],
                "qpos": np.array(env.env.sim.data.qpos),
                "qvel": np.array(env.env.sim.data.qvel),
            }
    finally:
        env.close()  # before LiberoEnv renders: robosuite renders into whatever GL context is current
    return out


@pytest.fixture(scope="module")
def runs(suite, reference):
    """One LiberoEnv, two episodes in the opposite order to the reference: init 1 rendering cameras at every step,
    then init 0 rendering them only at replan steps (what the runner asks for)."""
    from evalkit.suites.kinds import make_env

    env = make_env(suite, 0)
    results = {}
    try:
        for name, k, every_step in (("every_step_1", 1, True), ("on_demand_0", 0, False)):
            spec = EpisodeSpec(suite.name, 0, k, suite.protocol.seed)
            env.reset(spec)
            if name == "every_step_1":
                assert env._env.env.sim._render_context_offscreen is None  # robosuite itself never renders
                results["state_only"] = env.observe(cameras=False)
            seen = {}
            for t, action in enumerate(random_policy_actions(spec)):
                if every_step or t % REPLAN == 0:
                    seen[t] = env.observe(cameras=True)
                    seen[t]["raw"] = {cam: env.raw_image(cam).copy() for cam in CAMERAS}
                env.step(action)
            seen[STEPS] = env.observe(cameras=True)
            qpos, qvel = env.sim_state
            results[name] = {"seen": seen, "qpos": qpos, "qvel": qvel, "frame": env.frame()}
        results["horizon"] = env._env.env.horizon
        with pytest.raises(EvalkitError, match="initial states"):
            env.reset(EpisodeSpec(suite.name, 0, 50, 7))
    finally:
        env.close()
    return results


def test_on_demand_rendering_keeps_physics_bit_identical(runs, reference):
    # The reference renders both cameras inside every step (robosuite camera observables); LiberoEnv renders at
    # every step in one episode and only at replan steps in the other. Final states are bit-identical, and the
    # second episode does not depend on the first having run in the same env (reference order: 0 then 1).
    for name, k in (("every_step_1", 1), ("on_demand_0", 0)):
        assert np.array_equal(runs[name]["qpos"], reference[k]["qpos"]), name
        assert np.array_equal(runs[name]["qvel"], reference[k]["qvel"]), name
    assert not np.array_equal(reference[0]["qpos"], reference[1]["qpos"])  # the two episodes really differ


def test_camera_images_equal_offscreen_render_env_pixels(runs, reference, suite):
    proto = suite.protocol
    compared = 0
    for name, k in (("every_step_1", 1), ("on_demand_0", 0)):
        for t, obs in runs[name]["seen"].items():
            ref_obs = reference[k]["obs"][t]
            for wire, cam in proto.cameras:
                expected = apply_image_transforms(
                    ref_obs[f"{cam}_image"], proto.image_transforms, proto.image_size
                )
                assert obs[wire].shape == (224, 224, 3) and obs[wire].dtype == np.uint8
                assert np.array_equal(obs[wire], expected), (name, t, wire)
                if "raw" in obs:
                    assert np.array_equal(obs["raw"][cam], ref_obs[f"{cam}_image"]), (name, t, cam)
                compared += 1
    assert compared == 2 * (STEPS + 1) + 2 * (STEPS // REPLAN + 1)


def test_state_and_prompt_follow_openpi(runs, reference, suite):
    ref0 = reference[1]["obs"][0]
    state = runs["state_only"]
    assert set(state) == {"observation/state", "prompt"}  # no cameras asked, none rendered
    assert (
        state["prompt"]
        == suite.task(0).language
        == "pick up the black bowl between the plate and the ramekin and place it on the plate"
    )
    expected = libero_state(ref0["robot0_eef_pos"], ref0["robot0_eef_quat"], ref0["robot0_gripper_qpos"])
    assert state["observation/state"].dtype == np.float32
    assert np.array_equal(state["observation/state"], expected)
    last = reference[1]["obs"][STEPS]
    final = runs["every_step_1"]["seen"][STEPS]["observation/state"]
    assert np.array_equal(
        final, libero_state(last["robot0_eef_pos"], last["robot0_eef_quat"], last["robot0_gripper_qpos"])
    )


def test_frame_is_upright_agentview_at_render_size(runs, reference):
    frame = runs["on_demand_0"]["frame"]
    assert frame.shape == (256, 256, 3)
    assert np.array_equal(frame, rot180(reference[0]["obs"][STEPS]["agentview_image"]))


def test_robosuite_horizon_never_ends_an_episode(runs, suite):
    proto = suite.protocol
    assert runs["horizon"] >= max(1000, proto.wait_steps + proto.max_steps + 1)
