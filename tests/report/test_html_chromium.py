"""The HTML report and leaderboard in a real headless Chromium: no console errors, plots drawn, a video loads."""

import pytest

from evalkit.report.leaderboard import write_leaderboard
from evalkit.report.report import write_report
from tests.report.chromium import Browser
from tests.report.runs import grid, write_run
from tests.report.test_report import write_mp4

# slow: Chromium
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("chromium")]

# Click the first video tile of `selector` and wait until every video in the player has its metadata (or fails).
PLAY = """
(async (selector) => {
  document.querySelector(selector).click();
  const videos = [...document.querySelectorAll("dialog#player[open] video")];
  const ready = (v) => new Promise((resolve) => {
    if (v.readyState >= 1 || v.error) { resolve(); return; }
    v.addEventListener("loadedmetadata", resolve);
    v.addEventListener("error", resolve);
    setTimeout(resolve, 10000);
  });
  await Promise.all(videos.map(ready));
  return videos.map((v) => ({readyState: v.readyState, width: v.videoWidth, error: v.error && v.error.code,
                             shown: v.getBoundingClientRect().width}));
})
"""

# Where the tiles of a grid sit, and whether their thumbnails decoded.
TILES = """
[...document.querySelectorAll(arguments_selector)].map((t) => {
  const r = t.getBoundingClientRect();
  const img = t.querySelector("img.thumb");
  return {left: Math.round(r.left), top: Math.round(r.top), width: Math.round(r.width),
          thumb: img ? img.naturalWidth : 0, playable: t.hasAttribute("data-video")};
})
"""


def tiles(browser, session, selector: str) -> list[dict]:
    return browser.evaluate(session, TILES.replace("arguments_selector", repr(selector)))


PLOTS = "[...document.querySelectorAll('figure svg')].map(s => s.closest('figure').id + ':' + s.querySelectorAll('path, rect').length)"


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "chromium-profile")
    yield b
    b.close()


def test_report_html_in_chromium(tmp_path, browser):
    """Issue 22: videos are a thumbnail grid that plays on a click (they were one per row behind the player
    controls); the steps histogram counts in whole episodes; no "the rest are linked" when nothing is."""
    keys = grid("libero_spatial", 3, 3)
    outcomes = {k: i % 2 == 0 for i, k in enumerate(keys)}
    outcomes[keys[4]] = "error"
    videos = {}
    for key in keys[:5]:
        videos[key] = f"videos/libero_spatial/task{key[1]}_init{key[2]}.mp4"
        write_mp4(tmp_path / "run" / videos[key], size=96)
    run = write_run(tmp_path / "run", outcomes, videos=videos)
    result = write_report(run, tmp_path / "report", ["html"])
    html = result.out_dir / "report.html"

    session = browser.open(html.as_uri())
    plots = browser.evaluate(session, PLOTS)
    assert [p.split(":")[0] for p in plots] == ["plot-task-success", "plot-steps"]
    assert all(int(p.split(":")[1]) > 5 for p in plots)  # bars/whiskers/histogram drawn
    y_ticks = browser.evaluate(
        session, "[...document.querySelectorAll('#plot-steps g[id^=ytick] text')].map(t => t.textContent)"
    )
    assert y_ticks and all(t.isdigit() for t in y_ticks), (
        y_ticks
    )  # 4 successes, 1 per bin: 0.2 steps before the fix

    grid_tiles = tiles(browser, session, "#videos .tile")
    assert len(grid_tiles) == 5 and all(t["playable"] and t["thumb"] == 96 for t in grid_tiles)
    first_row = [t for t in grid_tiles if t["top"] == grid_tiles[0]["top"]]
    assert len(first_row) >= 2 and [t["left"] for t in first_row] == sorted({t["left"] for t in first_row})
    note = browser.evaluate(session, "document.getElementById('video-note').textContent")
    assert note.startswith("5 video(s): 5 embedded") and "linked" not in note

    (played,) = browser.evaluate(session, f"{PLAY}('#videos [data-video]')")
    assert played["error"] is None and played["readyState"] >= 1 and played["width"] == 96
    assert played["shown"] > 2 * 96  # the player shows it larger than the thumbnail grid could
    warning = browser.evaluate(session, "document.getElementById('error-warning').textContent")
    assert "1 episode(s) ended in an error" in warning
    assert browser.console_errors() == []


def test_linked_videos_and_a_run_without_successes(tmp_path, browser):
    """Over the embedding budget a video is linked and the page says so; with no success there is no empty
    histogram."""
    keys = grid("libero_spatial", 2, 2)
    rel = "videos/libero_spatial/task0_init0.mp4"
    write_mp4(tmp_path / "run" / rel, size=64)
    run = write_run(tmp_path / "run", dict.fromkeys(keys, False), videos={keys[0]: rel})
    html = write_report(run, tmp_path / "report", ["html"], embed_budget=0).out_dir / "report.html"
    session = browser.open(html.as_uri())
    assert [p.split(":")[0] for p in browser.evaluate(session, PLOTS)] == ["plot-task-success"]
    note = browser.evaluate(session, "document.getElementById('video-note').textContent")
    assert note.startswith("1 video(s): 1 linked: over the 0 MB embedding budget")
    (played,) = browser.evaluate(session, f"{PLAY}('#videos [data-video]')")  # a linked file plays too
    assert played["error"] is None and played["width"] == 64
    assert browser.console_errors() == []


def test_leaderboard_html_in_chromium(tmp_path, browser):
    keys = grid("libero_spatial", 2, 5)
    write_run(tmp_path / "results" / "a", {k: True for k in keys})
    write_run(tmp_path / "results" / "b", {k: k[2] != 0 for k in keys}, policy_fp="bbbb", checkpoint="ckpt/b")
    _, _, files = write_leaderboard([tmp_path / "results"], tmp_path / "lb", ["html"])
    session = browser.open(files[0].as_uri())
    rows = browser.evaluate(session, "document.querySelectorAll('#table-1 tbody tr').length")
    published = browser.evaluate(session, "document.querySelectorAll('#published tbody tr').length")
    assert rows == 2 and published >= 7
    ranking = browser.evaluate(
        session, "[...document.querySelectorAll('#ranking-1 tbody tr')].map(r => r.textContent)"
    )
    assert len(ranking) == 2
    statement = browser.evaluate(session, "document.querySelector('.ranking-statement').textContent")
    assert statement.startswith("No checkpoint is shown best")  # 10 pairs cannot separate 100% from 80%
    assert browser.console_errors() == []


def test_console_errors_are_caught(tmp_path, browser):
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><script>console.error('bad'); undefinedFunction();</script></body></html>"
    )
    browser.open(page.as_uri())
    errors = browser.console_errors()
    assert len(errors) == 2 and "bad" in errors[0] and "undefinedFunction" in errors[1]
