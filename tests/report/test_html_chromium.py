"""The HTML report and leaderboard in a real headless Chromium: no console errors, plots drawn, a video loads."""

import pytest

from evalkit.report.leaderboard import write_leaderboard
from evalkit.report.report import write_report
from tests.report.chromium import Browser
from tests.report.runs import grid, write_run
from tests.report.test_report import write_mp4

pytestmark = pytest.mark.usefixtures("chromium")

VIDEO_STATE = """
new Promise((resolve) => {
  const v = document.querySelector("video");
  if (!v) { resolve({found: false}); return; }
  const done = () => resolve({found: true, readyState: v.readyState, width: v.videoWidth, error: v.error && v.error.code});
  if (v.readyState >= 1) { done(); return; }
  v.addEventListener("loadedmetadata", done);
  v.addEventListener("error", done);
  v.load();
  setTimeout(done, 10000);
})
"""

PLOTS = "[...document.querySelectorAll('figure svg')].map(s => s.closest('figure').id + ':' + s.querySelectorAll('path, rect').length)"


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "chromium-profile")
    yield b
    b.close()


def test_report_html_in_chromium(tmp_path, browser):
    keys = grid("libero_spatial", 3, 3)
    outcomes = {k: i % 2 == 0 for i, k in enumerate(keys)}
    outcomes[keys[4]] = "error"
    rel = "videos/libero_spatial/task0_init0.mp4"
    write_mp4(tmp_path / "run" / rel, size=96)
    run = write_run(tmp_path / "run", outcomes, videos={keys[0]: rel})
    result = write_report(run, tmp_path / "report", ["html"])
    html = result.out_dir / "report.html"

    session = browser.open(html.as_uri())
    plots = browser.evaluate(session, PLOTS)
    assert [p.split(":")[0] for p in plots] == ["plot-task-success", "plot-steps"]
    assert all(int(p.split(":")[1]) > 5 for p in plots)  # bars/whiskers/histogram drawn
    video = browser.evaluate(session, VIDEO_STATE)
    assert video["found"] and video["error"] is None
    assert video["readyState"] >= 1 and video["width"] == 96
    warning = browser.evaluate(session, "document.getElementById('error-warning').textContent")
    assert "1 episode(s) ended in an error" in warning
    assert browser.console_errors() == []


def test_leaderboard_html_in_chromium(tmp_path, browser):
    keys = grid("libero_spatial", 2, 5)
    write_run(tmp_path / "results" / "a", {k: True for k in keys})
    _, _, files = write_leaderboard([tmp_path / "results"], tmp_path / "lb", ["html"])
    session = browser.open(files[0].as_uri())
    rows = browser.evaluate(session, "document.querySelectorAll('#table-1 tbody tr').length")
    published = browser.evaluate(session, "document.querySelectorAll('#published tbody tr').length")
    assert rows == 1 and published >= 7
    assert browser.console_errors() == []


def test_console_errors_are_caught(tmp_path, browser):
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><script>console.error('bad'); undefinedFunction();</script></body></html>"
    )
    browser.open(page.as_uri())
    errors = browser.console_errors()
    assert len(errors) == 2 and "bad" in errors[0] and "undefinedFunction" in errors[1]
