"""What `evalkit eval` says before it starts and once the first episodes have ended."""

import io

from evalkit.core.protocol import episodes_for
from evalkit.runner.plan import (
    BarProgress,
    Progress,
    StatusProgress,
    describe_plan,
    estimate_line,
    format_duration,
    progress_bar,
)
from evalkit.suites import registry


def test_plan_names_suites_tasks_episodes_and_workers():
    suites = registry.resolve("libero")
    episodes = episodes_for(suites)
    text = describe_plan(suites, episodes, episodes[100:], 2, "zero", "results/libero__zero")
    first, *rest = text.splitlines()
    assert first == (
        "evalkit: zero on 4 suites, 40 tasks: 1,900 episodes to run (100 of 2,000 already done), "
        "2 workers -> results/libero__zero"
    )
    assert rest[0] == "  libero_spatial: 10 tasks x 50 episodes, up to 220 steps at 20 Hz (400 to run)"
    assert "time estimate" in rest[-1]


def test_estimate_scales_the_first_episodes_to_the_rest():
    assert estimate_line(2, 2000, 30.0) == (
        "evalkit: first 2 episodes took 30 s; about 8 h 19 min left for the other 1,998"
    )
    assert format_duration(75) == "1 min 15 s" and format_duration(3600) == "1 h 00 min"


def test_progress_bar_prints_the_estimate_once_after_the_first_round(capsys):
    bar = progress_bar(total=6, workers=2)
    bar.update(1)
    assert "first" not in capsys.readouterr().out
    bar.update(1)
    bar.update(1)
    bar.close()
    out = capsys.readouterr().out  # printed above the bar, with the plan
    assert out.count("evalkit: first 2 episodes took") == 1 and "left for the other 4" in out


def test_one_task_and_one_episode_are_singular():
    suites = registry.resolve("droid_demo", tasks=(0,), episodes_per_task=1)
    text = describe_plan(suites, episodes_for(suites), episodes_for(suites), 1, "zero", "out")
    assert text.splitlines()[0] == "evalkit: zero on 1 suite, 1 task: 1 episode to run, 1 worker -> out"
    assert "droid_demo: 1 task x 1 episode, " in text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_status_lines_elsewhere(monkeypatch):
    assert isinstance(Progress.start(4, 2, True, Terminal()), BarProgress)
    assert type(Progress.start(4, 2, False, Terminal())) is Progress  # --quiet
    log = io.StringIO()
    status = Progress.start(4, 2, True, log)
    assert isinstance(status, StatusProgress)
    monkeypatch.setattr(status, "last", status.last - 60)  # the last status line is a minute old
    status.update(1, 1, 0)
    for done in (2, 3, 4):
        status.update(done, 1, 1)
    status.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("evalkit: 1/4 episodes, success 1/1 (100.0%), 0 errors, ")
    assert lines[1].startswith("evalkit: first 2 episodes took")
    assert lines[-1].startswith("evalkit: 4/4 episodes, success 1/3 (33.3%), 1 error, ")
    assert len(lines) == 3  # nothing between: at most one status line every STATUS_EVERY_S
