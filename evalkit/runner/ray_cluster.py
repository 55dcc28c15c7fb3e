"""Which Ray cluster `evalkit eval --ray` uses, and noticing when it is gone.

- `--ray local` starts a private Ray instance in this process (`ray.init(address="local")`): it never joins another
  one, and it writes no `ray_current_cluster` file, so another process's `--ray auto` does not pick it up.
- `--ray auto` joins the cluster this machine belongs to: `$RAY_ADDRESS`, else the one `ray start` last started
  here. Unlike Ray's own "auto", it never falls back to any Ray process it finds running (e.g. another user's
  `--ray local`). It says which cluster it joined and how big it is.
- `--ray HOST:PORT` joins the cluster whose head (GCS) listens there, from a node of that cluster. The address is
  probed first, so an unreachable one is one line within `CONNECT_TIMEOUT_S` (Ray itself retries for minutes).
- `ray://` (Ray Client) is refused up front: Ray Client cannot stream an actor method's results, which is how env
  actors report their episodes. Run evalkit on a node of the cluster instead.

Env actors and policy replicas read evalkit's settings from their environment (`WORKER_ENV`: registered suite
kinds, suite files, the cache, the GL backend...). Those of `--ray local` inherit the driver's; when joining a
cluster started elsewhere, the driver's values travel in the job's `runtime_env`. (An API key does not: Ray shows a
job's runtime_env to anyone who can see the cluster; `ray_runner` hands it to the replicas with their options.)

`ClusterWatch` polls the cluster state from a thread: if Ray marks this machine's node dead, or the cluster does
not answer for `CLUSTER_TIMEOUT_S`, the driver stops with one line (finished episodes are kept; re-running the
same command resumes) instead of waiting forever on actors that will never report.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time

import ray

from evalkit.core.cores import usable_cores
from evalkit.core.errors import EvalkitError
from evalkit.runner.outcome import IncompleteRunError

CONNECT_TIMEOUT_S = 10.0  # probing a cluster address before joining it
WATCH_EVERY_S = 2.0  # how often ClusterWatch asks the cluster for its nodes
CLUSTER_TIMEOUT_S = 30.0  # a cluster that has not answered for this long is lost

# The driver's environment variables that env actors and policy replicas read (suite kinds and files, cache, assets,
# tokenizer, hub, GL backend)
WORKER_ENV = (
    "EVALKIT_SUITE_KINDS",
    "EVALKIT_TASKS",
    "EVALKIT_CACHE",
    "EVALKIT_LIBEROPLUS_ASSETS",
    "EVALKIT_TOKENIZER",
    "EVALKIT_HUB_ENDPOINT",
    "MUJOCO_GL",
    "PYOPENGL_PLATFORM",
)
# what Ray's job manager gives a submitted job's driver: the job's config, its runtime_env included, as JSON
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
# Ray's own options for a quiet run: warnings and errors only, no worker output copied to the driver, no dashboard
QUIET = {"logging_level": logging.WARNING, "log_to_driver": False, "include_dashboard": False}


class ClusterLostError(IncompleteRunError):
    """The Ray cluster (or this machine's node of it) is gone; what was stored stays, a re-run resumes."""


def connect(address: str, cpus_needed: int) -> bool:
    """Join or start Ray; True if a local instance was started here (and must be shut down).

    A process already connected to Ray (e.g. a test's or a benchmark's cluster) keeps its connection."""
    if ray.is_initialized():
        return False
    if address == "local":
        # Env workers are mostly waiting on the policy or the GPU: as in the local runner, --workers may exceed cores.
        ray.init(address="local", num_cpus=max(usable_cores(), cpus_needed), **QUIET)
        return True
    target = cluster_address(address)
    probe(target)
    env_vars = worker_env_vars()
    try:
        ray.init(address=target, runtime_env={"env_vars": env_vars} if env_vars else None, **QUIET)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EvalkitError(f"cannot join the Ray cluster at {target}: {str(exc).splitlines()[0]}") from exc
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    total = ray.cluster_resources()
    print(
        f"evalkit: joined the Ray cluster at {target}: {nodes} node{'s' * (nodes != 1)}, "
        f"{total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs",
        file=sys.stderr,
        flush=True,
    )
    return False


def worker_env_vars() -> dict[str, str]:
    """The driver's values of `WORKER_ENV`, less those a submitted job's own runtime_env sets (`ray job submit
    --runtime-env-json`: Ray refuses to merge a variable given twice, and the job's value wins)."""
    job = json.loads(os.environ.get(JOB_CONFIG_ENV) or "{}")
    taken = (job.get("runtime_env") or {}).get("env_vars") or {}
    return {name: os.environ[name] for name in WORKER_ENV if name in os.environ and name not in taken}


def cluster_address(address: str) -> str:
    """The GCS address (host:port) that `--ray ADDRESS` means."""
    if address.startswith("ray://"):
        raise EvalkitError(
            f"--ray {address}: Ray Client addresses are not supported (Ray Client cannot stream the episodes' "
            "reports); run evalkit on a node of the cluster with --ray auto, e.g. through `ray job submit` or ssh"
        )
    if address != "auto":
        return address
    from ray._private.services import get_ray_address_from_environment

    # None (not "auto"): $RAY_ADDRESS or the cluster `ray start` recorded, never any Ray process found running
    found = get_ray_address_from_environment(None, None)
    if not found:
        raise EvalkitError(
            "--ray auto found no Ray cluster: none was started on this machine with `ray start` and RAY_ADDRESS "
            "is not set; give the head's address (--ray HOST:PORT) or start one here with --ray local"
        )
    return found


def probe(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse an address nothing answers at, in one line, before Ray spends minutes retrying it."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise EvalkitError(f"--ray {address}: expected local, auto or HOST:PORT (the head's GCS address)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise EvalkitError(f"cannot reach the Ray cluster at {address}: {reason}") from None


class ClusterWatch:
    """Polls `ray.nodes()` from a daemon thread; `check()` raises ClusterLostError once the cluster is gone."""

    def __init__(self, every_s: float = WATCH_EVERY_S, timeout_s: float = CLUSTER_TIMEOUT_S):
        self.every_s, self.timeout_s = every_s, timeout_s
        self.node_id = ray.get_runtime_context().get_node_id()
        self.dead: str | None = None
        self.answered = time.monotonic()
        self._stop = threading.Event()
        threading.Thread(target=self._poll, name="evalkit-ray-watch", daemon=True).start()

    def _poll(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                nodes = ray.nodes()
            except Exception:  # the cluster does not answer; `check` decides when that is too long
                continue
            mine = next((n for n in nodes if n.get("NodeID") == self.node_id), None)
            if mine is not None and not mine.get("Alive"):
                self.dead = f"Ray marked this machine's node dead ({mine.get('NodeManagerAddress', '?')})"
                return
            self.answered = time.monotonic()

    def check(self) -> None:
        if self.dead is not None:
            raise ClusterLostError(self.dead)
        silent = time.monotonic() - self.answered
        if silent > self.timeout_s:
            raise ClusterLostError(f"the Ray cluster has not answered for {silent:.0f} s")

    def stop(self) -> None:
        self._stop.set()
