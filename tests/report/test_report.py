import numpy as np
import pandas as pd
import pytest

from evalkit.core.errors import EvalkitError
from evalkit.report.report import parse_formats, write_report
from tests.report.runs import grid, write_run

KEYS = grid("libero_spatial", 3, 4) + grid("libero_object", 2, 4)


def write_mp4(path, frames: int = 12, size: int = 64, shade: int = 0) -> str:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=10, codec="libx264", macro_block_size=1) as writer:
        for i in range(frames):
            frame = np.zeros((size, size, 3), np.uint8)
            frame[:, : (i + 1) * size // frames] = (200, 40 + shade, 40)
            writer.append_data(frame)
    return str(path)


# writes mp4s with ffmpeg (a subprocess): the tests using it are marked slow
@pytest.fixture
def run_dir(tmp_path):
    outcomes = {k: (i % 3 != 0) for i, k in enumerate(KEYS)}  # 0, 3, 6, ... fail
    outcomes[KEYS[5]] = "error"
    videos = {}
    for i, key in enumerate(KEYS[:3]):
        rel = f"videos/{key[0]}/task{key[1]}_init{key[2]}.mp4"
        write_mp4(tmp_path / "run" / rel, shade=40 * i)
        videos[key] = rel
    return write_run(tmp_path / "run", outcomes, videos=videos, progress={"reached": True, "lifted": False})


@pytest.mark.slow
def test_markdown_numbers(run_dir, tmp_path):
    result = write_report(run_dir, tmp_path / "out", ["md", "csv", "parquet"])
    md = result.markdown
    # spatial: 12 episodes, one error; successes among the 11 others: indices 1,2,4,7,8,10,11 -> 7
    assert "| libero_spatial |       3 |         11 |           7 |" in md
    # object: indices 12..19, failing 12, 15, 18 -> 5/8
    assert "| libero_object  |       2 |          8 |           5 |        62.5 | [30.6, 86.3]" in md
    assert "(mean of suite rates, as openpi reports it): 63.1%" in md  # (7/11 + 5/8) / 2
    assert "**Warning:** 1 episode(s) ended in an error" in md
    assert "RuntimeError: simulator exploded" in md
    assert "## Partial progress" in md and "lifted" in md
    assert "## Provenance" in md and "git commit" in md
    assert (tmp_path / "out" / "report.md").read_text() == md


@pytest.mark.slow
def test_tables_round_trip_through_csv_and_parquet(run_dir, tmp_path):
    write_report(run_dir, tmp_path / "out", ["csv", "parquet"])
    for name in ("suites", "tasks", "episodes", "terminations", "latency", "steps", "errors", "progress"):
        a = pd.read_csv(tmp_path / "out" / f"{name}.csv")
        b = pd.read_parquet(tmp_path / "out" / f"{name}.parquet")
        assert len(a) == len(b) > 0, name
    suites = pd.read_parquet(tmp_path / "out" / "suites.parquet").set_index("suite")
    assert suites.loc["libero_spatial", "errors"] == 1
    assert suites.loc["libero_object", "successes"] == 5
    episodes = pd.read_parquet(tmp_path / "out" / "episodes.parquet")
    assert len(episodes) == len(KEYS)
    terms = pd.read_csv(tmp_path / "out" / "terminations.csv").set_index("suite")
    assert terms.loc["libero_spatial", "error"] == 1 and terms.loc["libero_spatial", "total"] == 12
    latency = pd.read_csv(tmp_path / "out" / "latency.csv")
    assert (latency["mean_ms"] > 10).all() and (latency["max_ms"] <= 16).all()


@pytest.mark.slow
def test_video_budget_links_the_rest(run_dir, tmp_path):
    size = (run_dir / "videos/libero_spatial/task0_init0.mp4").stat().st_size
    write_report(run_dir, tmp_path / "out", ["html"], embed_budget=size + 10)
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:video/mp4;base64,") == 1
    assert 'href="../run/videos/libero_spatial/task0_init1.mp4"' in html
    assert "libero_spatial task 0 · init 0 · seed 7 · failure" in html


@pytest.mark.slow
def test_default_out_dir_and_bad_input(run_dir, tmp_path):
    result = write_report(run_dir, formats=["md"])
    assert result.out_dir == run_dir / "report" and (run_dir / "report" / "report.md").exists()
    with pytest.raises(EvalkitError, match="unknown report format"):
        parse_formats("md,pdf")
    with pytest.raises(EvalkitError, match="no manifest.json"):
        (run_dir / "manifest.json").unlink()
        write_report(run_dir)


def test_policy_line_and_readable_headers(tmp_path):
    """Issue 22 item 8: `policy: oracle [none]` and snake_case headers (median_steps_to_success, median_of_p50_ms,
    worst_p99_ms) in the report."""
    keys = grid("droid_demo", 2, 2)
    run = write_run(
        tmp_path / "run", {k: k[2] == 0 for k in keys}, policy="oracle", policy_fp="none", checkpoint=None
    )
    md = write_report(run, tmp_path / "out", ["md", "csv"]).markdown
    assert "- policy: oracle (no checkpoint)\n" in md and "[none]" not in md
    for header in ("median steps to success", "median episode p50 (ms)", "worst episode p99 (ms)", "task id"):
        assert f" {header} " in md, header
    for raw in ("median_steps_to_success", "median_of_p50_ms", "worst_p99_ms", "task_id"):
        assert raw not in md, raw
    assert (
        "median_of_p50_ms" in pd.read_csv(tmp_path / "out" / "latency.csv").columns
    )  # data files keep names
    pi05 = write_run(tmp_path / "pi05", {k: True for k in keys}, checkpoint="ckpts/v7")
    md = write_report(pi05, tmp_path / "out2", ["md"]).markdown
    assert "- policy: pi05, checkpoint ckpts/v7 (fingerprint aaaa1111bbbb)\n" in md


def test_progress_is_a_second_statistic_per_task_whatever_the_number_of_flags(tmp_path):
    """LIBERO-10 records about 20 distinct goal predicates across its tasks: one column each would not fit. The
    table keeps one row per task: success, mean progress (each episode's mean of its flags) and its own flags."""
    keys = grid("libero_10", 10, 4)

    def goal(key):
        suite, task, init, seed = key
        return {f"(in object_{task}_{j} basket_1)": init > j for j in range(2)}  # 20 distinct keys in all

    run = write_run(tmp_path / "run", {k: k[2] == 3 for k in keys}, progress_of=goal)
    result = write_report(run, tmp_path / "out", ["md", "csv"])
    table = pd.read_csv(tmp_path / "out" / "progress.csv")
    assert list(table.columns) == [
        "suite",
        "task_id",
        "episodes",
        "success_pct",
        "mean_progress_pct",
        "stages_reached_pct",
    ]
    # init 0: 0 of 2 predicates, init 1: 1/2, inits 2 and 3: 2/2 -> mean 62.5%; success only at init 3: 25%
    assert table["mean_progress_pct"].tolist() == [62.5] * 10 and table["success_pct"].tolist() == [25.0] * 10
    assert table.loc[4, "stages_reached_pct"] == "(in object_4_0 basket_1) 75 · (in object_4_1 basket_1) 50"
    stages = pd.read_csv(tmp_path / "out" / "progress_stages.csv")
    assert len(stages) == 20 and stages.columns[2:].tolist() == ["stage", "episodes", "reached_pct"]
    assert "libero_10: success 25.0%, mean progress 62.5% (40 episodes)" in result.markdown
    assert "## Partial progress: a second statistic beside success" in result.markdown
