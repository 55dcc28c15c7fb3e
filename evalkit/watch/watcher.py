"""The watch loop: look at the training directory, evaluate each new complete checkpoint once (in step order, one
`EvalSession`: env workers stay up, only the policy is swapped), re-evaluate the selected checkpoint on held-out
episodes when nothing else is waiting, keep `watch.json` and the report current, and sleep until the next look.

Every change of state is saved before the work it describes starts, so a watch killed at any point resumes: a
checkpoint marked running is evaluated again into its own run directory, which resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyOptions
from evalkit.report.stats import wilson
from evalkit.rundir.manifest import now
from evalkit.rundir.run import load_run
from evalkit.runner.evaluate import EvalSession
from evalkit.runner.outcome import RunOutcome
from evalkit.trackers.record import Scalar
from evalkit.watch.complete import Completeness
from evalkit.watch.config import WatchConfig
from evalkit.watch.discover import Checkpoint, discover
from evalkit.watch.gate import Gate
from evalkit.watch.heldout import heldout_episodes
from evalkit.watch.state import CheckpointRecord, HeldoutRecord, Status, WatchState, one_line, save_state
from evalkit.watch.tracking import WatchTrackers


def say(text: str) -> None:
    print(f"evalkit watch: {text}", flush=True)


def rate_text(successes: int, episodes: int) -> str:
    r = wilson(successes, episodes)
    return f"{successes}/{episodes} ({100 * r.rate:.1f}%, Wilson 95% [{100 * r.low:.1f}, {100 * r.high:.1f}])"


def checkpoint_to_load(checkpoint: Checkpoint, watch_dir: Path, options: PolicyOptions) -> Path:
    """The directory the pi0.5 loader takes for `checkpoint`. An openpi JAX checkpoint (orbax `params/`) is converted
    once into `<watch dir>/converted/step_<step>` (needs the `orbax` extra, and --config); a conversion that fails
    raises its one-line reason (e.g. how to install the extra) and the checkpoint is recorded as failed."""
    if checkpoint.layout != "openpi_jax":
        return checkpoint.path
    converted = Path(watch_dir) / "converted" / checkpoint.name
    if (converted / "config.json").is_file():
        return converted
    from evalkit.models.pi05.checkpoint import convert_checkpoint

    partial = converted.with_name(f"{converted.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        convert_checkpoint(
            checkpoint.path,
            partial,
            config_name=options.config,
            norm_stats=options.norm_stats,
            tokenizer=options.tokenizer,
        )
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(converted)
    return converted


@dataclass
class WatchSetup:
    """What `evalkit watch` resolved from its flags, before anything runs."""

    config: WatchConfig
    # the pi0.5 loading options; `checkpoint` is set per checkpoint
    policy: PolicyOptions
    gate: Gate | None
    trackers: WatchTrackers
    progress: bool = True


class Watcher:
    def __init__(self, setup: WatchSetup, session: EvalSession, state: WatchState, watch_dir: Path):
        self.setup = setup
        self.config = setup.config
        self.session = session
        self.state = state
        self.watch_dir = Path(watch_dir)
        self.completeness = Completeness(self.config.settle_s)
        # tried in this process (a failure is not retried until the next start)
        self.attempted: set[str] = set()
        self.heldout_attempted: set[int] = set()
        self.skipped: set[int] = set()
        self.report_due = True

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Until Ctrl-C (KeyboardInterrupt), or with --once until every complete checkpoint is evaluated and none
        is still settling."""
        self.log_unlogged()
        while True:
            complete, settling = self.look()
            todo = [c for c in self.state.todo(complete, self.config.retry_failed) if self.wanted(c)]
            if todo:
                self.evaluate(todo[0])
                continue
            best = self.heldout_due()
            if best is not None:
                self.evaluate_heldout(best)
                continue
            self.write_report()
            if self.config.once and not settling:
                return
            time.sleep(min(self.config.poll_s, self.config.settle_s) if settling else self.config.poll_s)

    def look(self) -> tuple[list[Checkpoint], bool]:
        """The complete checkpoints under the root, and whether one is still settling (whole, not yet unchanged for
        --settle seconds). What is not taken yet, and why, is saved in watch.json and said once."""
        complete, waiting, settling = [], {}, False
        for checkpoint in discover(self.config.ckpt_root):
            ok, why = self.completeness.check(checkpoint)
            if ok:
                complete.append(checkpoint)
                continue
            waiting[str(checkpoint.path)] = why
            settling = settling or checkpoint.path in self.completeness.seen
            if str(checkpoint.path) not in self.state.waiting:
                say(f"step {checkpoint.step:,} ({checkpoint.path}) is not complete yet: {why}")
        if waiting != self.state.waiting:
            self.state.waiting = waiting
            self.save()
        return complete, settling

    def wanted(self, checkpoint: Checkpoint) -> bool:
        key = str(checkpoint.path)
        if key in self.attempted:
            return False
        if not self.config.wants(checkpoint.step):
            if checkpoint.step not in self.skipped:
                self.skipped.add(checkpoint.step)
                say(f"step {checkpoint.step:,}: skipped (not a multiple of --every {self.config.every})")
            return False
        return True

    def save(self) -> None:
        save_state(self.watch_dir, self.state)

    # -- one checkpoint --------------------------------------------------------------------------------------
    def evaluate(self, checkpoint: Checkpoint) -> None:
        self.attempted.add(str(checkpoint.path))
        self.report_due = True
        try:
            run_dir = self.state.run_dir(self.watch_dir, checkpoint)
        except EvalkitError as exc:
            # a second checkpoint of an evaluated step (another experiment under the same root)
            self.state.start(checkpoint, None)
            self.fail(checkpoint, exc)
            return
        self.state.start(checkpoint, run_dir)
        self.save()
        say(f"step {checkpoint.step:,}: evaluating {checkpoint.path} ({checkpoint.layout}) -> {run_dir}")
        gate = self.setup.gate
        try:
            outcome = self._evaluate(
                checkpoint, run_dir, stop_when=gate.stop_rule() if gate is not None else None
            )
        except Exception as exc:  # the checkpoint does not load or fit the suite: recorded, the watch goes on
            self.fail(checkpoint, exc)
            return
        counts = self.finish(checkpoint, outcome)
        line = f"step {checkpoint.step:,}: {rate_text(*counts)}"
        if gate is not None:
            line += f"; gate: {gate.judge(run_dir, complete=outcome.exit_code == 0).line}"
        say(line)
        self.log_unlogged()

    def _evaluate(self, checkpoint: Checkpoint, run_dir: Path, **kwargs) -> RunOutcome:
        try:
            path = checkpoint_to_load(checkpoint, self.watch_dir, self.setup.policy)
            options = dataclasses.replace(self.setup.policy, checkpoint=str(path))
            return self.session.evaluate(
                options,
                out=run_dir,
                progress=self.setup.progress,
                training_step=checkpoint.step,
                **kwargs,
            )
        finally:
            self.session.unload()  # the model's memory (GPU) is free while the watch waits

    def finish(self, checkpoint: Checkpoint, outcome: RunOutcome) -> tuple[int, int]:
        """Record the evaluation's result; returns (successes, episodes with an outcome)."""
        usable = load_run(outcome.run_dir).usable
        counts = (int(usable["success"].sum()), len(usable))
        status: Status = "done" if outcome.exit_code == 0 else "incomplete"
        self.state.finish(checkpoint, outcome.last_line(), counts=counts, status=status)
        self.save()
        try:
            from evalkit.report.report import write_report

            write_report(outcome.run_dir)
        except EvalkitError as exc:
            say(f"step {checkpoint.step:,}: no run report: {exc}")
        return counts

    def fail(self, checkpoint: Checkpoint, exc: BaseException) -> None:
        reason = one_line(exc)
        self.state.finish(checkpoint, reason)
        self.save()
        print(f"evalkit watch: step {checkpoint.step:,} failed: {reason}", file=sys.stderr, flush=True)

    # -- trackers --------------------------------------------------------------------------------------------
    def log_unlogged(self) -> None:
        """Log every complete checkpoint not yet logged to each tracker (after a tracker failed, or a restart)."""
        trackers = self.setup.trackers
        names = {t.name for t in trackers.trackers}
        for record in self.state.by_status("done"):
            if not names - set(record.logged):
                continue
            record.logged, errors = trackers.log(
                Path(record.run_dir), record.step, self.tracker_config(), record.logged
            )
            self.save()
            for error in errors:
                say(error)

    def tracker_config(self) -> dict[str, Scalar]:
        return {
            "watch_dir": str(self.watch_dir.resolve()),
            "checkpoint_root": self.state.root,
            "suite": self.state.suite,
        }

    # -- the selected checkpoint -----------------------------------------------------------------------------
    def heldout_due(self) -> CheckpointRecord | None:
        """The selected checkpoint, if it still needs its held-out re-evaluation (tried once per start)."""
        if self.config.heldout_episodes_per_task == 0:
            return None
        best = self.state.selected()
        if best is None or best.step in self.heldout_attempted:
            return None
        record = self.state.heldout.get(str(best.step))
        return None if record is not None and record.status == "done" else best

    def evaluate_heldout(self, best: CheckpointRecord) -> None:
        self.heldout_attempted.add(best.step)
        self.report_due = True
        episodes, words = heldout_episodes(self.session.suites, self.config.heldout_episodes_per_task)
        run_dir = self.watch_dir / "heldout" / Path(best.run_dir).name
        record = HeldoutRecord(best.step, str(run_dir), words)
        self.state.heldout[str(best.step)] = record
        self.save()
        say(
            f"selected step {best.step:,} at {rate_text(best.successes or 0, best.episodes or 0)}; "
            f"re-evaluating it on held-out episodes: {words}"
        )
        checkpoint = Checkpoint(best.step, Path(best.path), best.layout)
        try:
            outcome = self._evaluate(checkpoint, run_dir, episodes=episodes)
        except Exception as exc:  # e.g. the checkpoint was deleted since (training keeps the last few)
            record.status, record.error, record.finished_at = "failed", one_line(exc), now()
            self.save()
            say(f"held-out re-evaluation of step {best.step:,} failed: {record.error}")
            return
        usable = load_run(run_dir).usable
        record.status = "done" if outcome.exit_code == 0 else "incomplete"
        record.error, record.finished_at = outcome.last_line(), now()
        self.save()
        say(
            f"step {best.step:,} on held-out episodes: {rate_text(int(usable['success'].sum()), len(usable))}"
        )

    # -- the report ------------------------------------------------------------------------------------------
    def write_report(self, force: bool = False) -> str | None:
        """The watch report (when something changed since the last one); returns its file:// link."""
        if not (self.report_due or force) or not self.state.checkpoints:
            return None
        from evalkit.watch.report import write_watch_report

        link = write_watch_report(self.watch_dir, self.state, self.setup.gate)
        if self.report_due:
            say(f"report: {link}")
        self.report_due = False
        return link
