"""`EpisodeLedger`: the bookkeeping of one evaluation, whatever runs its episodes.

The local runner and the Ray runner each hold one per run (composition: they share no base class). The ledger
owns what both must do the same way:
- **dispatch order**: episodes go out in the order of the list it is given (e.g. a balanced order across tasks);
  a worker may take an episode of the task it just ran from the next `window` episodes (at most one per worker),
  so its simulator is reused without reordering the run beyond that small look-ahead;
- **attempts**: an episode whose simulator crashed, whose worker died or hung, or whose policy call raised is
  retried (first in line) up to `max_attempts`, then stored as `error` (never as a failure);
- **storing**: every result the moment it arrives, with its executed actions and video bytes, in the tally and the
  progress display; the first-of-task video rule;
- **stopping**: the stop hook (`stop_when`, checked after each stored episode) ends the run early once it returns
  True or a `StopRecord` (which the run then records in its manifest); `status` adds its text to the progress line
  (e.g. the sequential gate's current verdict); a policy that is gone, that breaks the action contract, or whose call still raises after the retries stops
  the run too (`tally.stopped` says why; broken actions raise InvalidActionsError from `finish`). Episodes in
  progress are then abandoned (not stored, run again on resume), except that when the policy is gone they are
  stored as `error`, as they were waiting on it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evalkit.batching import InvalidActionsError
from evalkit.core.episode import EpisodeResult, EpisodeSpec
from evalkit.core.policy import PolicyMeta
from evalkit.core.protocol import SuiteSpec
from evalkit.paths import safe_component
from evalkit.rundir.manifest import StopRecord
from evalkit.rundir.store import EpisodeStore
from evalkit.runner.config import EvalConfig
from evalkit.runner.messages import EpisodeDone, EpisodeOptions, PolicyFailed
from evalkit.runner.plan import Progress

# called with each stored result; True or a StopRecord ends the run early (a StopRecord is recorded in the manifest)
StopHook = Callable[[EpisodeResult], bool | StopRecord]


@dataclass
class Tally:
    """What this session stored."""

    done: int = 0
    successes: int = 0
    errors: int = 0
    results: list[EpisodeResult] = field(default_factory=list)
    # why the run ended before its list did (None: it ran every episode)
    stopped: str | None = None
    # the stop hook ended it (a decision, not a fault)
    decided: bool = False
    # what the stop hook recorded about its decision, if it gave a record
    decision: StopRecord | None = None


class EpisodeLedger:
    def __init__(
        self,
        config: EvalConfig,
        suites: Sequence[SuiteSpec],
        store: EpisodeStore,
        run_dir: Path,
        episodes: Sequence[EpisodeSpec],
        all_episodes: Sequence[EpisodeSpec] | None = None,
        *,
        progress: bool = False,
        stop_when: StopHook | None = None,
        status: Callable[[], str] | None = None,
    ):
        """`episodes`: what to run, in dispatch order; `all_episodes`: the whole plan (for the first-of-task
        video rule; default `episodes`)."""
        self.config = config
        self.suites = {s.name: s for s in suites}
        self.store = store
        self.run_dir = Path(run_dir)
        self.todo: deque[EpisodeSpec] = deque(episodes)
        self.total = len(episodes)
        self.stop_when = stop_when
        self.status = status
        self.tally = Tally()
        self.attempts: dict[EpisodeSpec, int] = {}
        # raised by `finish`: the policy broke the action contract
        self.error: InvalidActionsError | None = None
        # the policy is gone: episodes in progress are then stored as `error` (they were waiting on it)
        self.policy_gone = False
        self.first_of_task: dict[tuple[str, int], int] = {}
        for spec in all_episodes if all_episodes is not None else episodes:
            key = (spec.suite, spec.task_id)
            self.first_of_task[key] = min(self.first_of_task.get(key, spec.init_state), spec.init_state)
        self.progress = Progress.start(self.total, config.workers or 1, progress)

    # -- dispatch --------------------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.tally.stopped is not None

    def has_work(self) -> bool:
        return bool(self.todo) and not self.stopping

    def next_episode(self, last_task: tuple[str, int] | None, window: int) -> EpisodeSpec:
        """The next episode in list order, or one of the worker's last task among the next `window`."""
        if last_task is not None:
            for i in range(min(window, len(self.todo))):
                spec = self.todo[i]
                if (spec.suite, spec.task_id) == last_task:
                    del self.todo[i]
                    return spec
        return self.todo.popleft()

    def record_video(self, spec: EpisodeSpec) -> bool:
        mode = self.config.video
        if mode == "first-per-task":
            return self.first_of_task.get((spec.suite, spec.task_id)) == spec.init_state
        return mode in ("all", "failures")

    def episode_options(self, meta: PolicyMeta, run_dir: Path | None = None) -> EpisodeOptions:
        return EpisodeOptions(
            run_dir=str(run_dir or self.run_dir),
            cameras=bool(meta.cameras),
            privileged=meta.privileged,
            video_mode=self.config.video,
            save_actions=self.config.save_actions,
        )

    def action_dim(self, spec: EpisodeSpec) -> int:
        return self.suites[spec.suite].protocol.action_dim

    # -- outcomes --------------------------------------------------------------------------------------------
    def done(self, msg: EpisodeDone) -> None:
        """A finished episode: its actions and video bytes are written, then its row."""
        result = msg.result
        if msg.actions is not None:
            save_actions(self.run_dir, result.spec, msg.actions)
        if msg.video is not None and result.video:
            path = self.run_dir / result.video
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(msg.video)
        self._store(result)

    def crashed(self, spec: EpisodeSpec, reason: str) -> None:
        """The simulator raised, or the worker died or hung: retried, then stored as `error`."""
        if self.stopping:
            self.abandon(spec)
        elif not self._retry(spec, reason):
            self._store(self._error_result(spec, f"{reason} (after {self.attempts[spec]} attempts)"))

    def policy_failed(self, spec: EpisodeSpec, failure: PolicyFailed) -> None:
        """The policy is gone or broke the action contract: the run stops. It raised: the episode is retried, then
        stored as `error`, and the run stops (a policy that fails on an observation after retries is broken)."""
        if failure.kind == "unavailable" and not self.policy_gone:
            self.policy_gone = True
            self._stop(f"policy unavailable: {failure.message}")
        elif failure.kind == "invalid" and self.error is None:
            self.error = InvalidActionsError(failure.message)
            self._stop(failure.message)
        if self.stopping:
            self.abandon(spec)
        elif not self._retry(spec, f"policy error: {failure.message}"):
            reason = f"policy error: {failure.message} (after {self.attempts[spec]} attempts)"
            self._store(self._error_result(spec, reason))
            self._stop(reason)

    def abandon(self, spec: EpisodeSpec) -> None:
        """An episode dropped because the run stops: stored as `error` when the policy is gone (it was waiting on
        it), otherwise not stored (a resume runs it)."""
        if self.policy_gone:
            self._store(self._error_result(spec, self.tally.stopped or "policy unavailable"))

    def finish(self) -> Tally:
        """Close the progress display; raise InvalidActionsError if the policy broke the action contract."""
        self.progress.close()
        if self.error is not None:
            raise self.error
        return self.tally

    def _retry(self, spec: EpisodeSpec, reason: str) -> bool:
        """Put `spec` first in line again if it has attempts left and the run goes on; True if it was."""
        self.attempts[spec] = self.attempts.get(spec, 0) + 1
        if self.attempts[spec] >= self.config.max_attempts:
            return False
        self.todo.appendleft(spec)
        self.progress.write(f"evalkit: retrying {spec.episode_id} ({reason})")
        return True

    def _stop(self, reason: str) -> None:
        if self.tally.stopped is None:
            self.tally.stopped = reason

    def _error_result(self, spec: EpisodeSpec, message: str) -> EpisodeResult:
        task = self.suites[spec.suite].task(spec.task_id).language
        return EpisodeResult(spec, task, False, 0, "error", 0.0, error=message)

    def _store(self, result: EpisodeResult) -> None:
        self.store.add(result)  # written the moment the episode ends
        tally = self.tally
        tally.done += 1
        tally.successes += int(result.success)
        tally.errors += int(result.termination == "error")
        tally.results.append(result)
        if self.stop_when is not None and not self.stopping:
            decision = self.stop_when(result)
            if decision:
                self._stop("stopped by decision")
                tally.decided = True
                tally.decision = decision if isinstance(decision, StopRecord) else None
        note = self.status() if self.status is not None else ""
        self.progress.update(tally.done, tally.successes, tally.errors, note)


def save_actions(run_dir: Path, spec: EpisodeSpec, actions: np.ndarray) -> None:
    """Executed actions of one episode, `actions/<episode id>.npz` (written by the driver, whatever the backend)."""
    path = Path(run_dir) / "actions" / f"{safe_component(spec.episode_id.replace('/', '_'))}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, actions=actions)
