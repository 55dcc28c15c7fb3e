"""End-to-end runs on real LIBERO scenes with small step budgets."""

import contextlib
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from evalkit.report.summary import console_summary
from evalkit.runner import EvalConfig, evaluate
from tests.helpers import OUTCOME_COLUMNS, count_rows, read_manifest, read_rows, wait_until
from tests.system import import_or_skip

# slow: LIBERO scenes, spawned env workers, evalkit eval in subprocesses
pytestmark = pytest.mark.slow

SUITE = "libero_spatial"


def test_zero_policy_two_tasks_two_episodes(tmp_path):
    run = evaluate(
        EvalConfig(
            suite=SUITE,
            policy="zero",
            out=tmp_path / "run",
            tasks=(0, 1),
            episodes_per_task=2,
            max_steps=6,
            workers=2,
        ),
        progress=False,
    )
    rows = read_rows(run)
    assert [(r["task_id"], r["init_state"], r["seed"]) for r in rows] == [
        (0, 0, 7),
        (0, 1, 7),
        (1, 0, 7),
        (1, 1, 7),
    ]
    for r in rows:
        assert r["suite"] == SUITE
        assert r["termination"] == "max_steps" and r["success"] == 0
        assert r["steps"] == 6
        assert r["policy_calls"] == 2  # 6 steps with replan 5 -> two chunks
        assert r["latency_p50_ms"] is not None and r["wall_s"] > 0
        assert r["task"].startswith("pick up the black bowl")
    m = read_manifest(run)
    assert m["policy"]["name"] == "zero"
    assert m["versions"]["mujoco"] == "3.2.3" and m["versions"]["robosuite"] == "1.4.0"
    proto = m["suites"][SUITE]["protocol"]
    assert proto["max_steps"] == 6 and proto["replan_steps"] == 5 and proto["wait_steps"] == 10
    assert m["sessions"][-1]["status"] == "completed" and m["sessions"][-1]["episodes_run"] == 4
    assert len(m["protocol_fingerprint"]) == 16
    assert "95% CI (Wilson)" in console_summary(run)


def _eval_cmd(out, *extra):
    return [
        sys.executable,
        "-m",
        "evalkit.cli",
        "eval",
        "--suite",
        SUITE,
        "--policy",
        "zero",
        "--tasks",
        "0",
        "--episodes-per-task",
        "4",
        "--max-steps",
        "40",
        "--workers",
        "1",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def _wait_for_rows(run, n, proc, timeout=240):
    def stored() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "evalkit exited early"
        return count_rows(run) >= n

    wait_until(stored, f"{n} episode(s) stored", timeout)


def test_interrupted_run_resumes_only_missing_episodes(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_eval_cmd(run), stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_rows(run, 1, proc)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130  # workers terminated, not waited for: episodes remain (below)
    err = proc.stderr.read()
    assert "stopping…" in err and "Traceback" not in err
    before = {(r["init_state"]): r["finished_at"] for r in read_rows(run)}
    assert 1 <= len(before) < 4
    assert read_manifest(run)["sessions"][-1]["status"] == "interrupted"

    subprocess.run(_eval_cmd(run), check=True, capture_output=True, timeout=300)
    rows = read_rows(run)
    assert sorted(r["init_state"] for r in rows) == [0, 1, 2, 3]  # none duplicated, none missing
    assert all(before[r["init_state"]] == r["finished_at"] for r in rows if r["init_state"] in before)
    sessions = read_manifest(run)["sessions"]
    assert len(sessions) == 2 and sessions[1]["episodes_run"] == 4 - len(before)


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(tmp_path):
    """SIGTERM to the whole process group (as `timeout`, a batch scheduler or a service manager sends it): exit
    143, no worker traceback, the session marked interrupted, and the same command resumes."""
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _eval_cmd(run, "--workers", "2"), stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    _wait_for_rows(run, 1, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    err = proc.stderr.read()
    assert "stopping…" in err and "Traceback" not in err, err
    assert read_manifest(run)["sessions"][-1]["status"] == "interrupted"
    assert not (run / ".evalkit.lock").exists()
    done = subprocess.run(_eval_cmd(run), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(r["init_state"] for r in read_rows(run)) == [0, 1, 2, 3]


def test_a_second_ctrl_c_exits_at_once_without_worker_traces(tmp_path):
    """Both presses while the workers are still booting (where a worker used to print a KeyboardInterrupt trace):
    the first once both worker processes exist, the second once the first has been answered with "stopping…"."""
    psutil = import_or_skip("psutil", "make setup installs it (with the [ray] extra)")
    run = tmp_path / "run"
    # its own process group, signalled as a whole, as a terminal's Ctrl-C is
    proc = subprocess.Popen(
        _eval_cmd(run, "--workers", "2"), stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    lines: list[str] = []
    stopping = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "stopping…" in line:
                stopping.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()

    def workers_up() -> bool:
        assert proc.poll() is None, "".join(lines)
        return len([c for c in psutil.Process(proc.pid).children() if "spawn" in " ".join(c.cmdline())]) >= 2

    wait_until(workers_up, "both worker processes started", 120)
    os.killpg(proc.pid, signal.SIGINT)
    assert stopping.wait(60), "".join(lines)
    with contextlib.suppress(ProcessLookupError):  # the first may already have ended it
        os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    reader.join(60)
    err = "".join(lines)
    assert "SpawnProcess" not in err and "Traceback" not in err, err


def test_killed_worker_loses_nothing(tmp_path):
    psutil = import_or_skip("psutil", "make setup installs it (with the [ray] extra)")
    run = tmp_path / "run"
    proc = subprocess.Popen(_eval_cmd(run, "--workers", "2"), stderr=subprocess.PIPE, text=True)
    _wait_for_rows(run, 1, proc)
    workers = [
        c for c in psutil.Process(proc.pid).children(recursive=True) if "spawn" in " ".join(c.cmdline())
    ]
    assert workers, "no worker processes found"
    os.kill(workers[0].pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = read_rows(run)
    assert sorted(r["init_state"] for r in rows) == [0, 1, 2, 3]
    assert all(r["termination"] == "max_steps" for r in rows)


def test_same_results_whatever_the_worker_count_and_batch(tmp_path, monkeypatch):
    """An observation-dependent policy: an observation answered for the wrong episode would change the actions."""
    from evalkit.policies import registry

    monkeypatch.setitem(registry.BUILDERS, "feedback", "tests.fakes:make_state_feedback_policy")
    runs = {}
    for workers in (1, 2):
        runs[workers] = evaluate(
            EvalConfig(
                suite=SUITE,
                policy="feedback",
                out=tmp_path / f"w{workers}",
                tasks=(0, 1),
                episodes_per_task=2,
                max_steps=12,
                workers=workers,
                batch_size=workers,
                save_actions=True,
            ),
            progress=False,
        )
    keys = ("task_id", "init_state", "seed", "success", "steps", "termination", "policy_calls")
    one, two = ([{k: r[k] for k in keys} for r in read_rows(runs[w])] for w in (1, 2))
    assert one == two and len(one) == 4
    files = sorted(p.name for p in (runs[1] / "actions").iterdir())
    assert len(files) == 4
    for name in files:
        a, b = (np.load(runs[w] / "actions" / name)["actions"] for w in (1, 2))
        assert a.shape == (12, 7) and np.array_equal(a, b)
    # different episodes get different actions
    first, second = (np.load(runs[1] / "actions" / name)["actions"] for name in files[:2])
    assert not np.array_equal(first, second)


def test_video_at_control_rate_with_outcome_in_name(tmp_path):
    import imageio.v3 as iio

    run = evaluate(
        EvalConfig(
            suite=SUITE,
            policy="zero",
            out=tmp_path / "run",
            tasks=(0,),
            episodes_per_task=1,
            max_steps=4,
            workers=1,
            video="all",
        ),
        progress=False,
    )
    (row,) = read_rows(run)
    assert row["video"].startswith(f"videos/{SUITE}/task00_init000_seed7_failure_pick_up_the_black_bowl")
    path = run / row["video"]
    frames = iio.imread(path)
    # one frame after settling, one per step, then one second of the outcome banner at 20 fps
    assert frames.shape[0] == 1 + 4 + 20
    assert frames.shape[1:] == (256, 256, 3)
    # the banner's red FAILURE text sits in the top rows of the held frames
    top = frames[-1, :14].astype(int)
    assert ((top[..., 0] > 150) & (top[..., 1] < 120)).any()
    assert not (run / "videos" / ".partial").exists()  # no empty folder left behind
    assert not (run / ".evalkit.lock").exists()  # nor a lock naming a process that has ended


@pytest.mark.slow
def test_episodes_run_in_the_balanced_order_and_a_resume_keeps_it(tmp_path):
    """Issue 18: round-robin over tasks, init states shuffled by the protocol; a resumed run goes on in that order."""
    from evalkit.core.protocol import balanced_order, episodes_for
    from evalkit.rundir.manifest import read_manifest as manifest_of
    from evalkit.runner.evaluate import run_evaluation
    from evalkit.suites import registry

    config = EvalConfig(
        suite="droid_demo", policy="zero", out=tmp_path / "run", episodes_per_task=3, max_steps=3, workers=1
    )
    seen = []
    first = run_evaluation(config, progress=False, stop_when=lambda r: seen.append(r.spec) or len(seen) == 5)
    assert first.decided and len(seen) == 5
    rest = run_evaluation(config, progress=False, stop_when=lambda r: seen.append(r.spec) and False)
    assert rest.exit_code == 0 and rest.finished == 12
    suites = registry.resolve("droid_demo", episodes_per_task=3, max_steps=3)
    plan = balanced_order(episodes_for(suites), manifest_of(config.run_dir()).suite_fingerprints())
    assert seen == plan  # one worker: stored in dispatch order
    assert [e.task_id for e in plan[:8]] == [0, 1, 2, 3, 0, 1, 2, 3]


@pytest.mark.slow
def test_the_order_changes_no_episode_identity_or_outcome(tmp_path):
    """The same episodes (seeds, init states) give the same outcomes whether run in plan or balanced order."""
    from evalkit.core.protocol import episodes_for
    from evalkit.runner.evaluate import run_evaluation
    from evalkit.suites import registry

    rows = {}
    for name, episodes in (("plan", episodes_for(registry.resolve("droid_demo"))), ("balanced", None)):
        config = EvalConfig(suite="droid_demo", policy="oracle", out=tmp_path / name, workers=2)
        assert run_evaluation(config, progress=False, episodes=episodes).exit_code == 0
        rows[name] = [{k: r[k] for k in OUTCOME_COLUMNS} for r in read_rows(config.run_dir())]
    assert rows["plan"] == rows["balanced"] and len(rows["plan"]) == 8
    assert any(r["success"] for r in rows["plan"])
