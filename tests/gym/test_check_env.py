"""gymnasium's own API checker on one task of each suite kind."""

import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import evalkit.gym  # noqa: F401  (registers the ids)

# slow: LIBERO scenes
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("env_id", ["evalkit/libero_spatial-v0", "evalkit/droid-v0"])
def test_check_env_passes(env_id):
    env = gymnasium.make(env_id, task=0)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped)
    finally:
        env.close()
    messages = [str(w.message) for w in caught if "WARN:" in str(w.message)]  # gymnasium.logger's
    # the only complaint allowed: unbounded robot state (positions have no honest finite bound)
    assert all("minimum value is -infinity" in m or "maximum value is infinity" in m for m in messages), (
        messages
    )
