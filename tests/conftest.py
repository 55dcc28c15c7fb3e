"""Two tiers. `make test-fast` (ruff, then `pytest -m "not slow"`) is what you run while working: pure-Python and
unit tests, under 2 minutes. `make test` runs everything, the slow tier included.

Mark a test slow (`@pytest.mark.slow`, or `pytestmark = pytest.mark.slow` at the top of a module whose tests all are)
when it runs a simulator (MuJoCo, robosuite, LIBERO, LIBERO-plus), starts a subprocess or process (`subprocess`,
`multiprocessing`, the `evalkit` command, a server process), uses Ray, or opens Chromium. The fast tier enforces this
(tests/fast_tier.py): such a test fails there with one line telling you to mark it slow. In a module that mixes fast
and slow tests, mark per test and import simulators and Ray inside the slow tests, never at the module's top (the
fast tier would refuse to collect the module). Fake policies and other test doubles live in tests/fakes.py; helpers
shared by tests (reading a run directory, running the `evalkit` command, waiting on a condition) in tests/helpers.py.
Never order events with `sleep` or assert tight wall-clock bounds: wait on observable state (`wait_until`) with a
generous ceiling.
"""

import os

import pytest

from tests.fast_tier import Guard, is_fast_tier, module_is_slow

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

_GUARD = pytest.StashKey[Guard]()


def pytest_configure(config):
    if is_fast_tier(config.getoption("markexpr") or ""):
        config.stash[_GUARD] = guard = Guard()
        guard.install()


def pytest_unconfigure(config):
    if _GUARD in config.stash:
        config.stash[_GUARD].uninstall()


def pytest_ignore_collect(collection_path, config):
    # a module marked slow as a whole is deselected anyway: the fast tier does not even import it
    if _GUARD in config.stash and collection_path.suffix == ".py" and module_is_slow(collection_path):
        return True
    return None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    guard = collector.config.stash.get(_GUARD, None)
    if guard is not None:
        guard.where = f"{collector.nodeid} (at import)"
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    guard = item.config.stash.get(_GUARD, None)
    if guard is not None:
        guard.where = item.nodeid
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    guard = item.config.stash.get(_GUARD, None)
    refused = guard.refused.pop(item.nodeid, None) if guard is not None else None
    if refused is not None and not report.failed:
        # refused in another thread, or swallowed by the code under test: the test still fails
        report.outcome, report.longrepr = "failed", refused
    return report


@pytest.fixture
def chromium() -> str:
    """The Chromium binary; skips outside CI (fails under CI=true) where there is none."""
    from tests.system import need_chromium

    return need_chromium()
