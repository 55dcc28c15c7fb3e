"""What a reader sees, checked in a real headless Chromium: the report's title, instruction labels, stage order and
posters, and the side-by-side comparison of two runs."""

import numpy as np
import pytest

from evalkit.report.compare import write_comparison
from evalkit.report.report import write_report
from evalkit.rundir.manifest import read_manifest
from evalkit.suites import registry
from tests.report.chromium import Browser
from tests.report.runs import grid, write_run
from tests.report.test_html_chromium import PLAY

# slow: Chromium
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("chromium")]

KEYS = grid("droid_demo", 4, 2)
(DEMO,) = registry.resolve("droid_demo")
INSTRUCTIONS = [t.language for t in DEMO.tasks]

# Pixel statistics of <img> thumbnails (a video's poster), drawn into a canvas: a blank (flat) picture has std ~0.
IMAGE_STD = """
(async (selector) => {
  const out = [];
  for (const el of document.querySelectorAll(selector)) {
    const img = new Image();
    img.src = el.src;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    let sum = 0, sq = 0, n = 0;
    for (let i = Math.floor(px.length / 2 / 4) * 4; i < px.length; i += 4) {  // lower half: below the caption
      const v = (px[i] + px[i + 1] + px[i + 2]) / 3; sum += v; sq += v * v; n++;
    }
    const mean = sum / n;
    out.push(Math.sqrt(sq / n - mean * mean));
  }
  return out;
})
"""


def write_blank_start_mp4(path, blank_frames: int = 6, frames: int = 20) -> str:
    """A video whose first frames are flat grey (as renders can start), then a picture."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with imageio.get_writer(path, fps=10, codec="libx264", macro_block_size=1) as writer:
        for i in range(frames):
            if i < blank_frames:
                frame = np.full((96, 160, 3), 128, np.uint8)
            else:
                frame = np.zeros((96, 160, 3), np.uint8)
                frame[:, :80] = (200, 40, 40)
                frame[48:, 80:] = rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)
            writer.append_data(frame)
    return str(path)


def stages(key):
    if key[1] == 3:  # close the drawer: an articulation task
        return {"reached": True, "moved": key[2] == 0, "success": key[2] == 0}
    return {"reached": True, "grasped": True, "lifted": key[2] == 0, "success": False}


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "chromium-profile")
    yield b
    b.close()


def test_report_title_labels_stage_order_and_posters(tmp_path, browser):
    rel = "videos/droid_demo/task0_init0.mp4"
    write_blank_start_mp4(tmp_path / "run" / rel)
    run = write_run(
        tmp_path / "run",
        {k: k[1] == 3 and k[2] == 0 for k in KEYS},
        videos={KEYS[0]: rel},
        progress_of=stages,
        checkpoint="/ckpts/pi05_droid",
    )
    html = write_report(run, tmp_path / "report", ["html"]).out_dir / "report.html"
    session = browser.open(html.as_uri())

    title = browser.evaluate(session, "[document.title, document.getElementById('title').textContent]")
    assert title[1] == "pi05 (pi05_droid) on droid_demo, 2026-11-24" and title[1] in title[0]
    provenance = browser.evaluate(session, "document.getElementById('provenance').textContent")
    assert f"run: {read_manifest(run).run_id}" in provenance  # the id is in the details, not the title

    labels = browser.evaluate(
        session, "[...document.querySelectorAll('#plot-task-success svg text')].map(t => t.textContent)"
    )
    text = " ".join(labels)
    for instruction in INSTRUCTIONS:
        assert all(word in text for word in instruction.split())
    assert "#0" not in text and not any(label.startswith("droid_demo") for label in labels)

    header = browser.evaluate(
        session, "[...document.querySelectorAll('#progress th')].map(t => t.textContent)"
    )
    assert header == [
        "suite",
        "task id",
        "episodes",
        "success %",
        "mean progress %",
        "stages reached (% of episodes)",
    ]
    drawer = browser.evaluate(
        session, "[...document.querySelectorAll('#progress tbody tr')][3].textContent.replace(/\\s+/g, ' ')"
    )
    # a drawer has no grasp stage
    assert "reached" in drawer and "moved" in drawer and "grasped" not in drawer

    assert browser.evaluate(session, "document.querySelectorAll('#videos img.thumb').length") == 1
    (std,) = browser.evaluate(session, f"{IMAGE_STD}('#videos img.thumb')")
    assert std > 20  # the picture, not the grey first frames
    caption = browser.evaluate(session, "document.querySelector('#videos .tile .instruction').textContent")
    assert caption == INSTRUCTIONS[0]
    policy = browser.evaluate(session, "document.querySelector('#headline li').textContent")
    assert (
        policy == "policy: pi05, checkpoint /ckpts/pi05_droid (fingerprint aaaa1111bbbb)"
    )  # not "pi05 [aaaa…]"
    assert browser.console_errors() == []


def test_comparison_side_by_side(tmp_path, browser):
    ref_outcomes = {k: True for k in KEYS}
    new_outcomes = {k: k[1] != 1 for k in KEYS}  # the candidate loses task 1 (both episodes)
    videos = {k: f"videos/droid_demo/t{k[1]}_i{k[2]}.mp4" for k in KEYS if k[1] == 1}
    for root in ("ref", "new"):
        for rel in videos.values():
            write_blank_start_mp4(tmp_path / root / rel)
    ref = write_run(tmp_path / "ref", ref_outcomes, videos=videos, checkpoint="ckpts/v1")
    new = write_run(tmp_path / "new", new_outcomes, videos=videos, checkpoint="ckpts/v2", policy_fp="bbbb")
    _, markdown, files = write_comparison([ref, new], tmp_path / "cmp")
    assert "| all" in markdown
    session = browser.open(files[-1].as_uri())

    title = browser.evaluate(session, "document.getElementById('title').textContent")
    assert title == "pi05 (v1) vs pi05 (v2) on droid_demo, 2026-11-24"
    header = browser.evaluate(session, "[...document.querySelectorAll('#rates th')].map(t => t.textContent)")
    assert header == ["suite", "task id", "task", "pi05 (v1)", "pi05 (v2)"]
    rates = browser.evaluate(
        session, "[...document.querySelectorAll('#rates tbody tr')].map(r => r.lastElementChild.textContent)"
    )
    assert rates[1].startswith("0.0% [0.0, 65.8] (0/2)") and rates[-1].startswith("75.0%")
    paired = browser.evaluate(
        session, "[...document.querySelectorAll('#paired-0 tbody tr')].map(r => r.textContent.trim())"
    )
    assert len(paired) == 5 and "-25.0" in paired[-1]  # 4 tasks and the overall row

    chart = browser.evaluate(
        session,
        "[document.querySelectorAll('#plot-paired svg path').length, "
        "[...document.querySelectorAll('#plot-paired svg text')].map(t => t.textContent).join(' ')]",
    )
    assert (
        chart[0] > 10 and "all paired episodes" in chart[1] and "pi05 (v2)" in chart[1]
    )  # markers, whiskers

    pairs = browser.evaluate(
        session,
        """[...document.querySelectorAll('.pair')].map(p => ({
            episode: p.dataset.episode,
            sides: [...p.querySelectorAll('.run-label')].map(l => l.textContent),
            thumbs: p.querySelectorAll('img.thumb').length,
            left: p.querySelector('.side-by-side > .tile:first-child').getBoundingClientRect().left,
            right: p.querySelector('.side-by-side > .tile:last-child').getBoundingClientRect().left,
            top: [...p.querySelectorAll('.side-by-side > .tile')].map(v => v.getBoundingClientRect().top),
        }))""",
    )
    assert [p["episode"] for p in pairs] == ["droid_demo/1/0/7", "droid_demo/1/1/7"]
    for p in pairs:
        assert p["sides"] == ["pi05 (v1): success", "pi05 (v2): failure"]
        assert (
            p["thumbs"] == 2 and p["left"] < p["right"] and p["top"][0] == p["top"][1]
        )  # next to each other
    stds = browser.evaluate(session, f"{IMAGE_STD}('.pair img.thumb')")
    assert len(stds) == 4 and min(stds) > 20
    played = browser.evaluate(session, f"{PLAY}('.pair [data-video]')")  # both runs' videos of the episode
    assert len(played) == 2 and all(v["error"] is None and v["readyState"] >= 1 for v in played)
    labels = browser.evaluate(
        session, "[...document.querySelectorAll('#player figcaption')].map(f => f.textContent)"
    )
    assert labels[0].startswith("pi05 (v1) · droid_demo task 1") and labels[1].startswith("pi05 (v2) · ")
    assert browser.console_errors() == []
