import numpy as np
import pytest

from evalkit.core.embodiment import EMBODIMENTS, embodiment
from evalkit.core.errors import EvalkitError


def test_one_table_for_both_robots():
    libero, droid = EMBODIMENTS["libero"], EMBODIMENTS["droid"]
    assert (libero.action_dim, libero.state_dim, libero.control_hz) == (7, 8, 20.0)
    assert (droid.action_dim, droid.state_dim, droid.control_hz) == (8, 8, 15.0)
    assert droid.policy_cameras == ("observation/exterior_image_1_left", "observation/wrist_image_left")
    assert set(droid.policy_cameras) <= set(droid.cameras)
    with pytest.raises(EvalkitError, match="unknown embodiment 'aloha'"):
        embodiment("aloha")


def test_state_vector_checks_keys_sizes_and_values():
    droid = EMBODIMENTS["droid"]
    obs = {"observation/joint_position": np.arange(7), "observation/gripper_position": [0.5]}
    assert droid.state_vector(obs).tolist() == [0, 1, 2, 3, 4, 5, 6, 0.5]
    with pytest.raises(EvalkitError, match="no 'observation/gripper_position'"):
        droid.state_vector({"observation/joint_position": np.zeros(7)})
    with pytest.raises(EvalkitError, match="has 6 values, expected 7"):
        droid.state_vector({**obs, "observation/joint_position": np.zeros(6)})
    with pytest.raises(EvalkitError, match="not finite"):
        droid.state_vector({**obs, "observation/gripper_position": [np.nan]})
