"""The watch report from real run directories (written by the runner's own writers, `tests.report.runs`): the curve
with Wilson intervals, the selected checkpoint next to its held-out number, the gate's verdict per checkpoint, the
checkpoints that failed and those still being written."""

from __future__ import annotations

import pandas as pd
import pytest

from evalkit.report.stats import wilson
from evalkit.suites import registry
from evalkit.watch.gate import Gate
from evalkit.watch.report import collect, write_watch_report
from evalkit.watch.state import CheckpointRecord, HeldoutRecord, WatchState, save_state
from tests.report.chromium import Browser
from tests.report.runs import grid, write_run
from tests.system import need_chromium

SELECTION = grid("droid_demo", tasks=2, inits=10)  # 20 episodes per checkpoint
HELDOUT = grid("droid_demo", tasks=2, inits=20)[10:20] + grid("droid_demo", tasks=2, inits=20)[30:40]
# successes out of 20 per step: 2000 is the best
RATES = {1000: 4, 2000: 14, 3000: 9}
HELDOUT_SUCCESSES = 8
GATE = {"alpha": 0.05, "max_drop": 5.0, "min_episodes": 10}


def outcomes(keys, successes):
    return {key: i < successes for i, key in enumerate(keys)}


@pytest.fixture
def watch(tmp_path):
    """A watch directory as a watch leaves it: three evaluated checkpoints, a failed one, one being written, and the
    selected one's held-out run; plus a baseline run (15/20) for the gate."""
    watch_dir = tmp_path / "watch"
    state = WatchState(str(tmp_path / "train"), "droid_demo")
    for step, k in RATES.items():
        run = write_run(
            watch_dir / f"step_{step:09d}",
            outcomes(SELECTION, k),
            policy_fp=f"fp{step}",
            checkpoint=f"/train/{step}",
        )
        state.checkpoints[f"/train/{step}"] = CheckpointRecord(
            step, f"/train/{step}", "openpi_pytorch", str(run), "done", successes=k, episodes=20
        )
    state.checkpoints["/train/4000"] = CheckpointRecord(
        4000, "/train/4000", "openpi_pytorch", str(watch_dir / "step_000004000"), "failed", "no norm stats"
    )
    state.waiting["/train/tmp_5000"] = "written under a temporary name"
    heldout = write_run(
        watch_dir / "heldout" / "step_000002000", outcomes(HELDOUT, HELDOUT_SUCCESSES), policy_fp="fp2000"
    )
    state.heldout["2000"] = HeldoutRecord(2000, str(heldout), "droid_demo: init states 10..19", "done")
    save_state(watch_dir, state)
    baseline = write_run(tmp_path / "baseline", outcomes(SELECTION, 15), policy_fp="base", checkpoint="/base")
    gate = Gate.open(baseline, GATE, registry.resolve("droid_demo"))
    return watch_dir, state, gate


def test_curve_has_each_checkpoint_with_its_wilson_interval(watch):
    watch_dir, state, gate = watch
    write_watch_report(watch_dir, state, gate)
    curve = pd.read_csv(watch_dir / "report" / "curve.csv")
    assert list(curve["step"]) == [1000, 2000, 3000] and set(curve["scope"]) == {"droid_demo"}
    for _, row in curve.iterrows():
        expected = wilson(RATES[row["step"]], 20)
        assert row["success_pct"] == pytest.approx(100 * expected.rate)
        assert row["ci95_low_pct"] == pytest.approx(100 * expected.low, abs=0.01)
        assert row["ci95_high_pct"] == pytest.approx(100 * expected.high, abs=0.01)


def test_selected_checkpoint_shows_both_numbers(watch):
    watch_dir, state, gate = watch
    write_watch_report(watch_dir, state, gate)
    markdown = (watch_dir / "report" / "report.md").read_text()
    assert (
        "Selected: step 2,000 (/train/2000), the highest success rate of 3 complete evaluation(s)" in markdown
    )
    assert "On the episodes it was selected on: 70.0% [48.1, 85.5] (14/20, Wilson 95%)" in markdown
    assert "On held-out episodes: 40.0% [21.9, 61.3] (8/20, Wilson 95%)" in markdown
    assert "Selected minus held-out: +30.0 percentage points" in markdown
    assert "droid_demo: init states 10..19" in markdown


def test_gate_verdict_per_checkpoint(watch):
    """Against a 15/20 baseline on the same episodes: 4/20 loses 11 pairs and gains none, a significant drop;
    14/20 and 9/20 are judged too, each with regress's own line."""
    watch_dir, state, gate = watch
    report = collect(watch_dir, state, gate)
    verdicts = {e.record.step: e.gate.verdict for e in report.evaluated}
    assert verdicts == {1000: "FAIL", 2000: "INCONCLUSIVE", 3000: "FAIL"}
    write_watch_report(watch_dir, state, gate)
    text = (watch_dir / "report" / "report.md").read_text()
    assert "step 1,000: FAIL: significant drop: overall (droid_demo) 75.0% (15/20) -&gt; 20.0% (4/20)" in text


def test_failed_and_waiting_checkpoints_are_listed(watch):
    watch_dir, state, _ = watch
    write_watch_report(watch_dir, state)
    markdown = (watch_dir / "report" / "report.md").read_text()
    assert "| /train/4000" in markdown and "no norm stats" in markdown
    assert "/train/tmp\\_5000" in markdown or "/train/tmp_5000" in markdown
    assert "written under a temporary name" in markdown
    assert "3 evaluated in full, 0 incomplete, 1 failed, 0 in progress, 1 not complete yet" in markdown


def test_no_selection_before_a_complete_evaluation(tmp_path):
    state = WatchState(str(tmp_path / "train"), "droid_demo")
    state.checkpoints["/train/1000"] = CheckpointRecord(1000, "/train/1000", "lerobot", "", "failed", "bad")
    write_watch_report(tmp_path / "watch", state)
    markdown = (tmp_path / "watch" / "report" / "report.md").read_text()
    assert "nothing to select" in markdown
    assert (
        "No checkpoint has been evaluated yet" in (tmp_path / "watch" / "report" / "report.html").read_text()
    )


@pytest.mark.slow
def test_html_curve_in_a_browser(watch, tmp_path):
    """The page renders without console errors; the curve's SVG holds a point per checkpoint and the held-out one."""
    need_chromium()
    watch_dir, state, gate = watch
    link = write_watch_report(watch_dir, state, gate)
    browser = Browser(tmp_path / "chromium-profile")
    try:
        session = browser.open(link)
        legend = browser.evaluate(
            session, "[...document.querySelectorAll('#plot-curve svg text')].map(t => t.textContent)"
        )
        assert {"droid_demo", "selected checkpoint", "held-out re-evaluation", "training step"} <= set(legend)
        selection = browser.evaluate(session, "document.getElementById('selection').textContent")
        assert "On held-out episodes: 40.0%" in selection
        rows = browser.evaluate(session, "document.querySelectorAll('#checkpoints tbody tr').length")
        assert rows == 3
        assert browser.console_errors() == []
    finally:
        browser.close()


def test_every_held_out_run_is_listed(watch, tmp_path):
    """A checkpoint selected earlier (before a better one came) keeps its held-out run in the report."""
    watch_dir, state, _ = watch
    earlier = write_run(watch_dir / "heldout" / "step_000001000", outcomes(HELDOUT, 3), policy_fp="fp1000")
    state.heldout["1000"] = HeldoutRecord(1000, str(earlier), "droid_demo: init states 10..19", "done")
    write_watch_report(watch_dir, state)
    table = (watch_dir / "report" / "report.md").read_text().split("### Every held-out re-evaluation")[1]
    lines = [line for line in table.splitlines() if line.startswith("|")][2:4]
    assert [cell.strip() for cell in lines[0].split("|")[1:6]] == [
        "1000",
        "20.0",
        "15.0",
        "[5.2, 36.0]",
        "20",
    ]
    assert [cell.strip() for cell in lines[1].split("|")[1:3]] == ["2000", "70.0"]
