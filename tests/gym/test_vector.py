"""`gymnasium.make_vec(..., vectorization_mode="async")` in spawned processes gives the single env's episodes."""

import gymnasium
import numpy as np
import pytest

import evalkit.gym  # noqa: F401  (registers the ids)

# slow: LIBERO scenes, a vector of env processes
pytestmark = pytest.mark.slow


def single_rollout(init_state: int, actions: np.ndarray) -> list[dict]:
    env = gymnasium.make("evalkit/droid-v0", task=2, init_state=init_state, max_steps=6)
    try:
        out = [env.reset()[0]]
        out += [env.step(a)[0] for a in actions]
        return out
    finally:
        env.close()


@pytest.mark.parametrize("shared_memory", [True, False])
def test_async_vector_env_in_spawned_processes(shared_memory):
    actions = np.random.default_rng(1).uniform(-0.5, 0.5, (3, 2, 8)).astype(np.float32)
    envs = gymnasium.make_vec(
        "evalkit/droid-v0",
        num_envs=2,
        vectorization_mode="async",
        vector_kwargs={"context": "spawn", "shared_memory": shared_memory},
        task=2,
        max_steps=6,
    )
    try:
        assert envs.get_attr("init_state") == (0, 0)
        envs.set_attr("init_state", [0, 3])  # sub-env i runs episode i's init state
        obs, info = envs.reset()
        batches = [obs]
        assert list(info["episode_id"]) == ["droid/2/0/7", "droid/2/3/7"]
        assert obs["prompt"] == ("pick up the blue block",) * 2
        for step in actions:
            obs, reward, terminated, truncated, info = envs.step(step)
            batches.append(obs)
        assert obs["observation/exterior_image_1_left"].shape == (2, 224, 224, 3)
        assert obs["prompt"] == ("pick up the blue block",) * 2
        assert not terminated.any() and not truncated.any() and list(info["steps"]) == [3, 3]
    finally:
        envs.close()
    for i, init_state in enumerate((0, 3)):
        expected = single_rollout(init_state, actions[:, i])
        for t, (batch, single) in enumerate(zip(batches, expected, strict=True)):
            for key, value in single.items():
                got = batch[key][i]
                if isinstance(value, np.ndarray):
                    np.testing.assert_array_equal(got, value, err_msg=f"env {i} step {t} {key}")
                else:
                    assert got == value
