"""The report commands through the real `evalkit` entry point: output, exit codes (EvalkitError -> 2)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.cli import main
from tests.report.runs import grid, write_run

KEYS = grid("libero_spatial", 5, 4)
REPO = Path(__file__).resolve().parents[2]


def test_report_prints_markdown(tmp_path, capsys):
    run = write_run(tmp_path / "run", {k: True for k in KEYS})
    assert main(["report", str(run), "--formats", "md,csv"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# evalkit report: ") and "100.0" in out
    assert (run / "report" / "report.md").exists() and (run / "report" / "tasks.csv").exists()
    assert not (run / "report" / "report.html").exists()


def test_regress_exit_codes(tmp_path, capsys):
    keys = grid("libero_spatial", 10, 10)  # 100 pairs: enough to rule out a 5 pp drop when nothing changed
    base = write_run(tmp_path / "a", {k: True for k in keys})
    same = write_run(tmp_path / "a2", {k: True for k in keys}, policy_fp="a2")
    worse = write_run(tmp_path / "b", {k: i % 2 == 0 for i, k in enumerate(keys)}, policy_fp="b")
    other = write_run(
        tmp_path / "c",
        {k: True for k in keys},
        protocol_changes={"libero_spatial": {"seed": 8}},
    )
    assert main(["regress", "--baseline", str(base), "--candidate", str(same)]) == 0
    assert main(["regress", "--baseline", str(base), "--candidate", str(worse)]) == 1
    assert main(["regress", "--baseline", str(base), "--candidate", str(other)]) == 2
    assert "seed: 7 vs 8" in capsys.readouterr().err
    assert main(["regress", "--baseline", str(base), "--candidate", str(other), "--force"]) == 0
    assert main(["regress", "--baseline", str(base), "--candidate", str(tmp_path / "missing")]) == 2
    assert main(["regress", "--baseline", str(base), "--candidate", str(worse), "--min-episodes", "200"]) == 3
    assert main(["regress", "--baseline", str(base), "--candidate", str(same), "--max-drop", "1"]) == 3
    assert main(["regress", "--baseline", str(base), "--candidate", str(same), "--max-drop", "-1"]) == 2


def test_regress_help_states_the_default_margin_and_exit_codes(capsys):
    from evalkit.report.config import DEFAULT_MAX_DROP

    with pytest.raises(SystemExit):
        main(["regress", "--help"])
    out = capsys.readouterr().out
    assert f"(default: {DEFAULT_MAX_DROP})" in out
    assert "3  inconclusive" in out and "not `make regress`" in out


def _valid_store(tmp_path: Path) -> bytes:
    return (write_run(tmp_path / "template", {k: True for k in KEYS}) / "episodes.sqlite").read_bytes()


CORRUPTIONS = {
    "store-garbage": ("episodes.sqlite", lambda valid: b"\x00garbage" * 500),
    "store-truncated": ("episodes.sqlite", lambda valid: valid[: len(valid) // 3 + 100]),
    "store-bad-page": ("episodes.sqlite", lambda valid: valid[:4096] + b"\xff" * (len(valid) - 4096)),
    "store-empty": ("episodes.sqlite", lambda valid: b""),
    "manifest-list": ("manifest.json", lambda valid: b"[]"),
    "manifest-missing-keys": ("manifest.json", lambda valid: b'{"run_id": "x"}'),
    "manifest-truncated": ("manifest.json", lambda valid: b'{"run_id": "x", "suites": {'),
    "manifest-binary": ("manifest.json", lambda valid: b"\xff\xfe\x00bad"),
    "manifest-wrong-types": (
        "manifest.json",
        lambda valid: (
            b'{"run_id": 1, "created_at": 2, "command": 3, "config": 4, "suites": [], "policy": 5, '
            b'"protocol_fingerprint": 6, "versions": 7, "git_commit": 8, "host": 9, "platform": 10}'
        ),
    ),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_unreadable_input_is_exit_2_with_one_line_for_every_command(tmp_path, capsys, corruption):
    """Issue 10: a corrupt store gave a traceback and exit 1, which regress uses for "significant drop"."""
    name, corrupt = CORRUPTIONS[corruption]
    good = write_run(tmp_path / "good", {k: True for k in KEYS})
    bad = write_run(tmp_path / "results" / "bad", {k: True for k in KEYS}, policy_fp="bad")
    (bad / name).write_bytes(corrupt(_valid_store(tmp_path)))
    capsys.readouterr()
    commands = [
        ["report", str(bad)],
        ["regress", "--baseline", str(good), "--candidate", str(bad)],
        ["regress", "--baseline", str(bad), "--candidate", str(good)],
        ["leaderboard", str(tmp_path / "results")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("evalkit: error: ") and str(bad) in err[0], (argv, err)


@pytest.mark.slow
def test_corrupt_store_through_the_installed_entry_point(tmp_path):
    good = write_run(tmp_path / "good", {k: True for k in KEYS})
    bad = write_run(tmp_path / "bad", {k: True for k in KEYS}, policy_fp="bad")
    (bad / "episodes.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x01" * 8000)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit.cli", "regress", "--baseline", str(good), "--candidate", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_leaderboard_command(tmp_path, capsys):
    write_run(tmp_path / "results" / "a", {k: True for k in KEYS})
    assert main(["leaderboard", str(tmp_path / "results"), "--out", str(tmp_path / "lb")]) == 0
    out = capsys.readouterr().out
    assert "## Table 1" in out and "Published reference numbers" in out
    assert (tmp_path / "lb" / "leaderboard.html").exists()


TAMPERED_ROWS = {
    "text-in-integer-column": ("UPDATE episodes SET task_id = 'x' WHERE task_id = 0", "column task_id"),
    "text-in-steps": ("UPDATE episodes SET steps = 'many'", "column steps"),
    "nan-wall-time": ("UPDATE episodes SET wall_s = 'nan'", "column wall_s"),
    "blob-latency": ("UPDATE episodes SET latency_p50_ms = x'00ff'", "column latency_p50_ms"),
    "deep-progress-json": (
        f"UPDATE episodes SET progress = '{'[' * 100_000}{']' * 100_000}'",
        "malformed progress JSON",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERED_ROWS))
def test_rows_of_the_wrong_type_are_exit_2_with_one_line(tmp_path, capsys, case):
    """Found while testing issue 10: SQLite keeps text in an INTEGER column, and report/leaderboard then died with
    a ValueError/TypeError/RecursionError traceback (exit 1)."""
    import sqlite3

    sql, message = TAMPERED_ROWS[case]
    good = write_run(tmp_path / "good", {k: True for k in KEYS})
    bad = write_run(tmp_path / "results" / "bad", {k: True for k in KEYS}, policy_fp="bad")
    db = sqlite3.connect(bad / "episodes.sqlite")
    db.execute(sql)
    db.commit()
    db.close()
    capsys.readouterr()
    for argv in (
        ["report", str(bad)],
        ["regress", "--baseline", str(good), "--candidate", str(bad)],
        ["leaderboard", str(tmp_path / "results")],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)


def test_unwritable_outputs_and_symlink_loops_are_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "results" / "run", {k: True for k in KEYS})
    (tmp_path / "results" / "loop").symlink_to(tmp_path / "results")  # a cycle under the leaderboard's root
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    capsys.readouterr()
    for argv, message in (
        (["report", str(run), "--out", str(blocker)], "cannot create report directory"),
        (["leaderboard", str(tmp_path / "results"), "--out", str(blocker / "lb")], "cannot create"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert main(["leaderboard", str(tmp_path / "results")]) == 0
    assert capsys.readouterr().out.count("| pi05 @ ckpt/a") == 1  # listed once despite the loop


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


def _read_only_dir(path: Path):
    """A directory nothing can be written into: a read-only tmpfs mount where this user may mount (root), else a
    directory without write permission."""
    import contextlib

    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        path.chmod(0o555)

    @contextlib.contextmanager
    def cleanup():
        try:
            yield path
        finally:
            if mounted.returncode == 0:
                subprocess.run(["umount", str(path)], check=True)
            else:
                path.chmod(0o755)

    return cleanup()


@pytest.mark.slow
def test_a_full_disk_or_read_only_file_system_is_one_line_and_exit_2(tmp_path, capsys):
    """Issue 22 item 13: writing a report to a full disk or a read-only file system gave a traceback, exit 1."""
    run = write_run(tmp_path / "results" / "run", {k: True for k in KEYS})
    other = write_run(tmp_path / "results" / "other", {k: True for k in KEYS}, policy_fp="o")
    full = tmp_path / "full"
    full.mkdir()
    for name in ("report.md", "report.html", "compare.md", "leaderboard.md"):
        (full / name).symlink_to("/dev/full")  # every write there fails with ENOSPC, as on a full disk
    capsys.readouterr()
    with _read_only_dir(tmp_path / "ro") as read_only:
        for out, reason in ((full, "No space left on device"), (read_only, "")):
            for argv in (
                ["report", str(run), "--out", str(out), "--formats", "md,html"],
                ["report", str(run), str(other), "--out", str(out)],
                ["leaderboard", str(tmp_path / "results"), "--out", str(out), "--formats", "md"],
                ["report", str(run), "--out", str(out / "sub")],
            ):
                if out is full and argv[-1].endswith("sub"):
                    continue
                assert main(argv) == 2, argv
                err = capsys.readouterr().err.strip().splitlines()
                assert len(err) == 1 and err[0].startswith("evalkit: error: cannot "), (argv, err)
                assert reason in err[0] and "Traceback" not in err[0], err
