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


def test_two_runs_of_one_checkpoint_and_protocol_are_named_not_silently_merged(tmp_path, capsys):
    """Issue 22 item 6: two runs of the same policy and protocol became one row without a word."""
    from evalkit.cli import main

    root = tmp_path / "results"
    write_run(root / "old", outcomes(SPATIAL, 2), policy_fp="aaaa", created_at="2026-11-20T00:00:00+00:00")
    write_run(root / "new", outcomes(SPATIAL, 10), policy_fp="aaaa", created_at="2026-11-24T00:00:00+00:00")
    board = build_leaderboard([root])
    (row,) = board.long.itertuples()
    assert (row.episodes, row.successes) == (50, 45)  # the newest run's outcomes, each episode once
    (note,) = board.duplicates[0]
    new_id = next(run.run_id for run, _ in board.boards[0].units if run.path.name == "new")
    assert note.startswith("pi05 @ ckpt/a [aaaa] on libero_spatial: 50 episode(s) were measured by 2 runs")
    assert note.endswith(f"with the newest run's outcome ({new_id}, new)")
    assert main(["leaderboard", str(root)]) == 0
    out = capsys.readouterr().out
    assert "Runs that measured the same episodes:" in out and "measured by 2 runs" in out


def test_leaderboard_writes_html_and_markdown_by_default_with_a_link(tmp_path, capsys, monkeypatch):
    """Issue 22 item 6: `evalkit leaderboard` wrote no file and no link unless --out was given."""
    from evalkit.cli import main

    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "results" / "a", outcomes(SPATIAL, 10), policy_fp="aaaa")
    assert main(["leaderboard"]) == 0
    page = tmp_path / "results" / "leaderboard" / "leaderboard.html"
    assert page.is_file() and (page.parent / "leaderboard.md").is_file()
    assert capsys.readouterr().out.rstrip().endswith(f"leaderboard: {page.resolve().as_uri()}")
    assert main(["leaderboard", "results/a"]) == 0  # a run directory itself: written beside it
    assert capsys.readouterr().out.rstrip().endswith(f"leaderboard: {page.resolve().as_uri()}")


def test_best_is_said_only_when_the_paired_data_support_it(tmp_path):
    """Issue 18 item 6: a paired ranking with a confidence set on each rank."""
    keys = grid("libero_spatial", 10, 20)  # 200 paired episodes
    root = tmp_path / "results"
    write_run(root / "v5", {k: i % 2 == 0 for i, k in enumerate(keys)}, policy_fp="v5", checkpoint="ckpt/v5")
    write_run(root / "v6", {k: i % 10 != 0 for i, k in enumerate(keys)}, policy_fp="v6", checkpoint="ckpt/v6")
    write_run(root / "v7", {k: i % 12 != 0 for i, k in enumerate(keys)}, policy_fp="v7", checkpoint="ckpt/v7")
    (ranking,) = build_leaderboard([root]).rankings
    sets = dict(zip(ranking.table["checkpoint"], ranking.table["rank (95% set)"], strict=True))
    # v7 (91.5%) and v6 (90%) split their 29 discordant episodes 16 to 13: not separated; both beat v5 (50%)
    assert sets == {"pi05 @ ckpt/v7 [v7]": "1–2", "pi05 @ ckpt/v6 [v6]": "1–2", "pi05 @ ckpt/v5 [v5]": "3"}
    assert ranking.statement.startswith("No checkpoint is shown best at 95% confidence")
    write_run(root / "v8", dict.fromkeys(keys, True), policy_fp="v8", checkpoint="ckpt/v8")
    (ranking,) = build_leaderboard([root]).rankings
    assert ranking.table["rank (95% set)"].iloc[0] == "1" and ranking.table["checkpoint"].iloc[0].endswith(
        "[v8]"
    )
    assert ranking.statement.startswith("Best: pi05 @ ckpt/v8 [v8]: its rank is 1 with 95% confidence")
    markdown = write_leaderboard([root], tmp_path / "lb", ["md"])[1]
    assert "### Paired ranking" in markdown and "Guarantee: if episodes are independent draws" in markdown


def test_no_ranking_without_shared_episodes(tmp_path):
    root = tmp_path / "results"
    write_run(root / "a", outcomes(SPATIAL[:25], 2), policy_fp="aaaa")
    write_run(root / "b", outcomes(SPATIAL[25:], 2), policy_fp="bbbb", checkpoint="ckpt/b")
    (ranking,) = build_leaderboard([root]).rankings
    assert ranking.table.empty and ranking.statement.startswith(
        "No paired ranking: the 2 checkpoints finished only 0"
    )
