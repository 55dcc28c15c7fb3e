"""The gate of `evalkit watch --against BASELINE`: each checkpoint's run judged against a baseline run with the
paired regression test of `evalkit regress` (`evalkit.report.regress.compare_runs`, the same verdicts and exit
codes).

With `--stop-when-decided`, the anytime-valid paired test of `eval --against` (`evalkit.report.gate.SequentialGate`)
is fed as a checkpoint's episodes finish (its verdict in the progress line), ends the evaluation once decided, and
the run's manifest records the stop; `judge` then gives the verdict of the test that stop record names, as `evalkit
regress` does. Without it every checkpoint runs its whole protocol and is judged with the fixed-N test (exact
McNemar, Newcombe's paired interval) on the baseline episodes it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.core.episode import EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import SuiteSpec, balanced_order, episodes_for
from evalkit.report.config import GateConfig
from evalkit.report.gate import SequentialGate, check_baseline
from evalkit.report.leaderboard import flat_protocol, protocol_diff
from evalkit.report.regress import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION, compare_runs, verdict_line
from evalkit.rundir.manifest import SuiteRecord, suite_records
from evalkit.rundir.run import Run, load_run

VERDICTS = {EXIT_OK: "PASS", EXIT_REGRESSION: "FAIL", EXIT_INCONCLUSIVE: "INCONCLUSIVE"}


@dataclass(frozen=True)
class GateVerdict:
    # PASS, FAIL or INCONCLUSIVE (evalkit regress's exit code 0, 1, 3), or NOT JUDGED (regress refused)
    verdict: str
    # regress's one-line verdict, with both rates and the coverage
    line: str


@dataclass(frozen=True)
class Gate:
    baseline: Run
    # `evalkit regress`'s settings (their flags and defaults: `RegressConfig`)
    alpha: float
    max_drop: float
    min_episodes: int
    # end each checkpoint's evaluation once the sequential gate has decided (--stop-when-decided)
    stop_when_decided: bool = False

    @classmethod
    def open(cls, baseline_dir: Path, settings: dict[str, Any], suites: list[SuiteSpec]) -> Gate:
        """The baseline run, checked before anything runs (one line otherwise): a finished run of these suites
        under the same protocols that holds every episode a checkpoint will run, with no error rows; and usable
        settings."""
        gate = cls(load_run(baseline_dir), **settings)
        if not 0 < gate.alpha < 0.5 or not 0 <= gate.max_drop < 100 or gate.min_episodes < 1:
            raise EvalkitError(
                "the gate needs --alpha in (0, 0.5), --max-drop in [0, 100) and --min-episodes >= 1"
            )
        records, plan = plan_of(suites)
        if gate.stop_when_decided:  # the sequential gate pairs every planned episode
            check_baseline(gate.baseline, records, plan, run_dir=None)
            return gate
        theirs = gate.baseline.suite_fingerprints()
        for name, record in records.items():
            if name not in theirs:
                raise EvalkitError(f"baseline {baseline_dir} has no {name} episodes to gate against")
            if theirs[name] != record.protocol_fingerprint:
                diff = protocol_diff(
                    flat_protocol(gate.baseline.manifest.suites[name]), flat_protocol(record)
                )
                what = "; ".join(f"{k}: {a!r} vs {b!r}" for k, a, b in diff[:4]) or "no field differs"
                raise EvalkitError(
                    f"baseline {baseline_dir} ran {name} under another protocol ({what}; check --protocol, "
                    "--max-steps, --seed and the simulator versions)"
                )
        return gate

    def hooks(self, suites: list[SuiteSpec], run_dir: Path) -> dict[str, Any]:
        """`EvalSession.evaluate`'s stop hook and status for one checkpoint's run with --stop-when-decided: the
        sequential gate fed as its episodes finish, in the balanced order the run dispatches them in."""
        if not self.stop_when_decided:
            return {}
        records, plan = plan_of(suites)
        options = GateConfig(
            against=self.baseline.path,
            stop_when_decided=self.stop_when_decided,
            alpha=self.alpha,
            max_drop=self.max_drop,
        )
        gate = SequentialGate.open(options, plan, records, run_dir)
        return {"stop_when": gate.observe, "status": gate.status}

    def judge(self, run_dir: Path, complete: bool) -> GateVerdict:
        """The verdict on one checkpoint's run. A `complete` run (every episode of the watch's plan has an outcome)
        is judged on the baseline episodes it has, as `regress --allow-partial` does: a watch may run fewer episodes
        than the baseline on purpose. An incomplete one (error episodes) never passes."""
        try:
            result = compare_runs(
                self.baseline,
                load_run(run_dir),
                self.alpha,
                self.max_drop,
                self.min_episodes,
                allow_partial=complete,
            )
        except EvalkitError as exc:  # e.g. no suite in common: said in the report, the watch goes on
            return GateVerdict("NOT JUDGED", f"not judged: {exc}")
        return GateVerdict(VERDICTS[result.exit_code], verdict_line(result))


def plan_of(suites: list[SuiteSpec]) -> tuple[dict[str, SuiteRecord], list[EpisodeSpec]]:
    """The suites' records and the episodes a checkpoint's run dispatches, in that order."""
    records = suite_records(suites)
    return records, balanced_order(
        episodes_for(suites), {n: r.protocol_fingerprint for n, r in records.items()}
    )
