"""The local runner and its ledger, with in-process policies (no registry needed), on real LIBERO scenes."""

import os
import signal
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

from evalkit.batching import InvalidActionsError
from evalkit.core.compatibility import check_compatible
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyMeta, PolicyUnavailableError
from evalkit.core.protocol import episodes_for
from evalkit.rundir.store import EpisodeStore, RunIdentity
from evalkit.runner import EvalConfig
from evalkit.runner.evaluate import resolve_suites
from evalkit.runner.ledger import EpisodeLedger
from evalkit.runner.runner import LocalRunner, sigint_held
from tests.fakes import RaisingPolicy, ScriptedPolicy, StateFeedbackPolicy
from tests.helpers import read_rows, wait_until

CEILING_S = 180.0


def _setup(tmp_path, **kw):
    config = EvalConfig(
        **{
            "suite": "libero_spatial",
            "policy": "scripted",
            "out": tmp_path,
            "tasks": (0,),
            "episodes_per_task": 2,
            "max_steps": 6,
            "workers": 1,
            **kw,
        }
    )
    suites = resolve_suites(config)
    return config, suites, episodes_for(suites)


def _store(run_dir, suites, policy="scripted@none"):
    return EpisodeStore(run_dir, RunIdentity("test", policy, {s.name: "fp" for s in suites}))


def _run(tmp_path, policy, episodes=None, stop_when=None, runner_ready: Callable | None = None, **kw):
    """One run through a fresh LocalRunner; returns (tally, store)."""
    config, suites, plan = _setup(tmp_path, **kw)
    store = _store(tmp_path, suites)
    ledger = EpisodeLedger(config, suites, store, tmp_path, episodes or plan, plan, stop_when=stop_when)
    runner = LocalRunner(config, suites)
    if runner_ready is not None:
        runner_ready(runner)
    try:
        return runner.run(policy, ledger), store
    finally:
        runner.close()


@pytest.mark.slow
def test_nan_actions_stop_the_run_and_record_nothing(tmp_path):
    with pytest.raises(InvalidActionsError, match="non-finite"):
        _run(tmp_path, ScriptedPolicy(lambda req: np.full((10, 7), np.nan)))
    assert read_rows(tmp_path) == []


@pytest.mark.slow
def test_wrong_action_shape_is_an_error(tmp_path):
    with pytest.raises(EvalkitError, match=r"expected \(horizon, 7\)"):
        _run(tmp_path, ScriptedPolicy(lambda req: np.zeros((10, 8))))


@pytest.mark.slow
def test_unavailable_policy_records_errors_not_failures(tmp_path):
    def dead(req):
        raise PolicyUnavailableError("server at ws://127.0.0.1:1 is gone")

    tally, store = _run(tmp_path, ScriptedPolicy(dead), workers=2)
    assert tally.stopped and "gone" in tally.stopped and not tally.decided
    rows = store.rows()
    assert rows and all(r["termination"] == "error" and "gone" in r["error"] for r in rows)
    assert store.finished() == set()  # errors are retried on resume


@pytest.mark.slow
def test_a_policy_that_raises_is_retried_then_recorded_and_stops_the_run(tmp_path):
    policy = RaisingPolicy(7)
    tally, store = _run(tmp_path, policy, tasks=(0, 1), max_attempts=2)
    (row,) = store.rows()  # the first episode, after its two attempts; the run stopped there
    assert row["termination"] == "error" and row["init_state"] == 0
    assert "policy error: ValueError: the model has a bug (after 2 attempts)" in row["error"]
    assert policy.calls == 2 and "policy error" in tally.stopped


def test_mismatched_policy_rejected_before_first_episode(tmp_path):
    _, suites, _ = _setup(tmp_path)
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


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 2])
def test_the_runner_batches_pending_observations_up_to_batch_size(tmp_path, batch_size):
    """The first policy call is held until the two other workers' first observations wait in the batcher; they
    then go together, up to batch_size."""
    policy = StateFeedbackPolicy(7)
    runner_box = []
    policy.before_first = lambda: wait_until(
        lambda: runner_box[0].batcher.queued() == 2,
        "two observations waiting behind the first call",
        CEILING_S,
    )
    tally, store = _run(
        tmp_path, policy, runner_ready=runner_box.append, batch_size=batch_size, workers=3, tasks=(0, 1)
    )
    rows = store.rows()  # 4 episodes on 3 workers
    assert sum(policy.batches) == sum(r["policy_calls"] for r in rows) == 8  # 6 steps, replan 5: 2 calls each
    assert policy.batches[0] == 1 and policy.batches[1] == batch_size


@pytest.mark.slow
def test_episodes_go_out_in_the_order_of_the_list(tmp_path):
    _, _, plan = _setup(tmp_path, tasks=(0, 1))
    order = [plan[3], plan[0], plan[2], plan[1]]  # task 1 first, then alternating
    stored = []

    def record(result) -> bool:
        stored.append(result.spec)
        return False

    _run(tmp_path, ScriptedPolicy(lambda req: np.zeros((10, 7))), order, record, tasks=(0, 1), max_steps=1)
    assert stored == order  # one worker: no look-ahead beyond the next episode


@pytest.mark.slow
def test_the_stop_hook_ends_the_run_and_drops_episodes_in_progress(tmp_path):
    stored = []

    def decided(result) -> bool:
        stored.append(result.spec)
        return len(stored) == 2

    tally, store = _run(
        tmp_path,
        ScriptedPolicy(lambda req: np.zeros((10, 7))),
        stop_when=decided,
        episodes_per_task=8,
        workers=2,
    )
    assert tally.decided and tally.stopped == "stopped by decision"
    rows = store.rows()
    # the other worker's episode in progress was dropped, unless it ended in the same moment as the deciding one
    assert 2 <= len(rows) <= 3 and all(r["termination"] == "max_steps" for r in rows)


@pytest.mark.slow
def test_a_stopped_worker_is_killed_retried_then_recorded_as_error(tmp_path):
    """The policy SIGSTOPs the worker of episode 0 while it waits for its first chunk, on each of its two attempts:
    the watchdog kills it, retries the episode once, then records it as `error`; episode 1 then runs normally on
    a fresh worker."""
    runner_box: list[LocalRunner] = []
    stopped: set[int] = set()
    _, _, plan = _setup(tmp_path)
    stopped_seed = plan[0].request_seed(0)  # its first call: each attempt's worker is stopped once

    def stop_worker_of_episode_0(req):
        if req.episode_id.split("/")[2] == "0" and req.seed == stopped_seed:
            (worker,) = [
                w for w in runner_box[0].workers if w.episode is not None and w.episode.init_state == 0
            ]
            os.kill(worker.process.pid, signal.SIGSTOP)  # it is blocked waiting for this very answer
            stopped.add(worker.process.pid)
        return np.zeros((10, 7))

    tally, store = _run(
        tmp_path,
        ScriptedPolicy(stop_worker_of_episode_0),
        runner_ready=runner_box.append,
        episode_timeout_s=15.0,
        max_attempts=2,
    )
    rows = {r["init_state"]: r for r in store.rows()}
    assert len(stopped) == 2
    assert rows[0]["termination"] == "error"
    assert "no progress for 15 s" in rows[0]["error"] and "after 2 attempts" in rows[0]["error"]
    assert rows[1]["termination"] == "max_steps" and rows[1]["steps"] == 6


@pytest.mark.slow
def test_workers_outlive_a_run_and_serve_the_next_policy(tmp_path):
    """What `evalkit watch` needs: one LocalRunner, two policies, two stores; the same worker processes."""
    config, suites, plan = _setup(tmp_path)
    runner = LocalRunner(config, suites)
    pids = []
    try:
        for name, value in (("a", 0.0), ("b", 0.5)):
            run_dir = tmp_path / name
            run_dir.mkdir()
            store = _store(run_dir, suites, f"{name}@none")
            ledger = EpisodeLedger(config.replace(save_actions=True), suites, store, run_dir, plan)
            policy = ScriptedPolicy(lambda req, v=value: np.full((10, 7), v))
            tally = runner.run(policy, ledger)
            assert tally.done == 2 and not tally.stopped
            pids.append([w.process.pid for w in runner.workers])
            actions = np.load(next((run_dir / "actions").iterdir()))["actions"]
            assert np.all(actions == value)  # this run's policy, stored in this run's directory
            store.close()
        assert pids[0] == pids[1] and all(w.process.is_alive() for w in runner.workers)
    finally:
        runner.close()
    assert runner.workers == []


def test_a_ctrl_c_while_a_worker_process_starts_is_held_then_handled():
    """What `_start_worker` wraps `process.start()` in: a SIGINT that arrives meanwhile is not handled inside (the
    start is not cut short) nor dropped (as when SIGINT was ignored there): it is raised once the block ends."""
    reached_the_end = False
    with pytest.raises(KeyboardInterrupt), sigint_held():
        os.kill(os.getpid(), signal.SIGINT)
        reached_the_end = True
    assert reached_the_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


FIRST_WORKER = """
import multiprocessing as mp, signal
from evalkit.runner.runner import sigint_held

def report(conn):
    conn.send(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))

if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=report, args=(child,))
    with sigint_held():
        process.start()
    print(parent.recv())
    process.join()
"""


@pytest.mark.slow  # a fresh interpreter and a spawned process
def test_the_first_worker_of_a_process_boots_with_sigint_blocked(tmp_path):
    """The first spawn of a process starts multiprocessing's resource tracker, which unblocked SIGINT on its way:
    that first worker booted unprotected, and a Ctrl-C during its start printed a KeyboardInterrupt trace from its
    `site` import (seen under load in the second-Ctrl-C test)."""
    script = tmp_path / "first_worker.py"
    script.write_text(FIRST_WORKER)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
