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


def test_report_of_two_runs_is_a_comparison_with_a_link(tmp_path, capsys):
    a = write_run(tmp_path / "a", {k: True for k in KEYS})
    b = write_run(tmp_path / "b", {k: k[1] != 2 for k in KEYS}, policy_fp="b", checkpoint="ckpt/b")
    assert main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    page = tmp_path / "compare" / "a__vs__b" / "compare.html"
    assert out.startswith("# evalkit comparison: pi05 (a) vs pi05 (b) on libero_spatial")
    assert out.rstrip().endswith(f"report: {page.resolve().as_uri()}") and page.is_file()


def test_report_ends_with_a_file_link(tmp_path, capsys):
    run = write_run(tmp_path / "run", {k: True for k in KEYS})
    assert main(["report", str(run), "--formats", "md,html"]) == 0
    html = (run / "report" / "report.html").resolve()
    assert capsys.readouterr().out.rstrip().endswith(f"report: {html.as_uri()}")
