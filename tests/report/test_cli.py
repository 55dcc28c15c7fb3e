"""The report commands through the real `evalkit` entry point: output, exit codes (EvalkitError -> 2)."""

from evalkit.cli import main
from tests.report.runs import grid, write_run

KEYS = grid("libero_spatial", 5, 4)


def test_report_prints_markdown(tmp_path, capsys):
    run = write_run(tmp_path / "run", {k: True for k in KEYS})
    assert main(["report", str(run), "--formats", "md,csv"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# evalkit report: ") and "100.0" in out
    assert (run / "report" / "report.md").exists() and (run / "report" / "tasks.csv").exists()
    assert not (run / "report" / "report.html").exists()


def test_regress_exit_codes(tmp_path, capsys):
    base = write_run(tmp_path / "a", {k: True for k in KEYS})
    worse = write_run(tmp_path / "b", {k: i % 2 == 0 for i, k in enumerate(KEYS)}, policy_fp="b")
    other = write_run(
        tmp_path / "c",
        {k: True for k in KEYS},
        protocol_changes={"libero_spatial": {"seed": 8}},
    )
    assert main(["regress", "--baseline", str(base), "--candidate", str(base)]) == 0
    assert main(["regress", "--baseline", str(base), "--candidate", str(worse)]) == 1
    assert main(["regress", "--baseline", str(base), "--candidate", str(other)]) == 2
    assert "seed: 7 vs 8" in capsys.readouterr().err
    assert main(["regress", "--baseline", str(base), "--candidate", str(other), "--force"]) == 0
    assert main(["regress", "--baseline", str(base), "--candidate", str(tmp_path / "missing")]) == 2
    assert main(["regress", "--baseline", str(base), "--candidate", str(worse), "--min-episodes", "50"]) == 3


def test_leaderboard_command(tmp_path, capsys):
    write_run(tmp_path / "results" / "a", {k: True for k in KEYS})
    assert main(["leaderboard", str(tmp_path / "results"), "--out", str(tmp_path / "lb")]) == 0
    out = capsys.readouterr().out
    assert "## Table 1" in out and "Published reference numbers" in out
    assert (tmp_path / "lb" / "leaderboard.html").exists()
