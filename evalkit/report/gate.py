"""`evalkit eval --against RUN_DIR`: the sequential regression gate, read while the candidate runs.

The candidate is paired episode by episode with a finished baseline run of the same protocol (same suites, same
protocol fingerprints), and the anytime-valid paired test (`evalkit.report.sequential`) is fed as it goes: one test
per row, each suite at alpha / the number of suites (Bonferroni) and "overall" at alpha, as `evalkit regress` judges
them. The progress line shows the current verdict and interval; with `--stop-when-decided` the run ends as soon as
the verdict is decided, and the manifest records the stop (`StopRecord`), which `evalkit regress` then judges with the
same test on the same pairs, so it gives the same verdict and exit code.

What is fed: the longest prefix of the run's planned episode order (`evalkit.core.protocol.balanced_order`) whose
candidate episodes have all finished with an outcome. Episodes finish out of order across workers (and a success
ends an episode early, so the finishing order depends on outcomes); a finished episode waits until every episode
planned before it has finished. An episode stored as an error holds the prefix until a resume retries it: errors are
never skipped, so the pairs fed never depend on which episodes errored.

When it is decided: a fail (a significant drop) in any row, since a fail is never reversed and the exit code is then
1 whatever the other rows do; or a pass in every row. A pass may turn into a fail later (both can hold for a drop
smaller than the margin), so the gate does not stop on a pass while another row is open.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.core.episode import EpisodeResult, EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.report.config import GateConfig
from evalkit.report.leaderboard import flat_protocol, protocol_diff
from evalkit.report.outcomes import PROGRESS_SCORE, progress_score, with_progress_scores
from evalkit.report.sequential import TEST_NAMES, SequentialPairedTest, SequentialState, Verdict
from evalkit.rundir.manifest import StopRecord, SuiteRecord, now, read_manifest
from evalkit.rundir.run import IDENTITY, Run, is_run_dir, load_run


@dataclass
class GateRow:
    # a suite name, "overall", or "overall (<suite>)" for a run of one suite
    scope: str
    # the suite it tests; None: every suite
    suite: str | None
    alpha: float
    test: SequentialPairedTest

    @property
    def state(self) -> SequentialState:
        return self.test.state


@dataclass
class SequentialGate:
    """The gate of one candidate run: the baseline's outcomes, the planned order, one test per row."""

    options: GateConfig
    baseline: Run
    plan: list[EpisodeSpec]
    # the baseline's value (success or progress score) of every planned episode
    base_values: dict[EpisodeSpec, float]
    rows: list[GateRow]
    # the candidate's finished episodes: their value, or None for an error (which holds the prefix)
    candidate: dict[EpisodeSpec, float | None] = field(default_factory=dict)
    # pairs fed so far: the planned episodes before this index
    fed: int = 0

    # -- building it -------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, options: GateConfig, plan: list[EpisodeSpec], records: dict[str, SuiteRecord], run_dir: Path
    ) -> SequentialGate:
        """Load and check the baseline against this run's plan and suite records, and feed what `run_dir`
        already holds (a resumed run). Raises EvalkitError, before anything is written, on bad input."""
        assert options.against is not None
        if not 0 < options.alpha < 0.5 or not 0 <= options.max_drop < 100:
            raise EvalkitError(
                f"--alpha must be in (0, 0.5) and --max-drop in [0, 100) percentage points, got "
                f"{options.alpha} and {options.max_drop}"
            )
        baseline = load_run(options.against)
        check_baseline(baseline, records, plan, run_dir)
        values = outcome_values(baseline, options.outcome, plan)
        gate = cls(options, baseline, plan, values, make_rows(plan, options))
        for spec, value in stored_values(run_dir, options.outcome).items():
            gate.record(spec, value)
        return gate

    # -- while the run goes ------------------------------------------------------------------------------------
    def observe(self, result: EpisodeResult) -> StopRecord | bool:
        """The runner's stop hook: feed what the result completes; a StopRecord ends the run once decided (with
        --stop-when-decided)."""
        failed = result.termination == "error"
        value = None if failed else episode_value(result, self.options.outcome)
        self.record(result.spec, value)
        ended = self.verdict != "undecided" or self.fed == len(self.plan)
        if self.options.stop_when_decided and ended:
            return self.stop_record()
        return False

    def record(self, spec: EpisodeSpec, value: float | None) -> None:
        self.candidate[spec] = value
        while self.fed < len(self.plan) and self.candidate.get(self.plan[self.fed]) is not None:
            spec = self.plan[self.fed]
            for row in self.rows:
                if row.suite in (None, spec.suite):
                    row.test.update(self.base_values[spec], self.candidate[spec])
            self.fed += 1

    @property
    def verdict(self) -> Verdict:
        states = [row.state for row in self.rows]
        if any(s.verdict == "fail" for s in states):
            return "fail"
        return "pass" if all(s.verdict == "pass" for s in states) else "undecided"

    def stop_record(self) -> StopRecord:
        """Where the stopping rule ended the run: decided, or undecided at the end of the plan (so that `evalkit
        regress` judges the run with this test, not with a second look by the fixed-N test)."""
        finished = sum(value is not None for value in self.candidate.values())
        return StopRecord(
            test=TEST_NAMES[self.options.outcome],
            alpha=self.options.alpha,
            margin_pp=self.options.max_drop,
            episodes=finished,
            verdict=self.verdict,
            baseline_run_id=self.baseline.run_id,
            stopped_at=now(),
            pairs=self.fed,
            outcome=self.options.outcome,
        )

    # -- what it shows -----------------------------------------------------------------------------------------
    def status(self) -> str:
        """The progress line's part: verdict, pairs, the overall row's difference and interval."""
        overall = self.rows[-1].state
        if not overall.pairs:
            return "gate: no pairs yet"
        text = f"gate {self.verdict.upper()} after {overall.pairs:,} pairs, {interval_text(overall)}"
        if len(self.rows) > 1:
            decided = sum(row.state.decided for row in self.rows[:-1])
            text += f", suites decided {decided}/{len(self.rows) - 1}"
        return text

    def summary(self, run_dir: Path) -> list[str]:
        """What `evalkit eval` prints when the run ends: the verdict per row and what judges the run."""
        o = self.options
        statistic = (
            "success" if o.outcome == "success" else "progress (mean of each episode's progress flags)"
        )
        lines = [
            f"gate against {self.baseline.path} (run {self.baseline.run_id}): {TEST_NAMES[o.outcome]} on "
            f"{statistic}, alpha {o.alpha:g}, margin {o.max_drop:g} pp: {self.verdict.upper()} after "
            f"{self.fed:,} of {len(self.plan):,} planned pairs"
        ]
        for row in self.rows:
            s = row.state
            at = f", decided at pair {s.decided_at:,}" if s.decided_at else ""
            lines.append(
                f"  {row.scope}: {s.verdict} ({s.pairs:,} pairs, {interval_text(s)}, alpha {row.alpha:.3g}{at})"
            )
        command = f"evalkit regress --baseline {self.baseline.path} --candidate {run_dir}"
        stopped = read_manifest(run_dir)
        if stopped is not None and stopped.stop is not None:
            how = "stopped by decision" if stopped.stop.verdict != "undecided" else "ended undecided"
            lines.append(
                f"{how}; `{command}` judges it with the same test (exit 0 pass, 1 fail, 3 undecided)"
            )
        elif o.outcome == "progress":
            lines.append(f"not stopped; `{command} --outcome progress` judges it with the same test")
        else:
            lines.append(
                f"not stopped by decision; `{command}` judges the run with the fixed-N test once it is complete"
            )
        return lines


def interval_text(state: SequentialState) -> str:
    return (
        f"diff {100 * state.diff:+.1f} pp [{100 * state.low:+.1f}, {100 * state.high:+.1f}]"
        if state.pairs
        else "no pairs"
    )


def make_rows(plan: list[EpisodeSpec], options: GateConfig) -> list[GateRow]:
    """Each suite at alpha / K (Bonferroni) and overall at alpha, named as `evalkit regress` names them."""
    suites = sorted({spec.suite for spec in plan})

    def row(scope: str, suite: str | None, alpha: float) -> GateRow:
        return GateRow(scope, suite, alpha, SequentialPairedTest(alpha, options.max_drop, options.outcome))

    if len(suites) == 1:
        return [row(f"overall ({suites[0]})", None, options.alpha)]
    return [row(s, s, options.alpha / len(suites)) for s in suites] + [row("overall", None, options.alpha)]


# -- checks ----------------------------------------------------------------------------------------------------
def check_baseline(
    baseline: Run, records: dict[str, SuiteRecord], plan: list[EpisodeSpec], run_dir: Path
) -> None:
    """A finished baseline of the same protocol that holds every episode this run plans, with no error rows."""
    where = f"--against {baseline.path}"
    if Path(run_dir).exists() and os.path.samefile(run_dir, baseline.path):
        raise EvalkitError(f"{where}: that is this run's own directory (--out); gate against another run")
    theirs, ours = sorted(baseline.manifest.suites), sorted(records)
    if theirs != ours:
        raise EvalkitError(
            f"{where} is a run of suites {', '.join(theirs)}; this run is of {', '.join(ours)}: the gate pairs runs "
            "of the same suite set"
        )
    for name, record in records.items():
        base = baseline.manifest.suites[name]
        if base.protocol_fingerprint != record.protocol_fingerprint:
            diff = protocol_diff(flat_protocol(base), flat_protocol(record))
            what = "; ".join(f"{k}: {a!r} vs {b!r}" for k, a, b in diff[:4]) or "no field differs"
            raise EvalkitError(
                f"{where} ran {name} under another protocol (fingerprint {base.protocol_fingerprint}, this run "
                f"{record.protocol_fingerprint}: {what})"
            )
    if len(baseline.errors):
        raise EvalkitError(
            f"{where} has {len(baseline.errors)} error episode(s): re-run its command to retry them first"
        )
    done = set(baseline.usable[IDENTITY].itertuples(index=False, name=None))
    # (a baseline that stopped early by decision lacks episodes of its plan too)
    unfinished = [s for s in baseline.manifest.planned_episodes() if astuple(s) not in done]
    if unfinished:
        raise EvalkitError(
            f"{where} is unfinished: {len(unfinished)} of its planned episodes have no outcome (first: "
            f"{unfinished[0].episode_id}); finish it with its own command first"
        )
    lacking = [s for s in plan if astuple(s) not in done]
    if lacking:
        raise EvalkitError(
            f"{where} lacks {len(lacking)} of this run's {len(plan)} planned episodes (first: "
            f"{lacking[0].episode_id}): its --tasks or --episodes-per-task differ"
        )
    stored = read_manifest(run_dir) if is_run_dir(Path(run_dir)) else None
    if stored is not None and sorted(stored.suites) != ours:
        raise EvalkitError(
            f"{run_dir} holds a run of suites {', '.join(sorted(stored.suites))}: the gate needs a run directory of "
            f"{', '.join(ours)} only (choose another --out)"
        )


def astuple(spec: EpisodeSpec) -> tuple:
    return (spec.suite, spec.task_id, spec.init_state, spec.seed)


# -- outcomes --------------------------------------------------------------------------------------------------
def episode_value(result: EpisodeResult, outcome: str) -> float:
    if outcome == "success":
        return float(result.success)
    score = progress_score(result.progress)
    if score is None:
        raise EvalkitError(
            f"--outcome progress: episode {result.spec.episode_id} records no progress flags (its suite has none)"
        )
    return score


def values_of(run: Run, outcome: str, usable_only: bool) -> dict[EpisodeSpec, float | None]:
    """Each stored episode's value (success, or its progress score); None for an error or a missing score."""
    frame = with_progress_scores(run.usable if usable_only else run.episodes)
    column = "success" if outcome == "success" else PROGRESS_SCORE
    rows = frame[[*IDENTITY, "termination", column]].itertuples(index=False, name=None)
    return {
        EpisodeSpec(*key): None if termination == "error" or math.isnan(value) else float(value)
        for *key, termination, value in rows
    }


def outcome_values(run: Run, outcome: str, plan: list[EpisodeSpec]) -> dict[EpisodeSpec, float]:
    """The baseline's value of each planned episode (it holds them all, with an outcome)."""
    values = values_of(run, outcome, usable_only=True)
    missing = [s for s in plan if values[s] is None]
    if missing:
        raise EvalkitError(
            f"--outcome progress: {run.path} records no progress flags for {len(missing)} planned episode(s) (first: "
            f"{missing[0].episode_id}); its suite has no partial progress, so the gate can only use success"
        )
    return {s: float(values[s]) for s in plan}


def stored_values(run_dir: Path, outcome: str) -> dict[EpisodeSpec, float | None]:
    """What a resumed run directory already holds (nothing for a new one)."""
    return values_of(load_run(run_dir), outcome, usable_only=False) if is_run_dir(Path(run_dir)) else {}
