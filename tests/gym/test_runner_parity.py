"""The same episodes through `gymnasium.make` and through `evalkit eval` (the real runner, spawned workers, SQLite
store) give equal observations at every policy step and equal outcomes."""

import json

import gymnasium
import numpy as np
import pytest

import evalkit.gym  # noqa: F401  (registers the ids)
from evalkit.policies.registry import BUILDERS
from evalkit.runner import EvalConfig, evaluate
from tests.fakes import ScriptPolicy
from tests.helpers import read_rows

# slow: LIBERO scenes, spawned env workers
pytestmark = pytest.mark.slow

_POLICY: list[ScriptPolicy] = []


def make_script_policy(options):
    return _POLICY[-1]


def action_script(kind: str, steps: int, replan: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    n = -(-steps // replan) * replan  # whole chunks
    if kind == "libero":  # OSC deltas and a gripper that closes half way
        script = rng.uniform(-0.5, 0.5, (n, 7))
        script[:, 6] = np.where(np.arange(n) < n // 2, -1.0, 1.0)
    else:  # joint velocities and a gripper that closes half way
        script = rng.uniform(-0.4, 0.4, (n, 8))
        script[:, 7] = (np.arange(n) >= n // 2).astype(float)
    return script.astype(np.float32)


def run_gym(env_id, task, init_state, script, max_steps, images):
    """Roll out `script` through gymnasium; returns (observations at policy steps, outcome)."""
    env = gymnasium.make(env_id, task=task, init_state=init_state, max_steps=max_steps, images=images)
    try:
        obs, info = env.reset()
        at_policy_steps = [obs]
        flags = [(info["policy_step"], info["images_fresh"])]
        for action in script:
            obs, reward, terminated, truncated, info = env.step(action)
            flags.append((info["policy_step"], info["images_fresh"]))
            if terminated or truncated:
                break
            if info["policy_step"]:
                at_policy_steps.append(obs)
        assert reward == float(terminated) and terminated == info["success"]
        outcome = {
            "success": int(terminated),
            "steps": info["steps"],
            "termination": "success" if terminated else "max_steps",
            "policy_calls": len(at_policy_steps),
            "progress": info["progress"],
        }
        return at_policy_steps, outcome, flags
    finally:
        env.close()


def assert_same_obs(a: dict, b: dict, where: str):
    assert a.keys() == b.keys(), where
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, f"{where} {key}"
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{where} {key}")
        else:
            assert a[key] == b[key], f"{where} {key}"


@pytest.mark.parametrize(
    ("suite", "kind", "task", "max_steps"),
    [("libero_spatial", "libero", 0, 12), ("droid", "droid", 2, 20)],
)
def test_gym_rollout_equals_evalkit_eval(tmp_path, monkeypatch, suite, kind, task, max_steps):
    env_id = f"evalkit/{suite}-v0"
    probe = gymnasium.make(env_id, task=task)
    proto = probe.unwrapped.protocol
    probe.close()
    script = action_script(kind, max_steps, proto.replan_steps)
    policy = ScriptPolicy(script, proto.replan_steps, proto.wire_cameras)
    _POLICY.append(policy)
    monkeypatch.setitem(BUILDERS, "script", f"{__name__}:make_script_policy")
    run = evaluate(
        EvalConfig(
            suite=suite,
            policy="script",
            out=tmp_path / "run",
            tasks=(task,),
            episodes_per_task=2,
            max_steps=max_steps,
            workers=1,
            batch_size=1,
            save_actions=True,
        ),
        progress=False,
    )
    rows = read_rows(run)
    assert len(rows) == 2
    for row in rows:
        episode_id = f"{suite}/{task}/{row['init_state']}/{row['seed']}"
        runner_obs = policy.seen[episode_id]
        executed = np.load(run / "actions" / f"{episode_id.replace('/', '_')}.npz")["actions"]
        np.testing.assert_array_equal(executed, script[: row["steps"]])
        obs, outcome, flags = run_gym(env_id, task, row["init_state"], script, max_steps, "every_step")
        stored = {k: row[k] for k in ("success", "steps", "termination", "policy_calls")}
        assert outcome == {**stored, "progress": json.loads(row["progress"])}
        assert len(obs) == len(runner_obs) == row["policy_calls"]
        for i, (mine, theirs) in enumerate(zip(obs, runner_obs, strict=True)):
            assert_same_obs(mine, theirs, f"{episode_id} call {i}")
        assert all(fresh for _, fresh in flags)

        # images only at policy steps: the same observations where a policy is asked, stale images elsewhere
        lazy_obs, lazy_outcome, lazy_flags = run_gym(
            env_id, task, row["init_state"], script, max_steps, "policy_steps"
        )
        assert lazy_outcome == outcome
        for i, (mine, theirs) in enumerate(zip(lazy_obs, runner_obs, strict=True)):
            assert_same_obs(mine, theirs, f"{episode_id} call {i} (policy_steps)")
        assert [fresh for _, fresh in lazy_flags] == [policy for policy, _ in lazy_flags]
        assert [policy for policy, _ in lazy_flags] == [
            s % proto.replan_steps == 0 for s in range(len(flags))
        ]


def test_oracle_success_replayed_through_gym(tmp_path):
    """The oracle's executed actions, replayed as a script, reach success at the same step with the same stages."""
    run = evaluate(
        EvalConfig(
            suite="droid",
            policy="oracle",
            out=tmp_path / "run",
            tasks=(2,),
            episodes_per_task=1,
            max_steps=200,
            workers=1,
            save_actions=True,
        ),
        progress=False,
    )
    (row,) = read_rows(run)
    assert row["success"] == 1  # the oracle solves this layout (tests/suites/droid/test_oracle.py)
    actions = np.load(run / "actions" / "droid_2_0_7.npz")["actions"]
    _, outcome, _ = run_gym("evalkit/droid-v0", 2, 0, actions, 200, "policy_steps")
    assert outcome["success"] == 1 and outcome["steps"] == row["steps"] == len(actions)
    assert outcome["progress"] == json.loads(row["progress"])
