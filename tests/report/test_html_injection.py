"""Text in a run comes from outside evalkit: task instructions (suite files), the policy name (a policy server's
metadata), the checkpoint path. In real Chromium, none of it runs as markup in the report or the leaderboard."""

import sqlite3

import pytest

from evalkit.report.leaderboard import write_leaderboard
from evalkit.report.report import write_report
from tests.report.runs import grid, write_run
from tests.report.test_html_chromium import browser  # noqa: F401 (fixture)

# slow: Chromium
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("chromium")]

PAYLOAD = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


@pytest.fixture
def hostile_run(tmp_path):
    keys = grid("libero_spatial", 2, 3)
    run = write_run(
        tmp_path / "results" / "run",
        {k: i % 2 == 0 for i, k in enumerate(keys)},
        policy=f"ws://h{PAYLOAD}",
        checkpoint=PAYLOAD,
    )
    db = sqlite3.connect(run / "episodes.sqlite")
    db.execute("UPDATE episodes SET task = ?, video = ?", (PAYLOAD, f"videos/{PAYLOAD}.mp4"))
    db.commit()
    db.close()
    return run


def test_report_and_leaderboard_do_not_run_injected_markup(tmp_path, browser, hostile_run):  # noqa: F811
    report = write_report(hostile_run, tmp_path / "report", ["html", "md"]).out_dir
    _, _, files = write_leaderboard([tmp_path / "results"], tmp_path / "lb", ["html"])
    for page in (report / "report.html", files[0]):
        html = page.read_text()
        assert PAYLOAD not in html and "&lt;script&gt;" in html
        session = browser.open(page.as_uri())
        assert browser.evaluate(
            session, "window.__pwned === undefined && !document.querySelector('img[src=x]')"
        )
    assert browser.console_errors() == []


def test_markdown_outputs_show_hostile_text_as_text(tmp_path, hostile_run, capsys):
    """Issue 22 item 13: task text and policy names were escaped in HTML but written raw into report.md and
    compare.md (a markdown viewer renders raw HTML, links and table pipes)."""
    from evalkit.cli import main
    from evalkit.report.compare import write_comparison

    db = sqlite3.connect(hostile_run / "episodes.sqlite")
    db.execute(
        "UPDATE episodes SET error = ? WHERE rowid = 1", (f"boom | {PAYLOAD} [x](javascript:alert(1))",)
    )
    db.execute("UPDATE episodes SET termination = 'error', success = 0 WHERE rowid = 1")
    db.commit()
    db.close()
    keys = grid("libero_spatial", 2, 3)
    other = write_run(tmp_path / "other", {k: True for k in keys}, policy_fp="other")
    texts = {"report.md": write_report(hostile_run, tmp_path / "report", ["md"]).markdown}
    texts["compare.md"] = write_comparison([other, hostile_run], tmp_path / "cmp")[1]
    texts["leaderboard.md"] = write_leaderboard([tmp_path / "results"], tmp_path / "lb", ["md"])[1]
    capsys.readouterr()
    main(["regress", "--baseline", str(other), "--candidate", str(hostile_run)])
    texts["regress"] = capsys.readouterr().out
    for name, text in texts.items():
        assert "<img" not in text and "<script" not in text, name
        assert "&lt;script&gt;" in text, name
        assert "](javascript" not in text, name
    for name in ("report.md", "compare.md"):
        header = ""
        for line in texts[name].splitlines():
            if not line.startswith("|"):
                header = ""
                continue
            header = header or line
            # a pipe inside a cell is escaped: each row has as many unescaped pipes as its table's header
            assert line.replace("\\|", "").count("|") == header.count("|"), (name, line)
