"""The LIBERO-plus robustness section, from a real (tiny) run: one variant per offline-runnable dimension of
LIBERO-Object, zero policy, spawned env workers (which import LIBERO-plus; this process never does)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from evalkit.report.report import write_report
from evalkit.report.robustness import PUBLISHED_PI05, robustness_section
from evalkit.rundir.run import load_run
from evalkit.runner.config import EvalConfig
from evalkit.runner.evaluate import evaluate
from evalkit.suites.liberoplus.catalog import suite_variants
from tests.report.chromium import Browser

SUITE = "liberoplus_object"


def _pick() -> dict[str, int]:
    """First runnable variant per dimension, noise as fog (no ImageMagick needed), layout with a level."""
    picked: dict[str, int] = {}
    for v in suite_variants("libero_object"):
        d = v.info.dimension
        if not v.runnable or d in picked:
            continue
        if d == "noise" and v.info.param["noise_type"] != "fog":
            continue
        if d == "layout" and v.info.level is None:
            continue
        picked[d] = v.task_id
    return picked


# a LIBERO-plus run in spawned env workers: the tests using it are marked slow
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    picked = _pick()
    assert set(picked) == {"camera", "robot", "language", "background", "noise", "layout"}
    out = tmp_path_factory.mktemp("lplus") / "run"
    config = EvalConfig(
        suite=SUITE,
        policy="zero",
        out=out,
        tasks=tuple(sorted(picked.values())),
        max_steps=3,
        workers=1,
        protocol="liberoplus_clean",
    )
    return evaluate(config, progress=False, command=["test"])


@pytest.mark.slow
def test_section_by_dimension_and_level(run_dir) -> None:
    run = load_run(run_dir)
    assert len(run.usable) == 6 and not run.errors.size  # real episodes, none failed to run
    assert not run.usable["task"].str.contains(" view | noise | level").any()  # clean prompts
    section = robustness_section(run)
    dims = section.by_dimension.set_index("dimension")
    for d in ("camera", "robot", "language", "background", "noise", "layout"):
        assert dims.loc[d, "variants"] == 1 and dims.loc[d, "successes"] == 0
        assert dims.loc[d, "ci95_low_pct"] == 0.0 and dims.loc[d, "ci95_high_pct"] > 50  # Wilson, n = 1
    assert dims.loc["light", "variants"] == 0 and math.isnan(dims.loc["light", "success_pct"])
    assert dims.loc["overall", "variants"] == 6
    assert dims["published_pi05_pct"].to_dict() == PUBLISHED_PI05
    assert set(section.by_level["dimension"]) == {"noise", "layout"}


@pytest.mark.slow
def test_report_files_show_the_section(run_dir) -> None:
    files = write_report(run_dir, formats=["md", "csv", "html"])
    assert "## LIBERO-plus robustness" in files.markdown and "pi05 published" in files.markdown
    table = pd.read_csv(files.out_dir / "robustness_dimensions.csv")
    assert list(table["dimension"])[-1] == "overall"
    html = (files.out_dir / "report.html").read_text()
    assert 'id="robustness-dimensions"' in html and 'id="plot-robustness-levels"' in html and "<svg" in html


@pytest.mark.slow
def test_other_runs_have_no_section(tmp_path) -> None:
    run = load_run(
        evaluate(
            EvalConfig(
                suite="droid_demo", policy="zero", out=tmp_path / "d", tasks=(0,), max_steps=2, workers=1
            ),
            progress=False,
            command=["test"],
        )
    )
    assert robustness_section(run) is None


@pytest.mark.slow
@pytest.mark.usefixtures("chromium")
def test_section_in_chromium(run_dir, tmp_path) -> None:
    files = write_report(run_dir, tmp_path / "report", formats=["html"])
    browser = Browser(tmp_path / "chromium-profile")
    try:
        session = browser.open((files.out_dir / "report.html").as_uri())
        rows = browser.evaluate(
            session, "document.querySelectorAll('#robustness-dimensions tbody tr').length"
        )
        marks = browser.evaluate(
            session, "document.querySelectorAll('#plot-robustness-levels svg path').length"
        )
        assert rows == 8  # seven dimensions + overall
        assert marks > 5  # level lines, whiskers and published guides drawn
        assert browser.console_errors() == []
    finally:
        browser.close()


def test_no_level_chart_without_a_leveled_variant(tmp_path):
    """Issue 22 item 8: an empty "no variant with a level was run" chart was drawn; now a sentence says so."""
    from evalkit.report import robustness
    from tests.report.runs import write_run

    camera = next(v.task_id for v in suite_variants("libero_object") if v.info.dimension == "camera")
    run = load_run(write_run(tmp_path / "run", {(SUITE, camera, 0, 7): True, (SUITE, camera, 1, 7): False}))
    section = robustness_section(run)
    assert section is not None and section.by_level.empty
    assert robustness.level_plot(section) is None
    html = robustness.html(section)
    assert "<svg" not in html and "No variant with a level was run." in html
