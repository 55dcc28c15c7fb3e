"""EpisodeLedger alone (no simulator, a real store): dispatch order and look-ahead, attempts, stopping, the
first-of-task video rule, how failed policy calls are classified."""

import numpy as np
import pytest

from evalkit.batching import InvalidActionsError
from evalkit.core.episode import EpisodeResult, EpisodeSpec
from evalkit.core.policy import PolicyUnavailableError
from evalkit.core.protocol import episodes_for
from evalkit.rundir.store import EpisodeStore, RunIdentity
from evalkit.runner import EvalConfig
from evalkit.runner.evaluate import resolve_suites
from evalkit.runner.ledger import EpisodeLedger
from evalkit.runner.messages import EpisodeDone, PolicyFailed


def _ledger(tmp_path, episodes=None, stop_when=None, **kw):
    config = EvalConfig(
        **{"suite": "libero_spatial", "policy": "zero", "tasks": (0, 1, 2), "episodes_per_task": 2, **kw}
    )
    suites = resolve_suites(config)
    plan = episodes_for(suites)
    store = EpisodeStore(tmp_path, RunIdentity("t", "zero@none", {s.name: "fp" for s in suites}))
    return EpisodeLedger(config, suites, store, tmp_path, episodes or plan, plan, stop_when=stop_when), plan


def _done(spec: EpisodeSpec, success: bool = False) -> EpisodeDone:
    return EpisodeDone(
        EpisodeResult(spec, "task", success, 5, "success" if success else "max_steps", 1.0), None
    )


def test_episodes_go_in_list_order_with_a_look_ahead_of_at_most_the_window(tmp_path):
    _, plan = _ledger(tmp_path)
    balanced = [plan[0], plan[2], plan[4], plan[1], plan[3], plan[5]]  # tasks 0 1 2 0 1 2
    ledger, _ = _ledger(tmp_path, balanced)
    assert ledger.next_episode(None, window=2) == plan[0]
    # tasks 1 2 0 1 2 remain: task 2 is second in line, out of reach of a window of 1
    assert ledger.next_episode(("libero_spatial", 2), window=1) == plan[2]
    # tasks 2 0 1 2 remain: task 0 is second in line, within a window of 2
    assert ledger.next_episode(("libero_spatial", 0), window=2) == plan[1]
    assert [ledger.next_episode(None, window=3) for _ in range(3)] == [plan[4], plan[3], plan[5]]
    assert not ledger.has_work()


def test_a_crash_is_retried_first_in_line_then_stored_as_error(tmp_path):
    ledger, plan = _ledger(tmp_path, max_attempts=2)
    spec = ledger.next_episode(None, 1)
    ledger.crashed(spec, "simulator error: boom")
    assert ledger.next_episode(None, 1) == spec  # first in line again
    ledger.crashed(spec, "simulator error: boom")
    (row,) = ledger.store.rows()
    assert row["termination"] == "error" and row["error"] == "simulator error: boom (after 2 attempts)"
    assert not ledger.stopping  # a simulator fault does not stop the run


def test_a_policy_error_is_retried_then_stored_and_stops_the_run(tmp_path):
    ledger, plan = _ledger(tmp_path, max_attempts=2)
    spec = ledger.next_episode(None, 1)
    failure = PolicyFailed.of(ValueError("bad input"))
    assert failure == PolicyFailed("raised", "ValueError: bad input")
    ledger.policy_failed(spec, failure)
    assert ledger.next_episode(None, 1) == spec and not ledger.stopping
    ledger.policy_failed(spec, failure)
    assert ledger.stopping and not ledger.has_work()
    assert ledger.tally.stopped == "policy error: ValueError: bad input (after 2 attempts)"
    assert ledger.finish().errors == 1


def test_a_policy_that_is_gone_stores_the_waiting_episodes_as_errors(tmp_path):
    ledger, plan = _ledger(tmp_path)
    first, second = ledger.next_episode(None, 1), ledger.next_episode(None, 1)
    ledger.policy_failed(first, PolicyFailed.of(PolicyUnavailableError("server gone")))
    ledger.abandon(second)  # a worker's episode in progress when the run stopped
    assert [r["error"] for r in ledger.store.rows()] == ["policy unavailable: server gone"] * 2
    assert ledger.finish().stopped == "policy unavailable: server gone"


def test_actions_that_break_the_contract_stop_the_run_and_store_nothing(tmp_path):
    ledger, plan = _ledger(tmp_path)
    spec = ledger.next_episode(None, 1)
    ledger.policy_failed(spec, PolicyFailed.of(InvalidActionsError("policy returned non-finite actions")))
    ledger.abandon(ledger.next_episode(None, 1) if ledger.has_work() else spec)
    with pytest.raises(InvalidActionsError, match="non-finite"):
        ledger.finish()
    assert ledger.store.rows() == []


def test_the_stop_hook_is_asked_after_each_stored_episode(tmp_path):
    seen = []
    ledger, plan = _ledger(tmp_path, stop_when=lambda result: seen.append(result.spec) or len(seen) == 2)
    for _ in range(2):
        ledger.done(_done(ledger.next_episode(None, 1)))
    assert seen == plan[:2] and ledger.tally.decided and not ledger.has_work()
    ledger.done(_done(plan[2]))  # an episode that ended meanwhile is kept; the hook is not asked again
    assert len(seen) == 2 and ledger.tally.done == 3


def test_first_of_task_films_the_lowest_init_state_of_the_whole_plan(tmp_path):
    ledger, plan = _ledger(tmp_path, video="first-per-task")
    assert [ledger.record_video(s) for s in plan] == [True, False] * 3
    resumed, _ = _ledger(tmp_path, plan[1::2], video="first-per-task")  # init state 0 already done
    assert not any(resumed.record_video(s) for s in plan[1::2])


def test_a_result_writes_its_actions_and_video_bytes(tmp_path):
    ledger, plan = _ledger(tmp_path)
    result = EpisodeResult(plan[0], "task", True, 3, "success", 1.0, video="videos/x/ep.mp4")
    ledger.done(EpisodeDone(result, np.ones((3, 7), np.float32), b"mp4 bytes"))
    assert (tmp_path / "videos/x/ep.mp4").read_bytes() == b"mp4 bytes"
    (actions,) = (tmp_path / "actions").iterdir()
    assert np.load(actions)["actions"].shape == (3, 7)
