"""Evaluations, from suite resolution to the stored episodes, resumable.

`evaluate(config)` runs one (the `evalkit eval` command). `EvalSession` runs several with the same suites and
backend, keeping the env workers (local processes or Ray actors) alive between them and swapping only the policy,
which is what `evalkit watch` needs:

    with EvalSession(config) as session:                 # suites resolved, Ray joined; workers start on first use
        for checkpoint in checkpoints:
            options = dataclasses.replace(config.policy, checkpoint=checkpoint)
            outcome = session.evaluate(options, out=run_dir_for(checkpoint))   # its own store and run directory
            print(outcome.exit_code, outcome.last_line())

`session.evaluate` also takes `episodes` (the episodes to run, dispatched in that order; default: the protocol's
episodes in the balanced order, `evalkit.core.protocol.balanced_order`: round-robin over tasks, each task's init
states in a fixed shuffled order seeded by its protocol fingerprint, so that any prefix of the run is balanced across
tasks; the same order for every run of a protocol, local or Ray, new or resumed), `stop_when` (called with each
stored `EpisodeResult`; returning True, or a `StopRecord` that the manifest then records, ends the run early,
in-progress episodes are dropped, and the outcome says it was decided), `status` (text for the progress line) and
`training_step` (recorded in the run's manifest). A run whose manifest records a stop by decision runs no more
episodes when resumed. An evaluation that fails (the policy does not load or does not fit the suites, a refusal,
Ctrl-C) leaves the session usable; `session.unload()` frees the policy (its memory, its Ray replicas and their GPUs)
between evaluations while the env workers stay up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.core.compatibility import check_compatible
from evalkit.core.embodiment import embodiment
from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.policy import Policy, PolicyMeta, PolicyOptions
from evalkit.core.protocol import SuiteSpec, balanced_order, episodes_for
from evalkit.policies.registry import make_policy
from evalkit.rundir.lock import RunLock
from evalkit.rundir.manifest import StopRecord, now, open_manifest, write_manifest
from evalkit.rundir.store import EpisodeStore, RunIdentity
from evalkit.runner.config import VIDEO_MODES, EvalConfig, default_workers
from evalkit.runner.ledger import EpisodeLedger, StopHook, Tally
from evalkit.runner.outcome import IncompleteRunError, RunOutcome
from evalkit.runner.plan import describe_plan
from evalkit.runner.runner import LocalRunner, stop_on_signals


def resolve_suites(config: EvalConfig) -> list[SuiteSpec]:
    from evalkit.suites import registry

    suites = registry.resolve(
        config.suite,
        protocol=config.protocol,
        episodes_per_task=config.episodes_per_task,
        max_steps=config.max_steps,
        seed=config.seed,
        tasks=config.tasks,
    )
    kinds = {(s.embodiment, s.protocol.action_dim) for s in suites}
    if len(kinds) > 1:
        raise EvalkitError(f"suite {config.suite} mixes embodiments {sorted(kinds)}; run them separately")
    return suites


def policy_options(config: EvalConfig, suites: list[SuiteSpec]) -> PolicyOptions:
    """The policy options of `config` for these suites: its embodiment and action dims are the suites', its largest
    batch the run's."""
    body = embodiment(suites[0].embodiment)
    return dataclasses.replace(
        config.policy, embodiment=body.name, action_dim=body.action_dim, max_batch=config.batch_size
    )


def check_config(config: EvalConfig) -> None:
    """Refuse bad settings in one line, before anything starts."""
    if config.out is not None and not str(config.out).strip():
        raise EvalkitError("--out must not be empty (omit it for results/<suite>__<policy>)")
    if config.video not in VIDEO_MODES:
        raise EvalkitError(f"unknown video mode {config.video!r}; choose one of {', '.join(VIDEO_MODES)}")
    if config.batch_size < 1 or (config.workers is not None and config.workers < 1):
        raise EvalkitError("--workers and --batch-size must be at least 1")
    if not (math.isfinite(config.episode_timeout_s) and config.episode_timeout_s > 0):
        raise EvalkitError(
            f"--episode-timeout must be a positive number of seconds, got {config.episode_timeout_s}"
        )
    if config.ray is None:
        if config.policy_replicas != 1 or config.gpus_per_replica:
            raise EvalkitError("--policy-replicas and --gpus-per-replica need --ray")
        return
    if config.policy_replicas < 1:
        raise EvalkitError("--policy-replicas must be at least 1")
    if not (math.isfinite(config.gpus_per_replica) and config.gpus_per_replica >= 0):
        raise EvalkitError(f"--gpus-per-replica must be a number >= 0, got {config.gpus_per_replica}")


class LocalBackend:
    """The policy in this process, env workers as local processes (kept across policies). A policy given
    ready-made (the Python API's) is used as it is and left open: its owner closes it."""

    def __init__(self, config: EvalConfig, suites: list[SuiteSpec]):
        self.config = config.replace(workers=config.workers or default_workers())
        self.runner = LocalRunner(self.config, suites)
        self.policy: Policy | None = None
        self.owned = False

    def load(self, policy: PolicyOptions | Policy) -> PolicyMeta:
        """Build (or take) the policy to evaluate next, closing the previous one if it was built here."""
        self.unload()
        self.owned = isinstance(policy, PolicyOptions)
        self.policy = make_policy(policy) if isinstance(policy, PolicyOptions) else policy
        return self.policy.meta

    def unload(self, graceful: bool = True) -> None:
        policy, self.policy = self.policy, None
        if policy is not None and self.owned:
            policy.close()

    def run(self, ledger: EpisodeLedger) -> Tally:
        assert self.policy is not None, "load a policy first"
        return self.runner.run(self.policy, ledger)

    def execution(self) -> dict[str, Any]:
        return {"backend": "local", "workers": self.config.workers, "batch_size": self.config.batch_size}

    def kill_now(self) -> None:
        self.runner.kill_now()

    def close(self, graceful: bool = True) -> None:
        self.unload(graceful)
        self.runner.close(graceful)


def start_backend(config: EvalConfig, suites: list[SuiteSpec]):
    """LocalBackend, or RayBackend for `--ray` (Ray is imported only then)."""
    if config.ray is None:
        return LocalBackend(config, suites)
    if config.ray == "local" and "ray" not in sys.modules:
        # Ray's default for a new instance (token authentication), asked for explicitly so that Ray does not warn
        # that it chose it. Ray reads the setting once, when it is imported.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    from evalkit.runner.ray_runner import RayBackend

    return RayBackend(config, suites)


def prepare_run_dir(run_dir: Path) -> bool:
    """Create the run directory if needed and check it is writable; True if it was created now."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise EvalkitError(f"output directory {run_dir} is not writable: {exc.strerror or exc}") from exc
    return created


def tidy_run_dir(run_dir: Path) -> None:
    """Remove the empty folders a run may leave (`videos/.partial`, then `videos` if nothing was filmed)."""
    for folder in (run_dir / "videos" / ".partial", run_dir / "videos"):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty


@dataclass(frozen=True)
class RunHooks:
    """What a caller plugs into one evaluation: the stop hook, the progress line's extra text, and whether the
    plan is to be put in the balanced order (not when the caller gave its own list of episodes)."""

    stop_when: StopHook | None = None
    status: Callable[[], str] | None = None
    balanced: bool = True


def stopped_note(stop: StopRecord, run_dir: Path, finished: int, planned: int) -> str:
    return (
        f"evalkit: {run_dir} was ended by its stopping rule ({stop.verdict} after {stop.pairs:,} pairs against run "
        f"{stop.baseline_run_id}, {stop.test}; {finished:,} of {planned:,} planned episodes have an outcome): it "
        "runs no more episodes, which would void that rule; use another --out for a new run"
    )


def session_status(tally: Tally) -> str:
    if tally.decision is not None and tally.decision.verdict == "undecided":
        return "completed"
    if tally.decided:
        return "stopped by decision"
    return f"failed: {tally.stopped}" if tally.stopped else "completed"


class EvalSession:
    """Suites resolved and a backend started once, for one evaluation after another (see the module docstring)."""

    def __init__(self, config: EvalConfig):
        check_config(config)
        self.config = config
        self.suites = resolve_suites(config)
        self.backend = start_backend(config, self.suites)

    def __enter__(self) -> EvalSession:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.close(graceful=exc_type is None)

    def close(self, graceful: bool = True) -> None:
        """Stop the workers and the policy (at once, without waiting on them, unless `graceful`)."""
        self.backend.close(graceful)

    def kill_now(self) -> None:
        self.backend.kill_now()

    def unload(self) -> None:
        """Free the current policy (the env workers stay up for the next evaluation)."""
        self.backend.unload()

    def evaluate(
        self,
        policy: PolicyOptions | Policy | None = None,
        *,
        out: Path | None = None,
        episodes: Sequence[EpisodeSpec] | None = None,
        stop_when: StopHook | None = None,
        progress: bool = True,
        command: list[str] | None = None,
        status: Callable[[], str] | None = None,
        training_step: int | None = None,
    ) -> RunOutcome:
        """Evaluate `policy` (options, or a ready-made policy described by the session config's `policy`; default:
        the config's) into `out` (default: the config's run directory); resumes what that directory holds.
        Raises EvalkitError on bad input; a policy that failed to load or to fit the suites is not kept."""
        config = self.backend.config
        if isinstance(policy, PolicyOptions):
            config = config.replace(policy=policy)
        elif (
            policy is not None and config.ray is not None
        ):  # (config.policy then says what it is, for the record)
            raise EvalkitError("a policy object runs in this process: it cannot be used with --ray")
        if out is not None:
            config = config.replace(out=Path(out))
        if training_step is not None:
            config = config.replace(training_step=training_step)
        check_config(config)
        built = policy if policy is not None and not isinstance(policy, PolicyOptions) else None
        try:
            meta = self.backend.load(built or policy_options(config, self.suites))
            check_compatible(meta, self.suites)
            if meta.cameras or config.video != "none":
                from evalkit.rendering import check_gl

                check_gl()
        except BaseException:
            self.backend.unload(graceful=False)
            raise
        plan = list(episodes) if episodes is not None else episodes_for(self.suites)
        hooks = RunHooks(stop_when, status, balanced=episodes is None)
        return self._run(config, meta, plan, hooks, progress, command)

    def _print_unavailable(self, config: EvalConfig) -> None:
        """What a suite kind left out of a whole suite, and why (not when tasks were chosen by hand)."""
        for suite in self.suites if config.tasks is None else ():
            if suite.unavailable_note():
                print(f"evalkit: {suite.name}: {suite.unavailable_note()}")

    def _run(self, config, meta, plan, hooks: RunHooks, progress, command) -> RunOutcome:
        command = command if command is not None else [os.path.basename(sys.argv[0]), *sys.argv[1:]]
        run_dir = config.run_dir()
        created = prepare_run_dir(run_dir)
        tally: Tally | None = None
        try:
            with RunLock(run_dir):
                manifest = open_manifest(
                    run_dir, config.to_dict(), self.suites, meta, command, self.backend.execution()
                )
                identity = RunIdentity(manifest.run_id, meta.identity, manifest.suite_fingerprints())
                store = EpisodeStore(run_dir, identity)
                session = manifest.sessions[-1]
                try:
                    # "interrupted" until it ends: a driver killed outright leaves the right status behind
                    session.status = "interrupted"
                    write_manifest(run_dir, manifest)
                    if hooks.balanced:
                        plan = balanced_order(plan, manifest.suite_fingerprints())
                    finished = store.finished()
                    # a run that stopped by decision stays stopped: more episodes would void its stopping rule
                    todo = [] if manifest.stop else [spec for spec in plan if spec not in finished]
                    if progress and manifest.stop:
                        print(stopped_note(manifest.stop, run_dir, len(finished & set(plan)), len(plan)))
                    elif progress:
                        self._print_unavailable(config)
                        print(describe_plan(self.suites, plan, todo, config.workers, meta.name, str(run_dir)))
                    ledger = EpisodeLedger(
                        config,
                        self.suites,
                        store,
                        run_dir,
                        todo,
                        plan,
                        progress=progress,
                        stop_when=hooks.stop_when,
                        status=hooks.status,
                    )
                    tally = ledger.tally
                    tally.decided = manifest.stop is not None
                    try:
                        self.backend.run(ledger)
                        session.status = session_status(tally)
                    except IncompleteRunError as exc:  # e.g. the Ray cluster was lost: what was stored stays
                        session.status = f"failed: {exc}"
                        tally.stopped = str(exc)
                    except EvalkitError as exc:
                        session.status = f"failed: {exc}"
                        raise
                    finally:
                        session.ended_at, session.episodes_run = now(), tally.done
                        manifest.stop = tally.decision or manifest.stop
                        write_manifest(run_dir, manifest)
                    return RunOutcome.read(run_dir, store, plan, tally.stopped, tally.decided)
                finally:
                    store.close()
                    tidy_run_dir(run_dir)
        except BaseException:
            if created and (tally is None or tally.done == 0):  # a failed start leaves nothing behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


def run_evaluation(
    config: EvalConfig,
    progress: bool = True,
    command: list[str] | None = None,
    *,
    policy: Policy | None = None,
    episodes: Sequence[EpisodeSpec] | None = None,
    stop_when: StopHook | None = None,
    status: Callable[[], str] | None = None,
) -> RunOutcome:
    """One evaluation, with its own session; `policy`: a ready-made policy to evaluate instead of building
    `config.policy` (not closed here); `stop_when`, `status`: as `EvalSession.evaluate`. Ctrl-C or SIGTERM prints "stopping…" at once, stops the workers and keeps
    what finished (the session is marked interrupted); a second one exits at once."""
    session: EvalSession | None = None
    with stop_on_signals(lambda: session.kill_now() if session is not None else None):
        session = EvalSession(config)
        try:
            outcome = session.evaluate(
                policy,
                episodes=episodes,
                stop_when=stop_when,
                progress=progress,
                command=command,
                status=status,
            )
        except BaseException:
            session.close(graceful=False)  # e.g. Ctrl-C: no waiting on a replica in the middle of a batch
            raise
        session.close()
    return outcome


def evaluate(
    config: EvalConfig, progress: bool = True, command: list[str] | None = None, **kwargs: Any
) -> Path:
    """Run (or resume) an evaluation; returns the run directory (`run_evaluation` returns the whole outcome).
    Raises EvalkitError on bad input, IncompleteRunError when a fault stopped the run (the policy is gone, the
    Ray cluster was lost; what was stored stays). Episodes in error after their retries are in the store."""
    outcome = run_evaluation(config, progress, command, **kwargs)
    if outcome.stopped and not outcome.decided:
        raise IncompleteRunError(outcome.last_line() or outcome.stopped)
    return outcome.run_dir
