"""Shared DROID fixtures: suites resolved through the registry, envs built once per test session."""

import pytest

from evalkit.core.episode import EpisodeSpec


@pytest.fixture(scope="session")
def droid_suite():
    from evalkit.suites.registry import resolve

    return resolve("droid")[0]


@pytest.fixture(scope="session")
def env_factory(droid_suite):
    """make(task_name) -> a DroidEnv for that task, cached for the session."""
    from evalkit.suites.kinds import make_env

    envs = {}

    def make(task_name: str, suite=None):
        suite = suite or droid_suite
        key = (suite.name, suite.protocol.name, task_name)
        if key not in envs:
            task = next(t for t in suite.tasks if t.name == task_name)
            envs[key] = make_env(suite, task.task_id)
        return envs[key]

    yield make
    for env in envs.values():
        env.close()


def episode(env, index: int = 0, seed: int = 7) -> EpisodeSpec:
    return EpisodeSpec(env.suite_name, env.task_id, index, seed)
