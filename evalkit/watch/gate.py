"""The gate of `evalkit watch --against BASELINE`: each checkpoint's run judged against a baseline run with the
paired regression test of `evalkit regress` (`evalkit.report.regress.compare_runs`, the same verdicts and exit
codes).

Today every checkpoint runs its whole protocol and is judged with the fixed-N test (exact McNemar, Newcombe's
paired interval). The seam for the sequential gate (`eval --against --stop-when-decided`) is `Gate.stop_rule`:
once it returns a stop hook, `evalkit watch` passes it to `EvalSession.evaluate(stop_when=...)` (with the gate's
episode order), and `judge` needs no change: `compare_runs` judges a run that stopped by decision with the
anytime-valid test its stop record names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.core.errors import EvalkitError
from evalkit.core.protocol import SuiteSpec
from evalkit.report.regress import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION, compare_runs, verdict_line
from evalkit.rundir.manifest import SuiteRecord, package_versions
from evalkit.rundir.run import Run, load_run
from evalkit.runner.ledger import StopHook

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

    @classmethod
    def open(cls, baseline_dir: Path, settings: dict[str, Any], suites: list[SuiteSpec]) -> Gate:
        """The baseline run, checked before anything runs: it must have measured these suites under the same
        protocols, and the settings must be usable (one line otherwise)."""
        gate = cls(load_run(baseline_dir), **settings)
        if not 0 < gate.alpha < 0.5 or not 0 <= gate.max_drop < 100 or gate.min_episodes < 1:
            raise EvalkitError(
                "the gate needs --alpha in (0, 0.5), --max-drop in [0, 100) and --min-episodes >= 1"
            )
        versions = package_versions()
        theirs = gate.baseline.suite_fingerprints()
        for suite in suites:
            ours = SuiteRecord.of(suite, versions).protocol_fingerprint
            if suite.name not in theirs:
                raise EvalkitError(f"baseline {baseline_dir} has no {suite.name} episodes to gate against")
            if theirs[suite.name] != ours:
                raise EvalkitError(
                    f"baseline {baseline_dir} ran {suite.name} under protocol {theirs[suite.name]}, this watch "
                    f"runs {ours} (check --protocol, --max-steps, --seed and the simulator versions)"
                )
        return gate

    def stop_rule(self) -> StopHook | None:
        """The seam for the sequential gate: a hook that ends a checkpoint's evaluation once its verdict is decided.
        None: every checkpoint runs its whole protocol and is judged with the fixed-N test."""
        return None

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
