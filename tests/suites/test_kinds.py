"""The suite kinds: one table, one lookup; a fourth kind (tests/suites/reach_kind, a tiny MuJoCo scene) needs only
its package and one registration to run through the registry, `evaluate()` (spawned env workers), a resume, the
manifest and evalkit.gym."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from evalkit.core.errors import EvalkitError
from evalkit.runner import EvalConfig, evaluate
from evalkit.suites import registry
from evalkit.suites.base import SuiteKind
from evalkit.suites.kinds import KINDS, KINDS_ENV, registered_kinds, suite_kind, task_tags
from tests.helpers import read_manifest, read_rows
from tests.suites.reach_kind import REGISTRATION, TASKS_DIR, ReachKind


@pytest.fixture
def reach(monkeypatch):
    """The reach kind registered, and its suite file on the suite path (both inherited by spawned workers)."""
    monkeypatch.setenv(KINDS_ENV, REGISTRATION)
    monkeypatch.setenv("EVALKIT_TASKS", str(TASKS_DIR))


def test_evalkits_own_kinds_are_suite_kinds():
    assert set(KINDS) == {"libero", "liberoplus", "droid"}
    assert all(isinstance(suite_kind(name), SuiteKind) for name in KINDS)
    assert suite_kind("liberoplus").runs_alone and not suite_kind("libero").runs_alone
    tags = task_tags()
    assert {"dimension", "level", "base_task", "perturbation", "scene"} <= set(tags)


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("reach", "is not name=module:Class"),
        ("libero=tests.suites.reach_kind:ReachKind", "is one of evalkit's own suite kinds"),
    ],
)
def test_bad_registrations_are_one_line_errors(monkeypatch, variable, message):
    monkeypatch.setenv(KINDS_ENV, variable)
    with pytest.raises(EvalkitError, match=message):
        registered_kinds()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.suites.reach_kind:REACH_M", "is not a SuiteKind"),
        ("tests.suites.reach_kind:Nothing", "cannot load"),
        ("tests.suites.no_such_module:Kind", "cannot load"),
    ],
)
def test_a_registration_that_is_not_a_kind_is_refused(monkeypatch, target, message):
    monkeypatch.setenv(KINDS_ENV, f"odd={target}")
    with pytest.raises(EvalkitError, match=rf"suite kind 'odd': .*{message}"):
        suite_kind("odd")
    with pytest.raises(
        EvalkitError, match=r"'nope' is not a suite kind \(known: droid, libero, liberoplus, odd;"
    ):
        suite_kind("nope")


def test_a_fourth_kind_loads_through_the_registry(reach):
    assert isinstance(suite_kind("reach"), ReachKind) and "goal" in task_tags()
    (spec,) = registry.resolve("reach_demo")
    assert spec.kind == "reach" and [t.task_id for t in spec.tasks] == [0, 1, 2]
    assert [t.tags for t in spec.tasks] == [{"goal": "here"}, {"goal": "right"}, {"goal": "left"}]
    assert spec.description.startswith("A sphere on three slide joints")
    assert spec.availability.by_reason() == {"target beyond the effector's reach (0.5 m)": 1}
    with pytest.raises(EvalkitError, match=r"task 3 \(reach_far\) is unavailable here: target beyond"):
        registry.resolve("reach_demo", tasks=[3])
    info = {i.name: i for i in registry.list_suites()}["reach_demo"]
    assert (info.kind, info.n_tasks, info.n_unavailable, info.available) == ("reach", 3, 1, True)


def test_without_its_registration_the_kind_is_unknown(monkeypatch):
    monkeypatch.delenv(KINDS_ENV, raising=False)
    monkeypatch.setenv("EVALKIT_TASKS", str(TASKS_DIR))
    with pytest.raises(EvalkitError, match="'reach' is not a suite kind"):
        registry.resolve("reach_demo")


@pytest.mark.slow
def test_a_fourth_kind_runs_through_evaluate_and_resumes(reach, tmp_path):
    """Spawned env workers find the kind through the inherited registration; tags reach the manifest."""
    config = EvalConfig(
        suite="reach_demo", policy="zero", out=tmp_path / "run", workers=2, video="first-per-task"
    )
    run = evaluate(config, progress=False, command=["test"])
    rows = read_rows(run)
    assert [(r["task_id"], r["init_state"]) for r in rows] == [(t, k) for t in (0, 1, 2) for k in (0, 1)]
    assert not any(r["error"] for r in rows)
    # "stay": the zero policy is at the target after one step; the others use up the budget
    assert [(r["success"], r["steps"]) for r in rows] == [(1, 1)] * 2 + [(0, 6)] * 4
    filmed = [r for r in rows if r["video"]]  # the first episode of each task, rendered by the kind's env
    assert [(r["task_id"], r["init_state"]) for r in filmed] == [(0, 0), (1, 0), (2, 0)]
    assert all((run / r["video"]).is_file() for r in filmed)
    record = read_manifest(run)["suites"]["reach_demo"]
    assert record["kind"] == "reach"
    assert [t["tags"] for t in record["tasks"]] == [{"goal": "here"}, {"goal": "right"}, {"goal": "left"}]
    fingerprint = record["protocol_fingerprint"]

    evaluate(config, progress=False, command=["test"])
    manifest = read_manifest(run)
    assert manifest["suites"]["reach_demo"]["protocol_fingerprint"] == fingerprint
    assert manifest["sessions"][-1]["episodes_run"] == 0 and len(read_rows(run)) == 6


@pytest.mark.slow
def test_a_fourth_kind_through_gym(reach):
    from gymnasium.utils.env_checker import check_env

    from evalkit.gym import EvalkitEnv

    env = EvalkitEnv("reach_demo", task=1, max_steps=30)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unbounded state is expected (see tests/gym/test_check_env.py)
            check_env(env)
        assert env.action_space.shape == (7,) and np.all(env.action_space.high == 1)
        obs, _ = env.reset()
        assert obs["observation/image"].shape == (32, 32, 3) and obs["observation/image"].std() > 0
        right = np.array([1.0, 0, 0, 0, 0, 0, 0])
        for _ in range(30):
            obs, reward, terminated, truncated, _ = env.step(right)
            if terminated or truncated:
                break
        assert terminated and reward == 1.0 and obs["observation/state"][0] > 0.15
    finally:
        env.close()
