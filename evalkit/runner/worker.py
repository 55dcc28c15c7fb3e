"""The env side: one simulator, one episode at a time, driven one policy call at a time.

`EnvHost` runs the episode loop of the protocol (settle steps, then ask for a chunk when the queue is empty and
execute its first `replan_steps` actions) as a state machine: `begin` starts an episode and `answer` gives it the
chunk it asked for; each returns the next message for the runner (`evalkit.runner.messages`): `PolicyCall`,
`EpisodeDone` or `SimCrashed`.

The local runner drives a host in a worker process over a pipe (`worker_main`: `RunEpisode` | `Actions` | `Abort`
| `Stop` in, host messages and `Aborted` out); the Ray runner drives one inside an actor
(`evalkit.runner.ray_actors`). A host knows nothing of the policy or the run beyond each episode's
`EpisodeOptions`, so one host serves run after run. Cameras are rendered only for a policy request that needs them
or a video frame.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections import deque
from collections.abc import Generator
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from evalkit.core.episode import EpisodeResult, EpisodeSpec
from evalkit.core.policy import Observation
from evalkit.core.protocol import SuiteSpec
from evalkit.runner.messages import (
    Abort,
    Aborted,
    Actions,
    EpisodeDone,
    EpisodeOptions,
    HostMessage,
    PolicyCall,
    RunEpisode,
    SimCrashed,
    Stop,
)
from evalkit.suites.base import SimEnv
from evalkit.suites.kinds import make_env
from evalkit.video import EpisodeVideo, video_name

Episode = Generator[Observation, np.ndarray, tuple[EpisodeResult, np.ndarray | None]]


class EnvHost:
    """One simulator (kept across episodes of the same task) and the episode in progress on it."""

    def __init__(self, suites: dict[str, SuiteSpec]):
        self.suites = suites
        self.env: SimEnv | None = None
        self.env_key: tuple[str, int] | None = None
        self.episode: Episode | None = None
        self.calls = 0

    # -- the runner's side ---------------------------------------------------------------------------------
    def begin(self, spec: EpisodeSpec, record_video: bool, options: EpisodeOptions) -> HostMessage:
        self.abort()
        try:
            suite = self.suites[spec.suite]
            if self.env_key != (spec.suite, spec.task_id):
                self.close()
                self.env = make_env(suite, spec.task_id)
                self.env_key = (spec.suite, spec.task_id)
            self.episode, self.calls = self._run(self.env, suite, spec, record_video, options), 0
            return self._advance(None)
        except Exception as exc:  # a simulator fault: the runner retries the episode, then records `error`
            return self._crashed(exc)

    def answer(self, chunk: np.ndarray) -> HostMessage:
        if self.episode is None:
            return SimCrashed("no episode is waiting for actions")
        try:
            return self._advance(chunk)
        except Exception as exc:
            return self._crashed(exc)

    def abort(self) -> None:
        """Drop the episode in progress (its video is discarded); nothing is recorded."""
        if self.episode is not None:
            episode, self.episode = self.episode, None
            with contextlib.suppress(Exception):
                episode.close()

    def close(self) -> None:
        self.abort()
        if self.env is not None:
            with contextlib.suppress(Exception):
                self.env.close()
        self.env, self.env_key = None, None

    def _advance(self, chunk: np.ndarray | None) -> HostMessage:
        assert self.episode is not None
        try:
            obs = next(self.episode) if chunk is None else self.episode.send(chunk)
        except StopIteration as done:
            self.episode = None
            return EpisodeDone(*done.value)
        self.calls += 1
        return PolicyCall(self.calls - 1, obs)

    def _crashed(self, exc: Exception) -> SimCrashed:
        self.close()
        return SimCrashed(f"{type(exc).__name__}: {exc}"[:500])

    # -- one episode -----------------------------------------------------------------------------------------
    def _run(
        self, env: SimEnv, suite: SuiteSpec, spec: EpisodeSpec, record_video: bool, options: EpisodeOptions
    ) -> Episode:
        proto = suite.protocol
        task = suite.task(spec.task_id).language
        start = time.perf_counter()
        video = (
            EpisodeVideo(Path(options.run_dir), spec.episode_id.replace("/", "_"), task, proto.control_hz)
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
                    obs = env.observe(cameras=options.cameras, privileged=options.privileged)
                    sent = time.perf_counter()
                    chunk = yield obs
                    latency_ms.append((time.perf_counter() - sent) * 1000)
                    queue.extend(chunk[: proto.replan_steps])
                action = queue.popleft()
                success = bool(env.step(action))
                steps += 1
                if options.save_actions:
                    executed.append(action)
                if video:
                    video.add(env.frame())
        except BaseException:  # including GeneratorExit (an aborted episode) and SystemExit (SIGTERM)
            if video:
                video.discard()
            raise
        video_path = None
        if video:
            if options.video_mode == "failures" and success:
                video.discard()
            else:
                name = video_name(spec.suite, spec.task_id, spec.init_state, spec.seed, task, success)
                video_path = video.finish(name, success)
        actions = (
            np.asarray(executed, dtype=np.float32).reshape(len(executed), -1)
            if options.save_actions
            else None
        )
        result = EpisodeResult(
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
            error=video.failure if video else None,  # "video not saved: ..." (the outcome stands)
        )
        return result, actions


# After a SIGTERM whose exit a finalizer swallowed, how long until the worker exits through SIGALRM
REDELIVER_S = 0.01


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signal.SIGTERM)  # unwinds the episode, so a partial video is discarded


def _exit_soon(unraisable: sys.UnraisableHookArgs) -> None:
    """A SIGTERM that lands in a finalizer (`__del__`, e.g. robosuite's MjModel) has its SystemExit swallowed (and
    printed as "Exception ignored"): exit again once the finalizer has returned, through SIGALRM."""
    if isinstance(unraisable.exc_value, SystemExit):
        signal.setitimer(signal.ITIMER_REAL, REDELIVER_S)
        return
    sys.__unraisablehook__(unraisable)


def exit_on_signals() -> None:
    """A worker's signals: SIGINT ignored (Ctrl-C is the runner's to handle); SIGTERM exits with 143, unwinding the
    episode, also when it lands in a finalizer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGALRM, _exit_on_sigterm)
    sys.unraisablehook = _exit_soon


def worker_main(conn: Connection, suites: dict[str, SuiteSpec]) -> None:
    """Entry point of a worker process (started with the spawn method, so GL contexts are created here).

    The runner starts it with SIGINT blocked (Ctrl-C is the runner's to handle; it is ignored from here on) and
    stops it with `Stop`, or SIGTERM after an interrupt.
    """
    exit_on_signals()
    from evalkit.rendering import configure_gl

    configure_gl()
    host = EnvHost(suites)
    try:
        while not isinstance(msg := conn.recv(), Stop):
            if isinstance(msg, RunEpisode):
                conn.send(host.begin(msg.spec, msg.record_video, msg.options))
            elif isinstance(msg, Actions):
                conn.send(host.answer(msg.chunk))
            elif isinstance(msg, Abort):
                host.abort()
                conn.send(Aborted())
    except (EOFError, BrokenPipeError, KeyboardInterrupt, SystemExit):
        pass
    finally:
        host.close()
