"""`evalkit eval --ray` on a simulated multi-node Ray cluster (ray.cluster_utils.Cluster: a head and two worker
nodes on this machine), with real LIBERO scenes: same per-episode results as the local runner, node loss,
replica loss, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from evalkit.runner import EvalConfig, evaluate
from tests.helpers import count_rows, read_manifest, read_rows, wait_until
from tests.system import import_or_skip

ray = import_or_skip("ray", "make setup installs the [ray] extra")
from ray.cluster_utils import Cluster  # noqa: E402

# slow: a Ray cluster with LIBERO scenes
pytestmark = pytest.mark.slow

KEYS = ("task_id", "init_state", "seed", "success", "steps", "termination", "policy_calls")
FEEDBACK = "tests.fakes:make_state_feedback_policy"


@pytest.fixture(scope="module")
def cluster():
    """One Ray cluster for the whole module (starting Ray takes ~10 s here): head with 2 CPUs, two 2-CPU nodes."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def feedback(monkeypatch):
    from evalkit.policies import registry

    monkeypatch.setitem(registry.BUILDERS, "feedback", FEEDBACK)


def _config(out, **kw):
    base = dict(
        suite="libero_spatial",
        policy="feedback",
        out=out,
        tasks=(0, 1),
        episodes_per_task=2,
        max_steps=12,
        workers=2,
        batch_size=2,
        save_actions=True,
    )
    return EvalConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The reference: the same episodes through the local runner."""
    from evalkit.policies import registry

    registry.BUILDERS["feedback"] = FEEDBACK
    try:
        return evaluate(_config(tmp_path_factory.mktemp("local") / "run"), progress=False)
    finally:
        del registry.BUILDERS["feedback"]


def _same_results(run, reference):
    rows = read_rows(run)
    assert [{k: r[k] for k in KEYS} for r in rows] == [{k: r[k] for k in KEYS} for r in read_rows(reference)]
    assert len({(r["task_id"], r["init_state"]) for r in rows}) == len(rows) == 4  # each stored exactly once
    for name in sorted(p.name for p in (reference / "actions").iterdir()):
        a, b = (np.load(d / "actions" / name)["actions"] for d in (run, reference))
        assert a.shape == (12, 7) and np.array_equal(a, b)


def _cluster_is_idle(timeout=120):
    """Every CPU of the cluster free again: no actor of the run is left."""
    wait_until(
        lambda: ray.available_resources().get("CPU", 0) == ray.cluster_resources().get("CPU", -1),
        "every CPU of the cluster free again",
        timeout,
    )
    return True


def test_ray_run_stores_the_local_runs_results(cluster, feedback, local_run, tmp_path):
    run = evaluate(_config(tmp_path / "run", ray="auto", workers=3, policy_replicas=2), progress=False)
    _same_results(run, local_run)
    execution = read_manifest(run)["execution"]
    assert execution["backend"] == "ray" and execution["ray_version"] == ray.__version__
    assert execution["nodes"] == 3 and execution["resources"]["CPU"] == 6
    assert execution["workers"] == 3 and execution["policy_replicas"] == 2
    assert read_manifest(local_run)["execution"]["backend"] == "local"
    assert _cluster_is_idle()


def test_ray_dispatches_in_list_order_and_stops_when_the_hook_decides(cluster, feedback, tmp_path):
    """As locally: one worker takes the episodes in the order given; the stop hook ends a run early (episodes in
    progress on the actors are dropped, the actors stay usable)."""
    from evalkit.core.protocol import episodes_for
    from evalkit.runner.evaluate import resolve_suites, run_evaluation

    config = _config(tmp_path / "ordered", ray="auto", workers=1, max_steps=2, save_actions=False)
    plan = episodes_for(resolve_suites(config))
    order = [plan[3], plan[0], plan[2], plan[1]]
    stored = []
    run_evaluation(
        config, progress=False, episodes=order, stop_when=lambda r: stored.append(r.spec) and False
    )
    assert stored == order

    decided = []
    outcome = run_evaluation(
        _config(tmp_path / "decided", ray="auto", workers=2, episodes_per_task=6, save_actions=False),
        progress=False,
        stop_when=lambda r: decided.append(r.spec) or len(decided) == 2,
    )
    assert outcome.decided and outcome.exit_code == 0 and 2 <= outcome.finished <= 3 < 12
    assert read_manifest(outcome.run_dir)["sessions"][-1]["status"] == "stopped by decision"
    assert _cluster_is_idle()


def _run_in_thread(config):
    box = {}

    def target():
        try:
            box["run"] = evaluate(config, progress=False)
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def _wait_for_rows(run, n, thread, timeout=240):
    def stored() -> bool:
        assert thread.is_alive(), "the run ended before"
        return count_rows(run) >= n

    wait_until(stored, f"{n} episode(s) stored", timeout)


def _replica_pids():
    pids = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"ray::PolicyReplica" in f.read():
                    pids.append(int(pid))
        except (OSError, ValueError):
            pass
    return pids


def test_ray_runs_the_balanced_order_as_the_local_runner_does(cluster, feedback, tmp_path):
    """Issue 18: the default plan is the balanced order, the same under --ray as locally (one worker each, so the
    episodes are stored in dispatch order)."""
    from evalkit.runner.evaluate import run_evaluation

    orders: dict[str, list] = {"local": [], "ray": []}
    for backend, stored in orders.items():
        config = _config(
            tmp_path / backend,
            ray="auto" if backend == "ray" else None,
            workers=1,
            max_steps=2,
            episodes_per_task=3,
            save_actions=False,
        )
        run_evaluation(
            config, progress=False, stop_when=lambda r, stored=stored: stored.append(r.spec) and False
        )
    assert orders["ray"] == orders["local"] and len(orders["ray"]) == 6
    assert [s.task_id for s in orders["ray"]] == [0, 1, 0, 1, 0, 1]  # round-robin over the tasks
    assert _cluster_is_idle()


def test_a_killed_replica_is_restarted_and_its_requests_resent(cluster, feedback, local_run, tmp_path, capfd):
    config = _config(tmp_path / "run", ray="auto", policy_replicas=1, max_steps=12)
    thread, box = _run_in_thread(config)
    _wait_for_rows(config.out, 1, thread)
    (pid,) = _replica_pids()
    os.kill(pid, signal.SIGKILL)  # its in-flight requests are lost with it
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    _same_results(box["run"], local_run)
    assert _cluster_is_idle()


def _episode_running_on(node, thread, timeout=240) -> int:
    """Wait until an env actor of `node` (a child of its raylet) is inside an episode; its pid."""
    psutil = import_or_skip("psutil", "ray installs it")
    from ray._private import ray_constants

    raylet = psutil.Process(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
    running: list[int] = []

    def in_episode() -> bool:
        assert thread.is_alive(), "the run ended before"
        for child in raylet.children():
            try:
                if "ray::EnvActor.run" in " ".join(child.cmdline()):
                    running.append(child.pid)
                    return True
            except psutil.Error:
                continue
        return False

    wait_until(in_episode, "an env actor of the node inside an episode", timeout)
    return running[0]


def test_a_stopped_env_actor_is_replaced_and_its_episode_retried(
    cluster, feedback, local_run, tmp_path, capfd
):
    """The watchdog: SIGSTOP an env actor inside an episode. Stepping, it owes a report within the timeout;
    waiting on the policy, it must answer a ping within it. Either way it is replaced and the episode retried."""
    head, workers = cluster
    config = _config(tmp_path / "run", ray="auto", workers=3, max_steps=12, episode_timeout_s=10.0)
    thread, box = _run_in_thread(config)
    pid = _episode_running_on(workers[1], thread)
    os.kill(pid, signal.SIGSTOP)
    try:
        thread.join(timeout=300)
        assert "error" not in box, box.get("error")
        _same_results(box["run"], local_run)
        assert "no progress for 10 s" in capfd.readouterr().err  # the episode was retried
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert _cluster_is_idle()


def test_a_lost_node_loses_no_episode(cluster, feedback, local_run, tmp_path, capfd):
    head, workers = cluster
    config = _config(tmp_path / "run", ray="auto", workers=3, max_steps=12)
    thread, box = _run_in_thread(config)
    _episode_running_on(workers[0], thread)
    head.remove_node(workers[0])  # its env actor dies mid-episode
    try:
        thread.join(timeout=300)
        assert "error" not in box, box.get("error")
        _same_results(box["run"], local_run)
        assert "env worker lost" in capfd.readouterr().err  # an episode was retried elsewhere
        assert all(r["termination"] != "error" for r in read_rows(box["run"]))
    finally:
        workers[0] = head.add_node(num_cpus=2)
        head.wait_for_nodes()
    assert _cluster_is_idle()


def test_ctrl_c_stops_the_actors_and_keeps_finished_episodes(cluster, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "evalkit.cli", "eval", "--suite", "libero_spatial", "--policy", "zero"]
    cmd += ["--tasks", "0", "--episodes-per-task", "6", "--max-steps", "60", "--workers", "2", "--quiet"]
    cmd += ["--ray", cluster[0].address, "--out", str(run)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)

    def stored() -> bool:
        assert proc.poll() is None, proc.stderr.read()
        return count_rows(run) >= 1

    wait_until(stored, "a first episode stored", 240)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130  # the actors killed, not waited for: episodes remain (below)
    err = proc.stderr.read()
    assert "stopping…" in err and "Traceback" not in err
    # it says which cluster it joined, and how big it is
    assert f"evalkit: joined the Ray cluster at {cluster[0].address}: 3 nodes, 6 CPUs, 0 GPUs" in err
    assert 1 <= len(read_rows(run)) < 6
    assert read_manifest(run)["sessions"][-1]["status"] == "interrupted"
    assert _cluster_is_idle()


def test_without_the_flag_ray_is_not_imported(tmp_path):
    code = (
        "import sys; from evalkit.cli import main; "
        f"rc = main(['eval', '--suite', 'libero_spatial', '--policy', 'zero', '--tasks', '0', "
        f"'--episodes-per-task', '1', '--max-steps', '2', '--workers', '1', '--quiet', '--out', r'{tmp_path}']); "
        "print('exit', rc); print('ray modules', sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "exit 0" in proc.stdout and "ray modules []" in proc.stdout, proc.stdout + proc.stderr
