"""Runner-level checks with in-process policies (no registry needed)."""

import numpy as np
import pytest

from evalkit.core.compatibility import check_compatible
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyMeta, PolicyUnavailableError
from evalkit.core.protocol import episodes_for
from evalkit.rundir.store import EpisodeStore, RunIdentity
from evalkit.runner import EvalConfig
from evalkit.runner.evaluate import resolve_suites
from evalkit.runner.runner import Runner, validate_chunk
from tests.helpers import read_rows


class ScriptedPolicy:
    def __init__(self, make_chunk, meta=None):
        self.meta = meta or PolicyMeta(name="scripted", fingerprint="none", action_dim=7)
        self.make_chunk = make_chunk
        self.calls = 0

    def infer(self, batch):
        self.calls += 1
        return [self.make_chunk(req) for req in batch]

    def close(self):
        pass


def _setup(tmp_path, **kw):
    config = EvalConfig(
        suite="libero_spatial",
        policy="scripted",
        out=tmp_path,
        tasks=(0,),
        episodes_per_task=2,
        max_steps=6,
        workers=1,
        **kw,
    )
    suites = resolve_suites(config)
    identity = RunIdentity("test", "scripted@none", {s.name: "fp" for s in suites})
    return config, suites, episodes_for(suites), EpisodeStore(tmp_path, identity)


def test_nan_actions_stop_the_run_and_record_nothing(tmp_path):
    config, suites, episodes, store = _setup(tmp_path)
    policy = ScriptedPolicy(lambda req: np.full((10, 7), np.nan))
    with pytest.raises(EvalkitError, match="non-finite"):
        Runner(config, suites, policy, store, tmp_path, progress=False).run(episodes, episodes)
    assert store.rows() == []


def test_wrong_action_shape_is_an_error(tmp_path):
    config, suites, episodes, store = _setup(tmp_path)
    policy = ScriptedPolicy(lambda req: np.zeros((10, 8)))
    with pytest.raises(EvalkitError, match=r"expected \(horizon, 7\)"):
        Runner(config, suites, policy, store, tmp_path, progress=False).run(episodes, episodes)


def test_unavailable_policy_records_errors_not_failures(tmp_path):
    config, suites, episodes, store = _setup(tmp_path)

    def dead(req):
        raise PolicyUnavailableError("server at ws://127.0.0.1:1 is gone")

    with pytest.raises(PolicyUnavailableError):
        Runner(config, suites, ScriptedPolicy(dead), store, tmp_path, progress=False).run(episodes, episodes)
    rows = store.rows()
    assert rows and all(r["termination"] == "error" and "gone" in r["error"] for r in rows)
    assert store.finished() == set()  # errors are retried on resume


def test_mismatched_policy_rejected_before_first_episode(tmp_path):
    _, suites, _, _ = _setup(tmp_path)
    cases = [
        (PolicyMeta("p", "x", cameras=("observation/exterior_image_1_left",)), "camera"),
        (PolicyMeta("p", "x", cameras=("observation/image",), image_size=(256, 256)), "256x256"),
        (PolicyMeta("p", "x", action_dim=8), "8-dim"),
        (PolicyMeta("p", "x", privileged=True), "privileged"),
        (PolicyMeta("p", "x", embodiment="droid"), "evalkit serve --embodiment libero"),
        (PolicyMeta("p", "x", action_mode="joint_velocity"), "executes eef_delta actions"),
    ]
    for meta, needle in cases:
        with pytest.raises(EvalkitError, match=needle):
            check_compatible(meta, suites)
    check_compatible(PolicyMeta("p", "x", embodiment="libero", action_mode="eef_delta", action_dim=7), suites)


def test_validate_chunk():
    assert validate_chunk(np.zeros((5, 7), np.float32), 7, "e").dtype == np.float64
    for bad in (np.zeros(7), np.zeros((0, 7)), np.zeros((5, 6)), np.array([["a"] * 7])):
        with pytest.raises(EvalkitError):
            validate_chunk(bad, 7, "e")


def test_episode_identity_follows_the_protocol():
    openpi = episodes_for(
        resolve_suites(EvalConfig(suite="libero_spatial", policy="zero", tasks=(2,), episodes_per_task=3))
    )
    assert [(e.task_id, e.init_state, e.seed) for e in openpi] == [(2, 0, 7), (2, 1, 7), (2, 2, 7)]
    lerobot = episodes_for(
        resolve_suites(
            EvalConfig(
                suite="libero_spatial", policy="zero", tasks=(2,), episodes_per_task=3, protocol="lerobot"
            )
        )
    )
    assert [(e.init_state, e.seed) for e in lerobot] == [(0, 1000), (1, 1001), (2, 1002)]
    assert len({e.request_seed(0) for e in openpi}) == 3


@pytest.mark.parametrize("batch_size", [1, 2])
def test_the_runner_batches_pending_observations_up_to_batch_size(tmp_path, batch_size):
    from tests.runner.policies import StateFeedbackPolicy

    config, suites, episodes, store = _setup(tmp_path, batch_size=batch_size)
    config = config.replace(workers=3, tasks=(0, 1))
    suites = resolve_suites(config)
    episodes = episodes_for(suites)  # 4 episodes on 3 workers
    # While the first call runs, the two other workers' first observations arrive and wait together.
    policy = StateFeedbackPolicy(7, first_delay_s=20.0)
    Runner(config, suites, policy, store, tmp_path, progress=False).run(episodes, episodes)
    rows = store.rows()
    assert sum(policy.batches) == sum(r["policy_calls"] for r in rows) == 8  # 6 steps, replan 5: 2 calls each
    assert max(policy.batches) == batch_size


def test_a_stopped_worker_is_killed_retried_then_recorded_as_error(tmp_path):
    """SIGSTOP the worker of episode 0 on each of its two attempts: the watchdog kills it, retries the episode
    once, then records it as `error`; episode 1 then runs normally on a fresh worker."""
    import os
    import signal
    import threading
    import time

    config, suites, episodes, store = _setup(tmp_path, episode_timeout_s=15.0, max_attempts=2)
    runner = Runner(
        config, suites, ScriptedPolicy(lambda req: np.zeros((10, 7))), store, tmp_path, progress=False
    )
    identity = store.identity
    store.close()

    def run_with_own_store():  # SQLite connections belong to their thread
        runner.store = EpisodeStore(tmp_path, identity)
        runner.run(episodes, episodes)

    thread = threading.Thread(target=run_with_own_store)
    thread.start()
    stopped: set[int] = set()
    while thread.is_alive() and len(stopped) < 2:
        for worker in list(runner.workers):
            spec = worker.episode
            if spec is not None and spec.init_state == 0 and worker.process.pid not in stopped:
                os.kill(worker.process.pid, signal.SIGSTOP)
                stopped.add(worker.process.pid)
        time.sleep(0.05)
    thread.join(timeout=180)
    assert not thread.is_alive()
    rows = {r["init_state"]: r for r in read_rows(tmp_path)}
    assert len(stopped) == 2
    assert rows[0]["termination"] == "error"
    assert "no progress for 15 s" in rows[0]["error"] and "after 2 attempts" in rows[0]["error"]
    assert rows[1]["termination"] == "max_steps" and rows[1]["steps"] == 6
