import argparse

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.report.cli import regress_arguments, regress_main
from evalkit.report.regress import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION, compare_runs
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


def test_no_change_passes(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing={3, 7, 20}))
    cand = write_run(tmp_path / "b", outcomes(KEYS, failing={3, 7, 20}), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--max-drop", "1")
    assert code == EXIT_OK == 0
    assert "PASS" in out and "+0.0" in out


def test_small_noisy_drop_passes_unless_max_drop(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing={1}))
    cand = write_run(tmp_path / "b", outcomes(KEYS, failing={1, 2, 3}), policy_fp="cand")  # 2 lost, 0 gained
    code, _ = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_OK  # p = 1/4: not significant
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--max-drop", "2")
    assert code == EXIT_REGRESSION and "--max-drop 2 pp" in out  # 3.3 pp drop


def test_improvement_is_not_a_regression(tmp_path, capsys):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing=set(range(0, 60, 2))))
    cand = write_run(tmp_path / "b", outcomes(KEYS, failing={0}), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_OK
    assert "improvement" in out


def test_too_few_episodes_is_inconclusive(tmp_path, capsys):
    keys = KEYS[:4]
    base = write_run(tmp_path / "a", outcomes(keys, failing=set()))
    cand = write_run(tmp_path / "b", outcomes(keys, failing={0, 1, 2, 3}), policy_fp="cand")
    code, out = regress(capsys, "--baseline", str(base), "--candidate", str(cand))
    assert code == EXIT_INCONCLUSIVE == 3
    assert "inconclusive" in out.lower() and "too few episodes: 4 pairs" in out
    code, _ = regress(capsys, "--baseline", str(base), "--candidate", str(cand), "--min-episodes", "4")
    assert code == EXIT_OK  # 4 lost of 4: one-sided p = 1/16 > 0.05


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
    assert by_scope["libero_spatial"].decision == "no regression"
    assert result.exit_code == EXIT_REGRESSION


def test_bad_arguments_are_errors(tmp_path):
    base = write_run(tmp_path / "a", outcomes(KEYS, failing=set()))
    with pytest.raises(EvalkitError, match="alpha"):
        compare_runs(load_run(base), load_run(base), alpha=1.5)
    with pytest.raises(EvalkitError, match="not a run directory"):
        load_run(tmp_path)
    with pytest.raises(EvalkitError, match="does not exist"):
        load_run(tmp_path / "missing")
