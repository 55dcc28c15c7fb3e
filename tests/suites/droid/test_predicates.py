"""Success predicates and the progress rubric on hand-placed simulator states (true and false cases)."""

import mujoco
import numpy as np
import pytest

from evalkit.suites.droid.definitions import Predicate
from evalkit.suites.droid.predicates import Rubric, holds
from tests.suites.droid.conftest import episode

# slow: DROID-style MuJoCo scenes
pytestmark = pytest.mark.slow


def place(env, name, xy, z_above_table, yaw=0.0):
    """Put a free object at (x, y) with its bottom `z_above_table` above the table top."""
    info = env.scene.objects[name]
    z = env.cfg.table_height - info.local_min[2] + z_above_table
    env.data.qpos[info.free_qpos : info.free_qpos + 7] = [
        xy[0],
        xy[1],
        z,
        np.cos(yaw / 2),
        0,
        0,
        np.sin(yaw / 2),
    ]
    env.data.qvel[:] = 0
    mujoco.mj_forward(env.model, env.data)


def settle(env, seconds=0.6):
    mujoco.mj_step(env.model, env.data, nstep=int(seconds / env.model.opt.timestep))


@pytest.fixture
def blocks(env_factory):
    env = env_factory("put_red_block_in_bowl")
    env.reset(episode(env))
    # Clear the middle of the table: park every object far apart on the robot's left and right.
    for i, name in enumerate(["red_block", "green_block", "blue_block"]):
        place(env, name, (-0.25 + 0.12 * i, -0.4), 0.001)
    settle(env, 0.2)
    return env


def center(env, name):
    lo, hi = env.world.box(name)
    return (lo + hi) / 2


def test_inside(blocks):
    env, pred = blocks, Predicate("inside", object="red_block", target="bowl")
    assert not holds(pred, env.world)
    bowl = center(env, "bowl")
    place(env, "red_block", bowl[:2], 0.03)
    settle(env)
    assert holds(pred, env.world)
    place(env, "red_block", bowl[:2] + np.array([0.0, 0.15]) * np.sign(-bowl[1] or 1), 0.001)
    settle(env)
    assert not holds(pred, env.world)


def test_on_top_stack(blocks):
    env, pred = blocks, Predicate("on_top", object="green_block", target="red_block")
    place(env, "red_block", (-0.1, 0.35), 0.001)
    place(env, "green_block", (-0.1, 0.35), 0.05)
    settle(env)
    assert holds(pred, env.world)
    assert not holds(Predicate("on_top", object="red_block", target="green_block"), env.world)
    place(env, "green_block", (-0.1, 0.42), 0.001)  # beside it on the table
    settle(env)
    assert not holds(pred, env.world)


def test_lifted(blocks):
    env, pred = blocks, Predicate("lifted", object="blue_block", value=0.1)
    assert not holds(pred, env.world)
    place(env, "blue_block", (-0.1, 0.3), 0.15)  # in the air (no settling: it would fall)
    assert holds(pred, env.world)
    place(env, "blue_block", (-0.1, 0.3), 0.05)
    assert not holds(pred, env.world)  # not high enough


def test_next_to(blocks):
    env, pred = blocks, Predicate("next_to", object="red_block", target="plate", value=0.05)
    lo, hi = env.world.box("plate")
    place(env, "red_block", ((lo[0] + hi[0]) / 2, hi[1] + 0.022 + 0.03), 0.001)  # 3 cm beside the plate
    settle(env)
    assert holds(pred, env.world)
    place(env, "red_block", ((lo[0] + hi[0]) / 2, hi[1] + 0.022 + 0.12), 0.001)  # 12 cm away
    settle(env)
    assert not holds(pred, env.world)


def test_drawer_joint(env_factory):
    env = env_factory("close_top_drawer")
    env.reset(episode(env))
    opened, closed = (
        Predicate("joint_below", target="cabinet", joint="top_level", value=-0.08),
        Predicate("joint_above", target="cabinet", joint="top_level", value=-0.01),
    )
    assert holds(opened, env.world) and not holds(closed, env.world)  # the task starts with it open
    j = env.scene.objects["cabinet"].joints["top_level"]
    env.data.qpos[env.model.jnt_qposadr[j]] = 0.0
    mujoco.mj_forward(env.model, env.data)
    assert holds(closed, env.world) and not holds(opened, env.world)


def test_rubric_flags_are_ever_reached(blocks):
    env = blocks
    rubric = Rubric(Predicate("inside", object="red_block", target="bowl"), env.world)
    assert rubric.update() is False
    assert rubric.flags == {"reached": False, "grasped": False, "lifted": False, "success": False}
    place(env, "red_block", (-0.13, -0.4), 0.2)
    rubric.update()
    assert rubric.flags["lifted"] and not rubric.flags["success"]
    bowl = center(env, "bowl")
    place(env, "red_block", bowl[:2], 0.03)
    settle(env)
    assert rubric.update() is True
    place(env, "red_block", (-0.13, -0.4), 0.001)
    settle(env, 0.2)
    assert rubric.update() is False
    assert rubric.flags["lifted"] and rubric.flags["success"]  # once reached, a flag stays set
