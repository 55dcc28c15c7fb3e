"""The report's charts: nothing drawn where there is nothing to show, whole-episode ticks, labels that keep the
end of a task variant's name, the paired-difference chart."""

import re

import pandas as pd

from evalkit.report.plots import paired_differences, steps_histogram, task_success_bars

VARIANT = (
    "pick up the black bowl between the plate and the ramekin and place it on the plate view 0 0 100 0 0"
)


def episodes(steps: list[int], termination: str = "success") -> pd.DataFrame:
    return pd.DataFrame({"suite": "libero_spatial", "steps": steps, "termination": termination})


def svg_texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_no_chart_without_data():
    assert steps_histogram(episodes([220, 220], "max_steps")) is None
    assert task_success_bars(pd.DataFrame({"suite": ["s"], "task": ["t"], "episodes": [0]})) is None
    assert paired_differences(pd.DataFrame()) is None


def test_steps_histogram_counts_whole_episodes():
    svg = steps_histogram(episodes([60, 75, 90]))
    ticks = re.findall(r'<g id="ytick_\d+">.*?<text[^>]*>([^<]*)</text>', svg, flags=re.S)
    assert ticks and all(t.isdigit() for t in ticks), ticks  # 0.0, 0.2, ... before the fix


def test_task_labels_keep_the_variant_suffix():
    tasks = pd.DataFrame(
        {
            "suite": "liberoplus_spatial",
            "task": [f"{VARIANT} initstate {i}" for i in (1, 11, 101)],
            "episodes": 5,
            "success_pct": [40.0, 60.0, 80.0],
            "ci95_low_pct": [10.0, 20.0, 40.0],
            "ci95_high_pct": [80.0, 90.0, 95.0],
        }
    )
    texts = svg_texts(task_success_bars(tasks))
    for i in (1, 11, 101):
        assert any(t.endswith(f"initstate {i}") for t in texts), texts


def test_paired_differences_draw_one_series_per_run():
    rows = pd.DataFrame(
        {
            "label": ["task 0", "task 1", "all paired episodes"] * 2,
            "series": ["v2"] * 3 + ["v3"] * 3,
            "diff_pp": [-10.0, 0.0, -5.0, 5.0, 0.0, 2.5],
            "low_pp": [-30.0, -20.0, -15.0, -10.0, -20.0, -5.0],
            "high_pp": [5.0, 20.0, 3.0, 25.0, 20.0, 10.0],
        }
    )
    svg = paired_differences(rows)
    texts = svg_texts(svg)
    assert "v2" in texts and "v3" in texts and "all paired episodes" in texts
    assert svg.count("<path") > 12  # markers and whiskers of 6 intervals
