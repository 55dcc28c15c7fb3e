"""`evalkit suites`: one line per suite (the ones that cannot run hidden and counted, `--all` for everything), and
`evalkit suites NAME` in full: protocol, availability by reason, tasks with their tags, filters, `--ids` for
`evalkit eval --tasks`. Every line fits the terminal."""

from __future__ import annotations

import re

import pytest

from evalkit.cli import build_parser, main
from evalkit.core.errors import EvalkitError
from evalkit.suites import cli, registry
from evalkit.suites.liberoplus.noise import motion_blur_unavailable


def run(capsys, monkeypatch, *argv: str, columns: int | None = 100) -> list[str]:
    """`evalkit suites ...`'s stdout lines, on a terminal `columns` wide (None: piped, no width)."""
    monkeypatch.setattr(cli, "terminal_width", lambda: columns or 0)
    assert main(["suites", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    if columns is not None:
        assert all(len(line) <= columns for line in lines), max(lines, key=len)
    return lines


def table(lines: list[str]) -> list[list[str]]:
    """The rows of the tasks' table, split into cells (instructions split too)."""
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["ID"])
    return [line.split() for line in lines[header + 1 :]]


def names(lines: list[str]) -> list[str]:
    table = lines[1 : lines.index("")]
    return [line.split()[0] for line in table]


@pytest.mark.parametrize("columns", [80, 120])
def test_one_line_per_suite_and_the_hidden_ones_counted(capsys, monkeypatch, columns):
    infos = registry.list_suites()
    hidden = [i.name for i in infos if not i.available]
    shown = [i for i in infos if i.available]
    assert hidden and "libero_goal_env" in hidden and "libero_100" in hidden

    lines = run(capsys, monkeypatch, columns=columns)
    assert lines[0].split()[:4] == ["NAME", "KIND", "TASKS", "UNAVAILABLE"]
    assert names(lines) == [i.name for i in shown]  # one line each, nothing else in the table
    rows = {line.split()[0]: line.split() for line in lines[1 : lines.index("")]}
    assert rows["libero"][1:3] == ["group", "40"] and rows["libero_spatial"][1:3] == ["libero", "10"]
    spatial = next(i for i in shown if i.name == "liberoplus_spatial")
    assert spatial.n_unavailable > 0  # some variants lack their assets here
    assert rows["liberoplus_spatial"][2:4] == [str(spatial.n_tasks), str(spatial.n_unavailable)]
    footer = " ".join(line.strip() for line in lines[lines.index("") :])
    assert f"{len(hidden)} more suites cannot run here and are hidden" in footer
    assert "files installed" in footer and "`evalkit suites --all`" in footer
    assert "`evalkit suites NAME`" in footer


def test_all_lists_every_suite_with_the_reason(capsys, monkeypatch):
    lines = run(capsys, monkeypatch, "--all", columns=None)
    assert set(names(lines)) == {i.name for i in registry.list_suites()}
    row = next(line for line in lines if line.startswith("libero_100 "))
    assert "cannot run here: " in row and "lists no tasks" in row  # piped: whole lines
    assert "hidden" not in " ".join(lines)


def test_a_suite_in_full(capsys, monkeypatch):
    (spec,) = registry.resolve("liberoplus_spatial")
    lines = run(capsys, monkeypatch, "liberoplus_spatial")
    text = "\n".join(lines)
    assert lines[0] == "liberoplus_spatial: a liberoplus suite for the libero embodiment"
    assert "protocol liberoplus: 20 Hz, eef_delta actions (7 dims), state 8" in text
    assert "1 per task, seed 7 for every episode; 10 settle steps, at most 220 steps" in text
    total = len(spec.tasks) + len(spec.availability.unavailable)
    assert f"availability: {len(spec.tasks)} of {total} tasks can run here" in text
    for i, (reason, count) in enumerate(spec.availability.by_reason().items(), 1):
        assert any(line.startswith(f"  [{i}] {count:>3}  {reason[:40]}") for line in lines), reason
    assert "  by dimension: " in text and "light 0/292" in text and "camera 376/376" in text
    rows = table(lines)
    assert lines[-len(rows) - 1].split() == ["ID", "DIMENSION", "LEVEL", "RUNS", "INSTRUCTION"]
    assert len(rows) == total  # every task, runnable or not, by id
    assert [int(row[0]) for row in rows] == sorted(int(row[0]) for row in rows)


def test_filters_select_tasks_by_tag_and_availability(capsys, monkeypatch):
    (spec,) = registry.resolve("liberoplus_spatial")
    rows = table(run(capsys, monkeypatch, "liberoplus_spatial", "--dimension", "noise", "--level", "3"))
    noise3 = [t for t in spec.tasks if t.tags["dimension"] == "noise" and t.tags.get("level") == 3]
    blurred = [
        t
        for t in spec.availability.unavailable
        if t.tags["dimension"] == "noise" and t.tags.get("level") == 3
    ]
    # motion blur needs ImageMagick: its tasks are listed as unavailable where it is missing
    assert bool(blurred) == (motion_blur_unavailable() is not None)
    assert len(rows) == len(noise3) + len(blurred)
    assert all(row[1:3] == ["noise", "3"] for row in rows)
    assert sum(row[3] == "no" for row in rows) == len(blurred)

    rows = table(run(capsys, monkeypatch, "liberoplus_spatial", "--dimension", "light", "--unavailable"))
    assert len(rows) == 292 and all(row[1] == "light" and row[2] == "no" for row in rows)


def test_ids_feed_eval_tasks(capsys, monkeypatch):
    (spec,) = registry.resolve("liberoplus_spatial")
    argv = ("liberoplus_spatial", "--dimension", "camera", "--dimension", "robot", "--ids")
    (line,) = run(capsys, monkeypatch, *argv, columns=None)  # one line for `--tasks $(...)`, however long
    ids = [int(i) for i in line.split()]
    assert ids == [t.task_id for t in spec.tasks if t.tags["dimension"] in ("camera", "robot")]
    args = build_parser().parse_args(
        ["eval", "--suite", "liberoplus_spatial", "--policy", "zero", "--tasks", *line.split()]
    )
    (selected,) = registry.resolve("liberoplus_spatial", tasks=args.tasks)
    assert [t.task_id for t in selected.tasks] == ids


def test_a_group_shows_its_members(capsys, monkeypatch):
    lines = run(capsys, monkeypatch, "libero")
    assert lines[0].startswith("libero: a group of suites")
    assert [line.split()[0] for line in lines[2:]] == [
        "libero_10",
        "libero_goal",
        "libero_object",
        "libero_spatial",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["liberoplus_spatial", "--dimension", "camra"],
            r"no task of liberoplus_spatial has dimension camra \(its values: background, camera",
        ),
        (
            ["libero_spatial", "--dimension", "camera"],
            r"libero_spatial's tasks have no dimension tag \(their tags: none\)",
        ),
        (["libero", "--ids"], "'libero' is a group"),
        (
            ["liberoplus_spatial", "--dimension", "light", "--ids"],
            "no task of 'liberoplus_spatial' that can run here",
        ),
        (["libero_spatail"], "unknown suite 'libero_spatail'; did you mean libero_spatial"),
        (["libero_100"], "lists no tasks"),
    ],
)
def test_bad_requests_are_one_line_errors(capsys, argv, message):
    assert main(["suites", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evalkit: error: ") and "\n" not in err
    assert re.search(message, err), err


def test_did_you_mean_offers_only_suites_that_can_run():
    with pytest.raises(EvalkitError) as info:
        registry.resolve("libero_goal_envv")
    message = str(info.value)
    assert "libero_goal_env" not in message.replace("libero_goal_envv", "")
    assert "did you mean" in message and "libero_goal" in message
