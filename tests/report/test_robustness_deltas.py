"""Paired robustness deltas (issue 18 item 7): LIBERO-PRO and LIBERO-plus episodes against the base task's episode
of the same init state and seed in a plain LIBERO run of the same checkpoint, per perturbation dimension."""

from __future__ import annotations

import pandas as pd
import pytest

from evalkit.cli import main
from evalkit.core.errors import EvalkitError
from evalkit.report.compare import write_comparison
from evalkit.report.report import write_report
from evalkit.report.robustness_deltas import robustness_deltas
from evalkit.report.stats import PairedCounts, compare_paired
from evalkit.rundir.run import load_run
from evalkit.suites import registry
from tests.report.runs import grid, write_run

INITS = 5


def base_run(tmp_path, name="base", policy_fp="aaaa1111bbbb2222", **kwargs):
    return write_run(
        tmp_path / name, dict.fromkeys(grid("libero_goal", 10, INITS), True), policy_fp=policy_fp, **kwargs
    )


def swap_outcomes() -> dict:
    """LIBERO-PRO position swaps: tasks 0-4 fail from init states 0 and 1, the rest succeed."""
    return {key: not (key[1] < 5 and key[2] < 2) for key in grid("libero_goal_swap", 10, INITS)}


def test_libero_pro_episodes_pair_one_to_one_with_their_base_episodes(tmp_path):
    base = load_run(base_run(tmp_path))
    outcomes = swap_outcomes() | {
        ("libero_goal_swap", 9, 4, 7): "error",
        ("libero_spatial_swap", 0, 0, 7): True,
    }
    pro = load_run(write_run(tmp_path / "pro", outcomes))
    section = robustness_deltas(pro, base)
    (row,) = section.table.to_dict("records")
    assert (row["family"], row["dimension"]) == ("LIBERO-PRO", "position")
    assert row["perturbed episodes"] == row["base episodes"] == 49 and row["interval"] == "Newcombe paired"
    assert row["base %"] == 100.0 and row["drop pp"] == pytest.approx(-100 * 10 / 49, abs=0.05)
    c = compare_paired(PairedCounts(both=39, lost=10, gained=0, neither=0))
    assert row["95% interval"] == f"[{100 * c.diff_low:+.1f}, {100 * c.diff_high:+.1f}]"
    assert section.unpaired == {
        "the perturbed episode is an error": 1,
        "its base task is not in the base run": 1,  # libero_spatial was not run
    }
    assert section.notes == []  # LIBERO-PRO's suites keep the base suite's protocol


def test_liberoplus_variants_share_their_base_episode_as_one_block(tmp_path):
    (plus,) = registry.resolve("liberoplus_goal")
    bases = ("put_the_bowl_on_the_stove", "turn_on_the_stove")
    picked = {  # four variants per base task and dimension
        (d, b): [t for t in plus.tasks if t.tags["dimension"] == d and t.tags["base_task"] == b][:4]
        for d in ("camera", "robot")
        for b in bases
    }
    assert all(len(v) == 4 for v in picked.values())
    # camera variants fail, robot variants succeed
    outcomes = {
        ("liberoplus_goal", t.task_id, 0, 7): d == "robot" for (d, _), ts in picked.items() for t in ts
    }
    other = next(t for t in plus.tasks if t.tags["base_task"] == "open_the_middle_drawer_of_the_cabinet")
    # its base task is in the base run's suite, but the base run did not run its episode
    outcomes[("liberoplus_goal", other.task_id, 0, 7)] = True
    base_outcomes = {
        ("libero_goal", 1, 0, 7): True,
        ("libero_goal", 7, 0, 7): False,
    }  # bowl on stove, turn on
    base = load_run(write_run(tmp_path / "base", base_outcomes))
    section = robustness_deltas(load_run(write_run(tmp_path / "plus", outcomes)), base)
    rows = section.table.set_index("dimension")
    assert list(section.table["family"].unique()) == ["LIBERO-plus"]
    camera, robot = rows.loc["camera"], rows.loc["robot"]
    assert camera["base episodes"] == 2 and camera["perturbed episodes"] == 8
    assert camera["interval"] == "betting, per base episode"
    # per base episode: bowl on the stove 1 -> 0 and turn on the stove 0 -> 0 under camera changes; -> 1 under robot
    assert (camera["base %"], camera["perturbed %"], camera["drop pp"]) == (50.0, 0.0, -50.0)
    assert (robot["perturbed %"], robot["drop pp"]) == (100.0, 50.0)
    assert rows.loc["all", "perturbed episodes"] == 16 and rows.loc["all", "base episodes"] == 2
    low, high = (float(x) for x in camera["95% interval"].strip("[]").split(","))
    assert -100 <= low <= -50 <= high <= 100 and high - low > 50  # two blocks: an honest, wide interval
    assert section.unpaired == {"the base run has no episode of its base task at its init state and seed": 1}
    assert any(
        "liberoplus_goal runs under a protocol that differs from libero_goal's" in n for n in section.notes
    )


def test_report_base_flag_and_a_run_holding_both(tmp_path, capsys):
    base = base_run(tmp_path)
    pro = write_run(tmp_path / "pro", swap_outcomes())
    assert main(["report", str(pro), "--base", str(base), "--formats", "md,csv"]) == 0
    markdown = (pro / "report" / "report.md").read_text()
    assert "## Paired robustness deltas" in markdown and "same init state and seed" in markdown
    assert "given by --base" in markdown and "Every perturbed episode has a partner." in markdown
    assert len(pd.read_csv(pro / "report" / "robustness_deltas.csv")) == 1
    both = write_run(tmp_path / "both", swap_outcomes() | dict.fromkeys(grid("libero_goal", 10, INITS), True))
    files = write_report(both, formats=["md", "html"])
    assert "this run's own plain LIBERO suites" in files.markdown
    assert 'id="robustness-deltas"' in (files.out_dir / "report.html").read_text()
    assert "Paired robustness deltas" not in write_report(base, tmp_path / "r").markdown  # nothing perturbed
    capsys.readouterr()


def test_report_base_refuses_another_checkpoint_and_runs_that_cannot_pair(tmp_path, capsys):
    pro = write_run(tmp_path / "pro", swap_outcomes())
    for base, message in (
        (base_run(tmp_path, "other", policy_fp="cccc"), "paired robustness deltas need the same checkpoint"),
        (pro, "has no plain LIBERO task to pair perturbed episodes with"),
    ):
        code = main(["report", str(pro), "--base", str(base)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err
        assert not (pro / "report").exists()  # nothing written
    plain = base_run(tmp_path)
    with pytest.raises(EvalkitError, match="has no LIBERO-plus or LIBERO-PRO task"):
        write_report(plain, base_dir=plain)


def test_the_comparison_view_pairs_a_perturbed_run_with_a_plain_one(tmp_path):
    base, pro = base_run(tmp_path), write_run(tmp_path / "pro", swap_outcomes())
    comparison, markdown, _ = write_comparison([base, pro], tmp_path / "cmp")
    assert len(comparison.deltas) == 1
    assert "perturbed episodes against pi05 (a)" in markdown and "| LIBERO-PRO | position" in markdown
    other = base_run(tmp_path, "other", policy_fp="cccc")  # another checkpoint: no matched control
    comparison, markdown, _ = write_comparison([other, pro], tmp_path / "cmp2")
    assert comparison.deltas == [] and "Paired robustness deltas" not in markdown
