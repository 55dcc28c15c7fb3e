"""Text in a run comes from outside evalkit: task instructions (suite files), the policy name (a policy server's
metadata), the checkpoint path. In real Chromium, none of it runs as markup in the report or the leaderboard."""

import sqlite3

import pytest

from evalkit.report.leaderboard import write_leaderboard
from evalkit.report.report import write_report
from tests.report.runs import grid, write_run
from tests.report.test_html_chromium import browser, pytestmark  # noqa: F401 (fixture, skip rule)

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
