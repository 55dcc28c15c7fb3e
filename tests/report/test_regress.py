import argparse

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.report.cli import regress_arguments, regress_main
from evalkit.report.regress import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION, compare_runs
from evalkit.rundir.manifest import StopRecord, read_manifest, write_manifest
from evalkit.rundir.run import load_run
from tests.report.runs import grid, write_run

KEYS = grid("libero_spatial", 10, 6)  # 60 episodes


def outcomes(keys, failing: set[int]):
    return {k: i not in failing for i, k in enumerate(keys)}


def regress(capsys, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    regress_arguments(parser)
    code = regress_main(parser.parse_args(list(argv)))
    return code, capsys.readouterr().out


def test_clear_regression_fails(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing={0, 1}))
    cand = write_run(tmp_path / "b", outcomes(KEYS, failing=set(range(0, 60, 3))), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_REGRESSION == 1
    assert "REGRESSION" in out and "mcnemar-exact" in out and "FAIL" in out
    result = compare_runs(load_run(base), load_run(cand))
    row = result.rows[0]
    assert row.pairs == 60 and row.comparison.test == "mcnemar-exact"
    # lost: 19 pairs (multiples of 3 but 0), gained: 1 (index 1): P(X >= 19 | Bin(20, 1/2)) = 21 / 2**20
    assert row.comparison.p_drop == pytest.approx(21 / 2**20)
    assert row.comparison.diff == pytest.approx(-18 / 60)


def test_no_change_passes_when_the_data_rule_out_the_margin(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing={3, 7, 20}))
    cand = write_run(tmp_path / "b", outcomes(KEYS, failing={3, 7, 20}), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_OK == 0
    last = out.strip().splitlines()[-1]
    assert last.startswith("PASS: no drop larger than 5 pp") and "95.0% (57/60) -> 95.0% (57/60)" in last
    assert "+0.0" in out
    # 60 pairs cannot rule out a 1 pp drop (90% lower bound -4.7 pp): neither pass nor fail
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--max-drop", "1")
    assert code == EXIT_INCONCLUSIVE
    assert "lower bound -4.7 pp" in out and "PASS" not in out


def test_small_drop_is_inconclusive_on_few_episodes_and_passes_on_many(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing={1}))
    cand = write_run(tmp_path / "b", outcomes(KEYS, failing={1, 2, 3}), policy_fp="cand")  # 2 lost, 0 gained
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_INCONCLUSIVE  # p = 1/4 is no significant drop, but a 5 pp drop is not ruled out
    assert "neither a significant drop (p=0.25) nor a drop larger than 5 pp ruled out" in out
    many = grid("libero_spatial", 10, 30)  # 300 pairs, 4 lost: lower bound -2.9 pp
    base = write_run(tmp_path / "c", outcomes(many, failing=set()))
    cand = write_run(tmp_path / "d", outcomes(many, failing={0, 50, 100, 150}), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_OK and "lower bound -2.9 pp" in out
    code, _ = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--max-drop", "2")
    assert code == EXIT_INCONCLUSIVE


def test_large_significant_drop_fails_whatever_the_margin(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing=set()))
    cand = write_run(tmp_path / "b", outcomes(KEYS, failing=set(range(0, 60, 4))), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--max-drop", "50")
    assert code == EXIT_REGRESSION
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith("FAIL: significant drop: overall (libero_spatial) 100.0% (60/60)")
    )


def test_improvement_is_not_a_regression(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing=set(range(0, 60, 2))))
    cand = write_run(tmp_path / "b", outcomes(KEYS, failing={0}), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_OK
    assert "improvement" in out


def test_total_drop_on_three_episodes_is_inconclusive_not_pass(tmp_path, capsys):
    """Issue 10: with --min-episodes 3, 100% -> 0% printed "PASS: no regression" (exit 0)."""
    keys = KEYS[:3]
    base = write_run(tmp_path / "a", outcomes(keys, failing=set()))
    cand = write_run(tmp_path / "b", outcomes(keys, failing={0, 1, 2}), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--min-episodes", "3")
    assert code == EXIT_INCONCLUSIVE == 3
    assert "PASS" not in out
    last = out.strip().splitlines()[-1]
    assert (
        last.startswith("INCONCLUSIVE") and "100.0% (3/3) -> 0.0% (0/3)" in last
    )  # p = 1/8: not significant


def test_too_few_episodes_is_inconclusive_and_still_shows_both_rates(tmp_path, capsys):
    keys = KEYS[:4]
    base = write_run(tmp_path / "a", outcomes(keys, failing=set()))
    cand = write_run(tmp_path / "b", outcomes(keys, failing={0, 1, 2, 3}), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_INCONCLUSIVE == 3
    assert "not tested: 4 pairs < --min-episodes 10" in out
    row = next(line for line in out.splitlines() if line.startswith("| overall"))
    assert "100.0% (4/4)" in row and "0.0% (0/4)" in row and "-100.0 (no test)" in row
    code, _ = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--min-episodes", "4")
    assert code == EXIT_INCONCLUSIVE  # 4 lost of 4: one-sided p = 1/16 > 0.05, and -100 pp not ruled out


def test_different_protocols_are_refused_unless_forced(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing=set()))
    cand = write_run(
        tmp_path / "b",
        outcomes(KEYS, failing=set()),
        policy_fp="cand",
        protocol_changes={"libero_spatial": {"max_steps": 280}},
    )
    with pytest.raises(EvalkitError, match=r"different protocols.*max_steps: 220 vs 280"):
        regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--force")
    assert code == EXIT_OK
    assert "--force: comparing across protocols" in out


def test_unpaired_runs_use_fisher_and_say_so(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing=set()))
    other_seed = grid("libero_spatial", 10, 6, seed=8)
    cand = write_run(tmp_path / "b", outcomes(other_seed, failing=set(range(0, 60, 2))), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_REGRESSION
    assert "fisher-exact" in out and "unpaired Fisher test on all episodes" in out


def test_leftover_unpaired_episodes_are_reported_with_fisher(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(KEYS + grid("libero_spatial", 2, 3, seed=9), failing=set()))
    cand_keys = KEYS + grid("libero_spatial", 2, 3, seed=10)
    cand = write_run(tmp_path / "b", outcomes(cand_keys, failing=set()), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_INCONCLUSIVE  # the candidate lacks 6 of the baseline's episodes: it cannot pass
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--allow-partial")
    assert code == EXIT_OK
    assert "6+6 unpaired episodes compared with Fisher's exact test (not part of the verdict)" in out


def test_error_episodes_are_excluded_with_a_warning(tmp_path, capsys):
    base_out = outcomes(KEYS, failing=set())
    cand_out = outcomes(KEYS, failing=set())
    cand_out[KEYS[0]] = "error"
    cand_out[KEYS[1]] = "error"
    base = write_run(tmp_path / "a", base_out)
    cand = write_run(tmp_path / "b", cand_out, policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_INCONCLUSIVE  # errors: the candidate is incomplete and cannot pass
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--allow-partial")
    assert code == EXIT_OK
    assert "candidate: 2 error episode(s) excluded from pairing" in out
    result = compare_runs(load_run(base), load_run(cand))
    assert result.rows[0].pairs == 58 and result.rows[0].baseline_only == 2


def test_regression_in_one_suite_of_several_is_caught(tmp_path, capsys):
    spatial, obj = grid("libero_spatial", 10, 6), grid("libero_object", 10, 6)
    base = write_run(tmp_path / "a", outcomes(spatial + obj, failing=set()))
    cand_out = outcomes(spatial + obj, failing=set(range(60, 80)))  # 20 of 60 object episodes lost
    cand = write_run(tmp_path / "b", cand_out, policy_fp="cand")
    result = compare_runs(load_run(base), load_run(cand))
    by_scope = {r.scope: r for r in result.rows}
    assert set(by_scope) == {"libero_object", "libero_spatial", "overall"}
    assert by_scope["libero_object"].decision == "regression" and by_scope["libero_object"].alpha == 0.025
    # 60 unchanged pairs at alpha 0.025 (97.5% bound -6.0 pp) cannot rule out a 5 pp drop on their own
    assert by_scope["libero_spatial"].decision == "inconclusive"
    assert result.exit_code == EXIT_REGRESSION


def test_bad_arguments_are_errors(tmp_path):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing=set()))
    with pytest.raises(EvalkitError, match="alpha"):
        compare_runs(load_run(base), load_run(base), alpha=1.5)
    for bad in (-1.0, 100.0, float("nan")):
        with pytest.raises(EvalkitError, match="--max-drop"):
            compare_runs(load_run(base), load_run(base), max_drop=bad)
    with pytest.raises(EvalkitError, match="not a run directory"):
        load_run(tmp_path)
    with pytest.raises(EvalkitError, match="does not exist"):
        load_run(tmp_path / "missing")


def test_candidate_whose_episodes_all_errored_is_inconclusive_not_pass(tmp_path, capsys):
    """An error is not a policy outcome: a candidate run that crashed on every episode proves nothing either way."""
    base = write_run(tmp_path / "a", outcomes(KEYS, failing=set()))
    cand = write_run(tmp_path / "b", dict.fromkeys(KEYS, "error"), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_INCONCLUSIVE
    assert "candidate: 60 error episode(s) excluded" in out
    assert out.strip().splitlines()[-1] == (
        "INCONCLUSIVE: not tested: overall (libero_spatial) 100.0% (60/60) -> — (0/0), 0 pairs < --min-episodes 10; "
        "coverage: 0/60 baseline episodes paired (60 candidate error episode(s)) (exit 3)"
    )


def test_pass_needs_every_suite_row_not_only_the_overall_one(tmp_path, capsys):
    """120 unchanged pairs rule out a 5 pp overall drop, but 60 per suite at alpha / 2 do not: no PASS claim for
    the suites, so the verdict is inconclusive and the line names the open rows and the overall rates."""
    keys = grid("libero_spatial", 10, 6) + grid("libero_object", 10, 6)
    base = write_run(tmp_path / "a", outcomes(keys, failing=set()))
    cand = write_run(tmp_path / "b", outcomes(keys, failing=set()), policy_fp="cand")
    result = compare_runs(load_run(base), load_run(cand))
    assert {r.scope: r.decision for r in result.rows} == {
        "libero_object": "inconclusive",
        "libero_spatial": "inconclusive",
        "overall": "no regression",
    }
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_INCONCLUSIVE
    assert out.strip().splitlines()[-1] == (
        "INCONCLUSIVE: no significant drop, but a drop larger than 5 pp is not ruled out for libero_object "
        "100.0% (60/60) -> 100.0% (60/60); libero_spatial 100.0% (60/60) -> 100.0% (60/60); overall "
        "100.0% (120/120) -> 100.0% (120/120); coverage: all 120 baseline episodes paired, no errors (exit 3)"
    )
    code, _ = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--max-drop", "7")
    assert code == EXIT_OK


# --- Issue 22: what regress says when it did not test, and candidates it must never pass ------------------------

FOUR_HUNDRED = grid("libero_spatial", 10, 40)


def test_too_few_pairs_says_not_tested_in_the_verdict_line(tmp_path, capsys):
    """Issue 22 item 4: 100% -> 0% on 8 pairs said INCONCLUSIVE "no significant drop" although no test ran."""
    keys = grid("droid_demo", 4, 2)
    base = write_run(tmp_path / "a", outcomes(keys, failing=set()), policy="oracle", checkpoint=None)
    cand = write_run(tmp_path / "b", outcomes(keys, failing=set(range(8))), policy="zero", checkpoint=None)
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_INCONCLUSIVE
    assert out.strip().splitlines()[-1] == (
        "INCONCLUSIVE: not tested: overall (droid_demo) 100.0% (8/8) -> 0.0% (0/8), 8 pairs < --min-episodes 10; "
        "coverage: all 8 baseline episodes paired, no errors (exit 3)"
    )
    assert "no significant drop" not in out
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--min-episodes", "8")
    assert code == EXIT_REGRESSION  # 8 of 8 lost: one-sided p = 1/256
    assert (
        out.strip().splitlines()[-1].startswith("FAIL: significant drop: overall (droid_demo) 100.0% (8/8)")
    )


def test_a_candidate_with_error_episodes_never_passes_unless_allowed(tmp_path, capsys):
    """Issue 22 item 13: 100 of the candidate's 400 episodes were errors, and regress said PASS (exit 0)."""
    base = write_run(tmp_path / "a", outcomes(FOUR_HUNDRED, failing=set()))
    cand_out = outcomes(FOUR_HUNDRED, failing=set())
    for key in FOUR_HUNDRED[::4]:
        cand_out[key] = "error"
    cand = write_run(tmp_path / "b", cand_out, policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    last = out.strip().splitlines()[-1]
    assert code == EXIT_INCONCLUSIVE and "PASS" not in last
    assert last.startswith("INCONCLUSIVE: the candidate is incomplete, so it cannot pass")
    assert last.endswith(
        "coverage: 300/400 baseline episodes paired (100 candidate error episode(s)) (exit 3)"
    )
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--allow-partial")
    last = out.strip().splitlines()[-1]
    assert code == EXIT_OK and last.startswith("PASS")
    assert last.endswith(
        "coverage: 300/400 baseline episodes paired (100 candidate error episode(s)); --allow-partial (exit 0)"
    )


def test_a_candidate_holding_half_the_baseline_never_passes_unless_allowed(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(FOUR_HUNDRED, failing=set()))
    cand = write_run(tmp_path / "b", outcomes(FOUR_HUNDRED[:200], failing=set()), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    last = out.strip().splitlines()[-1]
    assert (
        code == EXIT_INCONCLUSIVE
        and "200/400 baseline episodes paired (200 baseline episode(s) the candidate lacks)" in last
    )
    code, _ = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--allow-partial")
    assert code == EXIT_OK


def test_a_candidate_that_skipped_a_suite_of_the_baseline_never_passes_unless_allowed(tmp_path, capsys):
    spatial, obj = grid("libero_spatial", 10, 20), grid("libero_object", 10, 20)
    base = write_run(tmp_path / "a", outcomes(spatial + obj, failing=set()))
    cand = write_run(tmp_path / "b", outcomes(spatial, failing=set()), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert (
        code == EXIT_INCONCLUSIVE and "suites measured by only one run are not compared: libero_object" in out
    )
    assert "200/400 baseline episodes paired (200 baseline episode(s) the candidate lacks)" in out
    code, _ = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--allow-partial")
    assert code == EXIT_OK


def test_a_significant_drop_fails_even_when_the_candidate_is_incomplete(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(FOUR_HUNDRED, failing=set()))
    cand_out = outcomes(FOUR_HUNDRED, failing=set(range(0, 400, 3)))
    cand_out[FOUR_HUNDRED[1]] = "error"
    cand = write_run(tmp_path / "b", cand_out, policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    last = out.strip().splitlines()[-1]
    assert code == EXIT_REGRESSION and last.startswith("FAIL: significant drop")
    assert "coverage: 399/400 baseline episodes paired (1 candidate error episode(s))" in last


def test_the_same_run_twice_is_refused(tmp_path, capsys):
    """Issue 22 item 13: baseline and candidate the same directory said PASS. Also through a symlink, another
    spelling of the path, and a copy of the run directory (same run id)."""
    import shutil

    from evalkit.cli import main

    base = write_run(tmp_path / "a", outcomes(FOUR_HUNDRED, failing=set()))
    (tmp_path / "link").symlink_to(base)
    shutil.copytree(base, tmp_path / "copy")
    capsys.readouterr()
    for candidate, message in (
        (base, "same run directory"),
        (tmp_path / "link", "same run directory"),
        (tmp_path / "x" / ".." / "a", "same run directory"),
        (tmp_path / "copy", "same run (run id"),
    ):
        (tmp_path / "x").mkdir(exist_ok=True)
        assert main(["regress", "--baseline", str(base), "--candidate", str(candidate)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("evalkit: error: ") and message in err[0], err


def test_fingerprints_are_checked_on_the_rows_not_only_the_manifest(tmp_path, capsys):
    """Issue 22 item 13: a manifest edited to claim the baseline's protocol was accepted."""
    import json

    from evalkit.cli import main

    base = write_run(tmp_path / "a", outcomes(FOUR_HUNDRED, failing=set()))
    cand = write_run(
        tmp_path / "b",
        outcomes(FOUR_HUNDRED, failing=set()),
        policy_fp="cand",
        protocol_changes={"libero_spatial": {"max_steps": 600}},
    )
    base_manifest = json.loads((base / "manifest.json").read_text())
    edited = json.loads((cand / "manifest.json").read_text())
    edited["suites"] = base_manifest["suites"]
    edited["protocol_fingerprint"] = base_manifest["protocol_fingerprint"]
    (cand / "manifest.json").write_text(json.dumps(edited))
    capsys.readouterr()
    assert main(["regress", "--baseline", str(base), "--candidate", str(cand)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "carry protocol_fingerprint" in err[0] and "manifest was edited" in err[0], err
    assert main(["regress", "--baseline", str(base), "--candidate", str(cand), "--force"]) == 2


# --- A candidate that stopped by decision (issue 18): judged with its own sequential test --------------------------


def stop_by_decision(run_dir, verdict: str, baseline_run_id: str, test: str = "wsr-betting"):
    """Record a stop by decision on every pair the run holds (as `eval --stop-when-decided` records it)."""
    from evalkit.rundir.manifest import StopRecord, read_manifest, write_manifest

    manifest = read_manifest(run_dir)
    n = len(load_run(run_dir).episodes)
    manifest.stop = StopRecord(test, 0.05, 5.0, n, verdict, baseline_run_id, pairs=n)
    write_manifest(run_dir, manifest)
    return run_dir


@pytest.fixture
def sequential_module(monkeypatch):
    """`evalkit.report.sequential` as regress looks it up: PAIRED_TESTS by name (here a stand-in that knows only
    the fixed-N test)."""
    import sys
    import types

    from evalkit.report.regress import mcnemar_newcombe

    module = types.ModuleType("evalkit.report.sequential")
    module.PAIRED_TESTS = {"stand-in": mcnemar_newcombe}
    monkeypatch.setitem(sys.modules, "evalkit.report.sequential", module)


FORTY_PER_TASK = {"libero_spatial": {"episodes_per_task": 40}}


def planned_prefix(run_dir, n: int) -> list[tuple]:
    plan = load_run(run_dir).manifest.planned_episodes()
    return [(s.suite, s.task_id, s.init_state, s.seed) for s in plan[:n]]


def test_a_run_stopped_by_decision_is_judged_on_its_fed_pairs_with_its_own_test(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(FOUR_HUNDRED, failing=set()), protocol_changes=FORTY_PER_TASK)
    base_id = load_run(base).run_id
    first = planned_prefix(base, 40)
    broken = write_run(
        tmp_path / "b", dict.fromkeys(first, False), policy_fp="zero", protocol_changes=FORTY_PER_TASK
    )
    stop_by_decision(broken, "fail", base_id)
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(broken), "--alpha", "0.1")
    last = out.strip().splitlines()[-1]
    assert code == EXIT_REGRESSION and last.startswith("FAIL")
    assert last.endswith(
        "coverage: 40/400 baseline episodes paired (360 baseline episode(s) the candidate lacks); "
        "stopped by decision (wsr-betting) (exit 1)"
    )
    result = compare_runs(load_run(base), load_run(broken), alpha=0.1)
    (row,) = result.rows
    assert row.pairs == 40 and row.alpha == 0.05  # the stop record's alpha, not --alpha 0.1
    assert row.comparison.test == "sequential (betting)" and row.comparison.diff == -1.0
    assert "judged at its stopping rule's alpha 0.05" in out and "differs from the run's recorded" not in out
    same = write_run(
        tmp_path / "c",
        dict.fromkeys(planned_prefix(base, 200), True),
        policy_fp="same",
        protocol_changes=FORTY_PER_TASK,
    )
    stop_by_decision(same, "pass", base_id)
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(same))
    assert code == EXIT_OK and "stopped by decision (wsr-betting) (exit 0)" in out
    stop_by_decision(same, "fail", base_id)  # a record that disagrees with the data is flagged
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(same))
    assert "this verdict (exit 0) differs from the run's recorded stop verdict 'fail'" in out


def test_a_stopped_run_is_judged_on_the_first_planned_pairs_only(tmp_path):
    """Episodes finish out of order: what a stopped run stored beyond its fed prefix is not part of the verdict,
    and its rows are the suites it planned, reached or not."""
    base = write_run(tmp_path / "a", outcomes(FOUR_HUNDRED, failing=set()), protocol_changes=FORTY_PER_TASK)
    stored = planned_prefix(base, 60)
    cand = write_run(
        tmp_path / "b",
        {k: i >= 30 for i, k in enumerate(stored)},
        policy_fp="c",
        protocol_changes=FORTY_PER_TASK,
    )
    manifest = read_manifest(cand)
    manifest.stop = StopRecord("wsr-betting", 0.05, 5.0, 60, "fail", load_run(base).run_id, pairs=20)
    write_manifest(cand, manifest)
    result = compare_runs(load_run(base), load_run(cand))
    assert result.exit_code == EXIT_REGRESSION and result.rows[0].pairs == 20
    assert any("40 candidate episode(s) that finished beyond the fed prefix" in w for w in result.warnings)
    manifest.stop = StopRecord("wsr-betting", 0.05, 5.0, 70, "fail", load_run(base).run_id, pairs=70)
    write_manifest(cand, manifest)
    result = compare_runs(load_run(base), load_run(cand))
    assert result.rows[0].pairs == 60
    assert any("planned episode 61" in w and "judged on the 60 before it" in w for w in result.warnings)


def test_a_stopped_run_whose_test_is_unknown_is_refused(tmp_path, capsys, sequential_module):
    from evalkit.cli import main

    base = write_run(tmp_path / "a", outcomes(FOUR_HUNDRED, failing=set()))
    cand = write_run(tmp_path / "b", outcomes(FOUR_HUNDRED[:40], failing=set()), policy_fp="c")
    stop_by_decision(cand, "pass", load_run(base).run_id, test="no-such-test")
    capsys.readouterr()
    assert main(["regress", "--baseline", str(base), "--candidate", str(cand)]) == 2
    err = capsys.readouterr().err
    assert "sequential test 'no-such-test', which this evalkit does not provide" in err


def test_outcome_progress_judges_partial_credit_and_the_view_shows_both_statistics(tmp_path, capsys):
    """Both runs fail every episode, but the baseline reaches two of three stages and the candidate one: success
    sees no difference (and rules out a drop), progress (each episode's mean of its flags) sees a drop of a third."""
    near = {"reached": True, "grasped": True, "success": False}
    barely = {"reached": True, "grasped": False, "success": False}
    base = write_run(tmp_path / "a", outcomes(KEYS, failing=set(range(60))), progress=near)
    cand = write_run(tmp_path / "b", outcomes(KEYS, failing=set(range(60))), progress=barely, policy_fp="c")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_OK and "- statistic: success" in out
    view = out[out.index("## Sequential view") :]
    assert "| overall (libero_spatial) | success" in view and "| overall (libero_spatial) | progress" in view
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--outcome", "progress")
    assert code == EXIT_REGRESSION
    assert "- statistic: progress: each episode's mean of its progress flags" in out
    assert "66.7% (mean progress of 60) -> 33.3% (mean progress of 60)" in out.strip().splitlines()[-1]
    result = compare_runs(load_run(base), load_run(cand), outcome="progress")
    assert result.rows[0].comparison.diff == pytest.approx(-1 / 3)


def test_outcome_progress_needs_progress_flags(tmp_path):
    from evalkit.cli import main

    base = write_run(tmp_path / "a", outcomes(KEYS, failing=set()))
    cand = write_run(tmp_path / "b", outcomes(KEYS, failing=set()), policy_fp="c")
    with pytest.raises(
        EvalkitError, match="--outcome progress: the baseline's episodes of libero_spatial record no"
    ):
        compare_runs(load_run(base), load_run(cand), outcome="progress")
    assert main(["regress", "--baseline", str(base), "--candidate", str(cand), "--outcome", "progress"]) == 2
