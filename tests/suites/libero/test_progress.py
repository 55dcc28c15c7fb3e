"""LIBERO goal-predicate progress on a real LIBERO-10 two-step scene ("put both the alphabet soup and the tomato
sauce in the basket"): objects are dropped into the basket by setting their poses and letting physics settle, and
LIBERO's own success check is the reference."""

import json

import numpy as np
import pytest

from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.runner import EvalConfig, evaluate
from evalkit.suites import registry
from evalkit.suites.libero.env import LiberoEnv
from evalkit.suites.libero.progress import GoalProgress
from tests.helpers import read_rows

# slow: LIBERO scenes
pytestmark = pytest.mark.slow

SUITE, TASK = "libero_10", 0
SOUP = "(in alphabet_soup_1 basket_1_contain_region)"
SAUCE = "(in tomato_sauce_1 basket_1_contain_region)"
SETTLE = 30


@pytest.fixture(scope="module")
def env():
    suite = registry.resolve(SUITE, tasks=[TASK])[0]
    env = LiberoEnv(suite, TASK)
    yield env
    env.close()


def start(env: LiberoEnv) -> None:
    env.reset(EpisodeSpec(SUITE, TASK, 0, env.protocol.seed))
    settle(env)


def settle(env: LiberoEnv, steps: int = 10) -> bool:
    """The protocol's dummy action for `steps` steps; whether LIBERO's success held after the last."""
    dummy = np.asarray(env.protocol.dummy_action, dtype=np.float64)
    return [env.step(dummy) for _ in range(steps)][-1]


def move(env: LiberoEnv, body: str, position: np.ndarray) -> None:
    """Put an object's free joint at `position` (at rest)."""
    problem = env._env.env
    joint = problem.get_object(body).joints[0]
    qpos = problem.sim.data.get_joint_qpos(joint).copy()
    qpos[:3] = position
    problem.sim.data.set_joint_qpos(joint, qpos)
    problem.sim.data.set_joint_qvel(joint, np.zeros(6))
    problem.sim.forward()


def into_basket(env: LiberoEnv, body: str, dx: float) -> None:
    region = env._env.env.sim.data.get_site_xpos("basket_1_contain_region")
    move(env, body, region + np.array([dx, 0.0, 0.05]))


def test_progress_counts_the_goal_predicates_that_held_at_the_best_step(env):
    start(env)
    assert env.progress() == {SOUP: False, SAUCE: False} and env._goal.fraction == 0
    assert not env._env.check_success()

    soup_home = env._env.env.sim.data.body_xpos[env._env.env.obj_body_id["alphabet_soup_1"]].copy()
    into_basket(env, "alphabet_soup_1", -0.02)
    assert not settle(env, SETTLE)
    assert env.progress() == {SOUP: True, SAUCE: False} and env._goal.fraction == 0.5

    # the soup leaves the basket again: the best step so far still counts
    move(env, "alphabet_soup_1", soup_home + np.array([0.0, 0.0, 0.02]))
    settle(env, SETTLE)
    assert env._goal.holds() == {SOUP: False, SAUCE: False}
    assert env.progress() == {SOUP: True, SAUCE: False}

    into_basket(env, "alphabet_soup_1", -0.02)
    into_basket(env, "tomato_sauce_1", 0.03)
    assert settle(env, SETTLE) and env._env.check_success()
    assert env.progress() == {SOUP: True, SAUCE: True} and env._goal.fraction == 1

    start(env)
    assert env.progress() == {SOUP: False, SAUCE: False}


def test_a_problem_without_a_goal_state_is_refused():
    with pytest.raises(EvalkitError, match="no BDDL goal state"):
        GoalProgress(object())


def test_an_episode_stores_its_goal_progress(tmp_path):
    run = evaluate(
        EvalConfig(
            suite=SUITE, policy="zero", out=tmp_path / "run", tasks=(TASK,), episodes_per_task=1, max_steps=3
        ),
        progress=False,
    )
    (row,) = read_rows(run)
    assert json.loads(row["progress"]) == {SOUP: False, SAUCE: False}
