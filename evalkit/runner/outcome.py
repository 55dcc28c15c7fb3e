"""What a finished `evalkit eval` leaves behind, read from its store, and the exit code that says so.

Exit codes of `evalkit eval` (a script can trust them):

    0    every episode of the plan has an outcome (success or failure), or the stop hook decided early
    2    usage error or refusal: bad flags or input, an incompatible policy, a run directory in use, actions that
         break the contract (nothing of that kind is recorded)
    4    the run is incomplete: episodes remain in error after their retries, or were not run because the run
         stopped (the policy is gone, the Ray cluster was lost); the last line says how many and the first error.
         Finished episodes are kept: the same command resumes and re-runs only what is missing or in error
    130  interrupted by Ctrl-C (SIGINT); 143: stopped by SIGTERM. Both keep what finished and resume
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.rundir.store import EpisodeStore
from evalkit.runner.plan import plural

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INCOMPLETE = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class IncompleteRunError(EvalkitError):
    """The run could not go on (e.g. the Ray cluster was lost); what was stored stays, a re-run resumes. Exit 4."""


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    planned: int
    # episodes of the plan with an outcome (success or failure)
    finished: int
    # episodes of the plan whose stored row is an error
    errors: int
    first_error: str | None
    # why the run ended before its plan did (the stop hook's decision, a lost policy), if it did
    stopped: str | None = None
    decided: bool = False

    @classmethod
    def read(
        cls,
        run_dir: Path,
        store: EpisodeStore,
        plan: Sequence[EpisodeSpec],
        stopped: str | None,
        decided: bool,
    ) -> RunOutcome:
        planned = set(plan)
        rows = [
            r
            for r in store.rows()
            if EpisodeSpec(r["suite"], r["task_id"], r["init_state"], r["seed"]) in planned
        ]
        errors = [r for r in rows if r["termination"] == "error"]
        first = min(errors, key=lambda r: r["finished_at"])["error"] if errors else None
        return cls(run_dir, len(planned), len(rows) - len(errors), len(errors), first, stopped, decided)

    @property
    def not_run(self) -> int:
        return self.planned - self.finished - self.errors

    @property
    def exit_code(self) -> int:
        if self.errors or (self.not_run and not self.decided):
            return EXIT_INCOMPLETE
        return EXIT_OK

    def last_line(self) -> str | None:
        """What an incomplete run says last: how many episodes are in error, the first error, what to do."""
        if self.exit_code == EXIT_OK:
            return None
        parts = []
        if self.errors:
            parts.append(f"{plural(self.errors, 'episode')} in error (first: {self.first_error})")
        if self.not_run:
            parts.append(f"{plural(self.not_run, 'episode')} not run")
        why = f"stopped: {self.stopped}; " if self.stopped and not self.errors else ""
        return (
            f"evalkit: incomplete: {why}{', '.join(parts)} of {self.planned:,}; "
            f"re-run the same command to retry them (exit {EXIT_INCOMPLETE})"
        )
