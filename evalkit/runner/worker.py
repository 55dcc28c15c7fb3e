"""The env worker: one process, one simulator, one episode at a time.

The worker runs the episode loop of the protocol (settle steps, then ask for a chunk when the queue is empty and
execute its first `replan_steps` actions) and talks to the runner over a pipe:

    runner -> worker: ("episode", EpisodeSpec, record_video) | ("chunk", actions) | ("abort",) | ("stop",)
    worker -> runner: ("request", call_index, obs) | ("result", EpisodeResult) | ("aborted",) | ("crashed", message)

Cameras are rendered only for a policy request that needs them or a video frame.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import time
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from evalkit.core.episode import EpisodeResult, EpisodeSpec
from evalkit.core.protocol import SuiteSpec
from evalkit.suites.base import SimEnv
from evalkit.video import EpisodeVideo, video_name


class EpisodeAborted(Exception):
    """The runner dropped the episode (the policy could not answer); nothing is recorded by the worker."""


class EpisodeLoop:
    def __init__(
        self,
        conn: Connection,
        run_dir: Path,
        cameras: bool,
        privileged: bool,
        video_mode: str,
        save_actions: bool,
    ):
        self.conn = conn
        self.run_dir = run_dir
        self.cameras = cameras
        self.privileged = privileged
        self.video_mode = video_mode
        self.save_actions = save_actions

    def run(self, env: SimEnv, suite: SuiteSpec, spec: EpisodeSpec, record_video: bool) -> EpisodeResult:
        proto = suite.protocol
        task = suite.task(spec.task_id).language
        start = time.perf_counter()
        video = (
            EpisodeVideo(self.run_dir, spec.episode_id.replace("/", "_"), task, proto.control_hz)
            if record_video
            else None
        )
        try:
            env.reset(spec)
            settle = np.asarray(proto.dummy_action, dtype=np.float64)
            for _ in range(proto.wait_steps):
                env.step(settle)
            if video:
                video.add(env.frame())
            queue: deque[np.ndarray] = deque()
            executed: list[np.ndarray] = []
            latency_ms: list[float] = []
            success, steps = False, 0
            while steps < proto.max_steps and not success:
                if not queue:
                    obs = env.observe(cameras=self.cameras, privileged=self.privileged)
                    sent = time.perf_counter()
                    self.conn.send(("request", len(latency_ms), obs))
                    reply = self.conn.recv()
                    if reply[0] == "abort":
                        raise EpisodeAborted
                    latency_ms.append((time.perf_counter() - sent) * 1000)
                    queue.extend(reply[1][: proto.replan_steps])
                action = queue.popleft()
                success = bool(env.step(action))
                steps += 1
                if self.save_actions:
                    executed.append(action)
                if video:
                    video.add(env.frame())
        except BaseException:
            if video:
                video.discard()
            raise
        video_path = None
        if video:
            if self.video_mode == "failures" and success:
                video.discard()
            else:
                name = video_name(spec.suite, spec.task_id, spec.init_state, spec.seed, task, success)
                video_path = video.finish(name, success)
        if self.save_actions:
            path = self.run_dir / "actions" / f"{spec.episode_id.replace('/', '_')}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, actions=np.asarray(executed, dtype=np.float32).reshape(len(executed), -1))
        return EpisodeResult(
            spec=spec,
            task=task,
            success=success,
            steps=steps,
            termination="success" if success else "max_steps",
            wall_s=time.perf_counter() - start,
            policy_calls=len(latency_ms),
            latency_ms=latency_ms,
            progress=env.progress(),
            video=video_path,
        )


def worker_main(
    conn: Connection,
    suites: dict[str, SuiteSpec],
    run_dir: str,
    cameras: bool,
    privileged: bool,
    video_mode: str,
    save_actions: bool,
) -> None:
    """Entry point of a worker process (started with the spawn method, so GL contexts are created here)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle
    from evalkit.rendering import configure_gl

    configure_gl()
    loop = EpisodeLoop(conn, Path(run_dir), cameras, privileged, video_mode, save_actions)
    env: SimEnv | None = None
    env_key: tuple[str, int] | None = None
    try:
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                break
            _, spec, record_video = msg
            suite = suites[spec.suite]
            try:
                if env_key != (spec.suite, spec.task_id):
                    _close(env)
                    env, env_key = None, None
                    kind = importlib.import_module(f"evalkit.suites.{suite.kind}")
                    env = kind.make_env(suite, spec.task_id)
                    env_key = (spec.suite, spec.task_id)
                conn.send(("result", loop.run(env, suite, spec, record_video)))
            except EpisodeAborted:
                conn.send(("aborted",))
            except (
                Exception
            ) as exc:  # a simulator fault: the runner retries the episode, then records `error`
                conn.send(("crashed", f"{type(exc).__name__}: {exc}"[:500]))
                _close(env)
                env, env_key = None, None
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        _close(env)


def _close(env: SimEnv | None) -> None:
    if env is not None:
        with contextlib.suppress(Exception):
            env.close()
