"""`evalkit suites`: the suites that can run, a count of the hidden ones and why, `--all` for everything."""

import pytest

from evalkit.cli import main
from evalkit.core.errors import EvalkitError
from evalkit.suites import registry


def listed_names(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")]


def test_suites_lists_available_suites_and_says_how_many_are_hidden(capsys):
    infos = registry.list_suites()
    hidden = [i.name for i in infos if not i.available]
    assert hidden and "libero_goal_env" in hidden and "libero_100" in hidden
    partial = [i for i in infos if i.kind == "liberoplus" and i.n_tasks]  # some variants lack their assets
    assert all(i.available and "runnable/total" in i.description for i in partial)

    assert main(["suites"]) == 0
    out = capsys.readouterr().out
    names = listed_names(out.split("\n\n")[0])
    assert {"libero", "libero_spatial", "droid_demo"} <= set(names)
    assert not set(hidden) & set(names)
    footer = out.strip().splitlines()[-1]
    assert footer.startswith(f"{len(hidden)} more suite(s) cannot run here and are hidden")
    assert "files installed" in footer and "`evalkit suites --all`" in footer
    assert "none of its 0 tasks" not in out and "(no tasks missing)" not in out

    assert main(["suites", "--all"]) == 0
    everything = capsys.readouterr().out
    assert set(hidden) <= set(listed_names(everything))
    assert "hidden" not in everything
    lines = everything.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("libero_100 "))
    entry = " ".join([lines[at], *(line.strip() for line in lines[at + 1 : at + 3] if line.startswith(" "))])
    assert "unavailable" in entry and "lists no tasks" in entry


def test_did_you_mean_offers_only_suites_that_can_run():
    with pytest.raises(EvalkitError) as info:
        registry.resolve("libero_goal_envv")
    message = str(info.value)
    assert "libero_goal_env" not in message.replace("libero_goal_envv", "")
    assert "did you mean" in message and "libero_goal" in message
