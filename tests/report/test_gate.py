"""`evalkit eval --against RUN_DIR [--stop-when-decided]` (issue 18): the gate fed in the planned order as episodes
finish out of order, the stop it records, `evalkit regress` agreeing with it, bad input refused before anything is
written; and real droid_demo runs (marked slow): a zero candidate stopped early against an oracle baseline, an
unchanged candidate with a margin too tight to decide running to the end, a resume that runs nothing more."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.core.episode import EpisodeResult
from evalkit.report.config import GateConfig
from evalkit.report.gate import SequentialGate
from evalkit.report.regress import EXIT_OK, EXIT_REGRESSION, compare_runs
from evalkit.rundir.manifest import read_manifest, write_manifest
from evalkit.rundir.run import load_run
from tests.helpers import read_rows
from tests.report.runs import grid, write_run

EPISODES = 20
SMALL = {"episodes_per_task": EPISODES}


def suite_keys(*suites: str) -> list[tuple[str, int, int, int]]:
    return [key for suite in suites for key in grid(suite, 10, EPISODES)]


def simulate_run(gate: SequentialGate, outcome_of, workers: int = 4, seed: int = 0) -> dict:
    """Dispatch the plan in order to `workers` slots and finish them in a random order (as real workers do: a
    success ends an episode early), feeding each result to the gate until it stops the run. Returns what was
    stored (episodes in flight at the stop are dropped, as the runner drops them) and the stop record."""
    rng = random.Random(seed)
    todo, in_flight, stored = list(gate.plan), [], {}
    while todo or in_flight:
        while todo and len(in_flight) < workers:
            in_flight.append(todo.pop(0))
        # the newest episode in flight often finishes first (e.g. an early success), so episodes finish out of order
        spec = in_flight.pop(-1 if rng.random() < 0.6 else rng.randrange(len(in_flight)))
        success = outcome_of(spec)
        stored[spec] = success
        result = EpisodeResult(spec, "task", success, 10, "success" if success else "max_steps", 1.0)
        decision = gate.observe(result)
        if decision:
            return {"stored": stored, "stop": decision}
    return {"stored": stored, "stop": None}


def gated_candidate(tmp_path: Path, suites: tuple[str, ...], base_fails, cand_fails, **options) -> dict:
    """A baseline run, a candidate run simulated under the gate, written as the runner writes a stopped run."""
    changes = {suite: SMALL for suite in suites}
    keys = suite_keys(*suites)
    base = write_run(
        tmp_path / "base",
        {k: not base_fails(k) for k in keys},
        policy="oracle",
        policy_fp="base",
        protocol_changes=changes,
    )
    baseline = load_run(base)
    config = GateConfig(against=base, stop_when_decided=True, **options)
    gate = SequentialGate.open(
        config, baseline.manifest.planned_episodes(), baseline.manifest.suites, tmp_path / "cand"
    )
    ran = simulate_run(
        gate, lambda spec: not cand_fails((spec.suite, spec.task_id, spec.init_state, spec.seed))
    )
    stored = {(s.suite, s.task_id, s.init_state, s.seed): v for s, v in ran["stored"].items()}
    cand = write_run(tmp_path / "cand", stored, policy="zero", policy_fp="cand", protocol_changes=changes)
    if ran["stop"]:
        manifest = read_manifest(cand)
        manifest.stop = ran["stop"]
        write_manifest(cand, manifest)
    return {"gate": gate, "base": base, "cand": cand, **ran}


def assert_regress_agrees(ran: dict) -> None:
    gate, stop = ran["gate"], ran["stop"]
    result = compare_runs(load_run(ran["base"]), load_run(ran["cand"]))
    assert result.exit_code == {"pass": EXIT_OK, "fail": EXIT_REGRESSION, "undecided": 3}[stop.verdict]
    decisions = {"fail": "regression", "undecided": "inconclusive"}
    assert [r.scope for r in result.rows] == [row.scope for row in gate.rows]
    for regress_row, gate_row in zip(result.rows, gate.rows, strict=True):
        state = gate_row.state
        assert regress_row.pairs == state.pairs and regress_row.alpha == gate_row.alpha
        if regress_row.pairs:
            expected = decisions.get(state.verdict, ("no regression", "improvement"))
            assert regress_row.decision in expected, (regress_row.scope, regress_row.decision, state.verdict)
            assert (regress_row.comparison.diff_low, regress_row.comparison.diff_high) == (
                state.low,
                state.high,
            )
    assert not any("differs from the run's recorded" in w for w in result.warnings)


def test_a_broken_candidate_stops_on_a_fail_and_regress_agrees_on_the_fed_prefix(tmp_path):
    ran = gated_candidate(tmp_path, ("libero_spatial",), lambda k: k[2] == 3, lambda k: k[2] % 2 == 0)
    stop = ran["stop"]
    assert stop is not None and stop.verdict == "fail" and stop.test == "wsr-betting"
    assert (stop.alpha, stop.margin_pp, stop.outcome) == (0.05, 5.0, "success")
    assert stop.pairs == ran["gate"].fed < 10 * EPISODES
    # episodes finished out of order: some were stored beyond the fed prefix, and regress leaves them out
    assert len(ran["stored"]) > stop.pairs == stop.episodes - (len(ran["stored"]) - stop.pairs)
    assert_regress_agrees(ran)
    result = compare_runs(load_run(ran["base"]), load_run(ran["cand"]))
    assert any("finished beyond the fed prefix" in w for w in result.warnings)


def test_an_unchanged_candidate_stops_on_a_pass_in_every_row_of_two_suites(tmp_path):
    suites = ("libero_object", "libero_spatial")
    ran = gated_candidate(tmp_path, suites, lambda k: False, lambda k: False, max_drop=10.0)
    stop = ran["stop"]
    assert stop is not None and stop.verdict == "pass" and stop.margin_pp == 10.0
    gate = ran["gate"]
    assert [row.scope for row in gate.rows] == ["libero_object", "libero_spatial", "overall"]
    assert [row.alpha for row in gate.rows] == [0.025, 0.025, 0.05]  # Bonferroni over the suite rows
    assert all(row.state.verdict == "pass" for row in gate.rows)
    assert_regress_agrees(ran)


def test_a_drop_in_one_suite_of_two_stops_the_run_at_once_and_fails(tmp_path):
    suites = ("libero_object", "libero_spatial")
    ran = gated_candidate(
        tmp_path, suites, lambda k: False, lambda k: k[0] == "libero_object" and k[2] % 3 != 1
    )
    assert ran["stop"].verdict == "fail"
    states = {row.scope: row.state.verdict for row in ran["gate"].rows}
    # it stops on the first fail, without waiting for the unchanged suite's row to be decided
    assert "fail" in (states["libero_object"], states["overall"]) and states["libero_spatial"] == "undecided"
    assert_regress_agrees(ran)


def test_a_run_that_ends_undecided_records_it_and_regress_keeps_to_the_sequential_test(tmp_path):
    """A candidate 3 points worse with a 5-point margin over 200 pairs: neither question is answered. The fixed-N
    test on all pairs would be a second look, so the run records its undecided end and regress judges it so."""
    ran = gated_candidate(
        tmp_path, ("libero_spatial",), lambda k: False, lambda k: k[2] in (3, 17) and k[1] < 3
    )
    stop = ran["stop"]
    assert stop is not None and stop.verdict == "undecided" and stop.pairs == len(ran["stored"]) == 200
    assert_regress_agrees(ran)
    last = compare_runs(load_run(ran["base"]), load_run(ran["cand"])).rows[-1]
    assert last.comparison.test == "sequential (betting)" and last.decision == "inconclusive"


def test_an_error_holds_the_prefix_until_it_is_retried(tmp_path):
    keys = suite_keys("libero_spatial")
    base = write_run(tmp_path / "base", dict.fromkeys(keys, True), protocol_changes={"libero_spatial": SMALL})
    baseline = load_run(base)
    plan = baseline.manifest.planned_episodes()
    gate = SequentialGate.open(GateConfig(against=base), plan, baseline.manifest.suites, tmp_path / "cand")
    gate.observe(EpisodeResult(plan[0], "t", False, 3, "error", 1.0, error="boom"))
    for spec in plan[1:5]:
        gate.observe(EpisodeResult(spec, "t", True, 3, "success", 1.0))
    assert gate.fed == 0 and gate.status() == "gate: no pairs yet"
    gate.observe(EpisodeResult(plan[0], "t", True, 3, "success", 1.0))  # the retry
    assert gate.fed == 5 and gate.status().startswith("gate UNDECIDED after 5 pairs, diff +0.0 pp [")


def test_progress_is_a_second_statistic_the_gate_can_stop_on(tmp_path):
    """Partial credit separates a near miss from doing nothing: here both runs mostly fail, the baseline reaching
    most stages, the candidate none. Success cannot tell them apart quickly; progress can."""
    keys = [("droid_demo", t, k, 7) for t in range(4) for k in range(10)]
    stages = ("reached", "grasped", "lifted", "success")
    near = dict.fromkeys(stages[:3], True) | {"success": False}
    none = dict.fromkeys(stages, False)
    changes = {"droid_demo": {"episodes_per_task": 10}}
    base = write_run(
        tmp_path / "base", dict.fromkeys(keys, False), progress=near, policy_fp="b", protocol_changes=changes
    )
    baseline = load_run(base)
    plan = baseline.manifest.planned_episodes()
    views = {}
    for outcome in ("success", "progress"):
        config = GateConfig(against=base, stop_when_decided=True, outcome=outcome)
        gate = SequentialGate.open(config, plan, baseline.manifest.suites, tmp_path / f"c-{outcome}")
        decisions = [
            gate.observe(EpisodeResult(s, "t", False, 9, "max_steps", 1.0, progress=none)) for s in plan
        ]
        views[outcome] = (gate.verdict, next((d for d in decisions if d), None))
    verdict, stop = views["success"]  # success cannot decide: the run ends with its plan, undecided
    assert verdict == "undecided" and stop.verdict == "undecided" and stop.pairs == 40
    verdict, stop = views["progress"]
    assert verdict == "fail" and stop.outcome == "progress" and stop.test == "wsr-betting-progress"


# --- bad input: one line, exit 2, nothing written -------------------------------------------------------------


def droid_baseline(tmp_path: Path, name: str = "base", drop: int = 0, **kwargs) -> Path:
    keys = [("droid_demo", t, k, 7) for t in range(4) for k in range(2)]
    outcomes = {key: True for key in keys[: len(keys) - drop]}
    return write_run(tmp_path / name, outcomes, policy="oracle", policy_fp="none", checkpoint=None, **kwargs)


def refused(capsys, tmp_path: Path, *argv: str) -> str:
    out = tmp_path / "candidate"
    code = main(["eval", "--suite", "droid_demo", "--policy", "zero", "--out", str(out), "--quiet", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("evalkit: error: "), (code, err)
    assert not out.exists()
    return err[0]


def test_against_refuses_bad_baselines_before_anything_is_written(tmp_path, capsys):
    assert "does not exist" in refused(capsys, tmp_path, "--against", str(tmp_path / "nowhere"))
    other_protocol = droid_baseline(tmp_path, "steps", protocol_changes={"droid_demo": {"max_steps": 300}})
    line = refused(capsys, tmp_path, "--against", str(other_protocol))
    assert "ran droid_demo under another protocol" in line and "max_steps: 300 vs 400" in line
    libero = write_run(tmp_path / "libero", {("libero_spatial", 0, 0, 7): True})
    assert "the gate pairs runs of the same suite set" in refused(capsys, tmp_path, "--against", str(libero))
    unfinished = droid_baseline(tmp_path, "unfinished", drop=1)
    assert "is unfinished: 1 of its planned episodes" in refused(
        capsys, tmp_path, "--against", str(unfinished)
    )
    errors = write_run(
        tmp_path / "errors",
        {("droid_demo", t, k, 7): "error" if (t, k) == (2, 1) else True for t in range(4) for k in range(2)},
    )
    assert "has 1 error episode(s)" in refused(capsys, tmp_path, "--against", str(errors))
    corrupt = droid_baseline(tmp_path, "corrupt")
    db = sqlite3.connect(corrupt / "episodes.sqlite")
    db.execute("UPDATE episodes SET steps = 'many' WHERE task_id = 1")
    db.commit()
    db.close()
    assert "corrupt episode store" in refused(capsys, tmp_path, "--against", str(corrupt))


def test_against_refuses_a_plan_the_baseline_cannot_pair_and_flags_without_against(tmp_path, capsys):
    base = droid_baseline(tmp_path)
    line = refused(capsys, tmp_path, "--against", str(base), "--episodes-per-task", "3")
    assert "lacks 4 of this run's 12 planned episodes" in line
    assert "no progress flags" in refused(capsys, tmp_path, "--against", str(base), "--outcome", "progress")
    line = refused(capsys, tmp_path, "--stop-when-decided", "--max-drop", "2")
    assert "--stop-when-decided, --max-drop need --against RUN_DIR" in line
    assert "--alpha must be in (0, 0.5)" in refused(
        capsys, tmp_path, "--against", str(base), "--alpha", "0.7"
    )
    code = main(
        ["eval", "--suite", "droid_demo", "--policy", "zero", "--out", str(base), "--against", str(base)]
    )
    assert code == 2 and "this run's own directory" in capsys.readouterr().err


# --- real droid_demo runs -------------------------------------------------------------------------------------
PER_TASK = "6"


@pytest.fixture(scope="module")
def oracle_baseline(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gate") / "oracle"
    args = ["--suite", "droid_demo", "--policy", "oracle", "--episodes-per-task", PER_TASK, "--workers", "2"]
    assert main(["eval", *args, "--out", str(out), "--quiet"]) == 0
    return out


def gated_eval(out: Path, baseline: Path, policy: str, *extra: str) -> int:
    args = ["--suite", "droid_demo", "--policy", policy, "--episodes-per-task", PER_TASK, "--workers", "2"]
    return main(["eval", *args, "--out", str(out), "--against", str(baseline), *extra])


@pytest.mark.slow
def test_a_zero_candidate_stops_early_against_an_oracle_and_regress_agrees(oracle_baseline, tmp_path, capfd):
    out = tmp_path / "zero"
    assert gated_eval(out, oracle_baseline, "zero", "--stop-when-decided") == 0
    captured = capfd.readouterr()
    stop = read_manifest(out).stop
    assert stop is not None and stop.verdict == "fail" and stop.test == "wsr-betting"
    assert stop.baseline_run_id == load_run(oracle_baseline).run_id and stop.outcome == "success"
    stored = read_rows(out)
    assert stop.pairs <= stop.episodes == len(stored) < 24  # ended early
    assert "gate FAIL after" in captured.err  # the status line at the end of the run
    assert f"FAIL after {stop.pairs} of 24 planned pairs" in captured.out
    assert read_manifest(out).sessions[-1].status == "stopped by decision"
    # regress agrees: same verdict and exit code, on the pairs the gate was fed
    assert main(["regress", "--baseline", str(oracle_baseline), "--candidate", str(out)]) == EXIT_REGRESSION
    report = capfd.readouterr().out
    assert report.strip().splitlines()[-1].startswith("FAIL: significant drop")
    assert f"fed its first {stop.pairs} planned pairs" in report
    # resume after a stop by decision: nothing more runs
    assert gated_eval(out, oracle_baseline, "zero", "--stop-when-decided") == 0
    assert "runs no more episodes" in capfd.readouterr().out
    assert len(read_rows(out)) == len(stored)
    manifest = read_manifest(out)
    assert manifest.stop == stop and manifest.sessions[-1].episodes_run == 0


@pytest.mark.slow
def test_an_unchanged_candidate_with_a_margin_too_tight_to_decide_runs_to_the_end(
    oracle_baseline, tmp_path, capfd
):
    out = tmp_path / "same"
    assert (
        gated_eval(out, oracle_baseline, "oracle", "--stop-when-decided", "--max-drop", "1", "--quiet") == 0
    )
    printed = capfd.readouterr().out
    stop = read_manifest(out).stop
    assert len(read_rows(out)) == 24 and read_manifest(out).sessions[-1].status == "completed"
    # it ran its whole plan undecided; its stopping rule stays its test (no second look by the fixed-N test)
    assert (stop.verdict, stop.pairs, stop.margin_pp) == ("undecided", 24, 1.0)
    assert "UNDECIDED after 24 of 24 planned pairs" in printed and "ended undecided" in printed
    assert "overall (droid_demo): undecided (24 pairs, diff +0.0 pp [" in printed
    assert main(["regress", "--baseline", str(oracle_baseline), "--candidate", str(out)]) == 3
    assert "judged by its stopping rule (wsr-betting) (exit 3)" in capfd.readouterr().out
