import pandas as pd
import pytest

from evalkit.core.errors import EvalkitError
from evalkit.report.leaderboard import build_leaderboard, write_leaderboard
from evalkit.report.published import PUBLISHED_LIBERO
from tests.report.runs import grid, write_run

SPATIAL, OBJECT = grid("libero_spatial", 10, 5), grid("libero_object", 10, 5)


def outcomes(keys, every: int):
    """Fail every `every`-th episode."""
    return {k: i % every != 0 for i, k in enumerate(keys)}


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    write_run(root / "a", outcomes(SPATIAL + OBJECT, 10), policy_fp="aaaa", checkpoint="ckpt/a")
    write_run(root / "b", outcomes(SPATIAL, 2), policy_fp="bbbb", checkpoint="ckpt/b")
    # the same checkpoint b measured on object in a second run: pooled into the same row
    write_run(root / "b_object", outcomes(OBJECT, 5), policy_fp="bbbb", checkpoint="ckpt/b")
    write_run(
        root / "nested" / "c",
        outcomes(SPATIAL, 4),
        policy_fp="cccc",
        checkpoint="ckpt/c",
        protocol_changes={"libero_spatial": {"max_steps": 280, "replan_steps": 10}},
    )
    return root


def test_runs_group_by_protocol_fingerprint(results):
    board = build_leaderboard([results])
    assert len(board.tables) == 2
    first, second = board.tables
    assert list(first.columns) == ["checkpoint", "libero_spatial", "libero_object", "average"]
    assert list(first["checkpoint"]) == ["pi05 @ ckpt/a [aaaa]", "pi05 @ ckpt/b [bbbb]"]  # best average first
    assert list(second["checkpoint"]) == ["pi05 @ ckpt/c [cccc]"]
    # table 2 names how its protocol differs
    assert board.differences[0] == []
    diff = board.differences[1][0]
    assert diff.startswith("libero_spatial:") and "max_steps: 280 (table 1: 220)" in diff
    assert "replan_steps: 10 (table 1: 5)" in diff


def test_cells_and_average(results):
    long = build_leaderboard([results]).long
    a = long[long["checkpoint"].str.contains("ckpt/a") & (long["suite"] == "libero_spatial")].iloc[0]
    assert (a.episodes, a.successes) == (50, 45)
    assert round(a.ci95_low_pct, 1) == 78.6 and round(a.ci95_high_pct, 1) == 95.7  # Wilson 45/50
    b = long[long["checkpoint"].str.contains("ckpt/b")].set_index("suite")
    assert b.loc["libero_spatial", "successes"] == 25 and b.loc["libero_object", "successes"] == 40
    assert b.loc["average", "success_pct"] == pytest.approx((50 + 80) / 2)  # mean of suite rates
    c = long[long["checkpoint"].str.contains("ckpt/c")]
    assert set(c["suite"]) == {"libero_spatial"}  # one suite: no average


def test_published_rows_are_separate(results, tmp_path):
    _, markdown, files = write_leaderboard([results], tmp_path / "lb", ["md", "csv", "html"])
    head, published = markdown.split("## Published reference numbers")
    assert "98.8" in published and "vla-eval" in published and "lerobot" in published
    assert "openpi" not in head.split("## Table 1")[1]  # no published row inside a measured table
    long = pd.read_csv(tmp_path / "lb" / "leaderboard.csv")
    assert not long["checkpoint"].str.contains("openpi|vla-eval|lerobot").any()
    pub = pd.read_csv(tmp_path / "lb" / "published.csv")
    assert len(pub) == len(PUBLISHED_LIBERO)
    assert pub.loc[0, "libero_spatial"] == 98.8 and pub.loc[0, "average"] == 96.85
    assert {f.name for f in files} == {
        "leaderboard.md",
        "leaderboard.csv",
        "published.csv",
        "leaderboard.html",
    }


def test_a_run_dir_itself_is_accepted(results):
    board = build_leaderboard([results / "nested" / "c"])
    assert len(board.tables) == 1 and list(board.tables[0]["checkpoint"]) == ["pi05 @ ckpt/c [cccc]"]


def test_empty_results_are_an_error(tmp_path):
    with pytest.raises(EvalkitError, match="no run directories"):
        build_leaderboard([tmp_path])
    with pytest.raises(EvalkitError, match="does not exist"):
        build_leaderboard([tmp_path / "nope"])
