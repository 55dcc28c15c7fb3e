"""Issue 21 item 3 / issue 22 item 10: the report, leaderboard and regress flags are generated from their config
dataclasses, so each default lives on one field, and `--help` shows every default."""

import argparse
import dataclasses

import pytest

from evalkit.cli import build_parser
from evalkit.cli_args import shown_default
from evalkit.report.config import LeaderboardConfig, RegressConfig, ReportConfig

COMMANDS = {"report": ReportConfig, "leaderboard": LeaderboardConfig, "regress": RegressConfig}


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_defaults_are_the_config_fields(command, capsys):
    config, parser = COMMANDS[command], subparser(command)
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    fields = {f.name: f for f in dataclasses.fields(config)}
    assert set(actions) == set(fields)  # every flag is a field, every field a flag
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name, f in fields.items():
        action = actions[name]
        if f.default is dataclasses.MISSING:
            assert action.required, name  # no default: the flag must be given
            continue
        assert action.default == f.default, name
        if isinstance(action, argparse._StoreTrueAction):
            continue  # off unless given
        if f.default is None:
            assert "(default: " in action.help, name  # says in words what happens without it
        else:
            assert f"(default: {shown_default(f.default)})" in action.help, name
        assert " ".join(action.help.split()) in help_text.replace("%%", "%"), name


def test_the_flags_issue_22_named_show_their_defaults():
    expected = {
        "report": {"--formats": "md,csv,parquet,html", "--embed-mb": "50.0", "--out": "RUN/report"},
        "leaderboard": {"--out": "<first RESULTS directory>/leaderboard", "--formats": "md,csv,html"},
        "regress": {"--alpha": "0.05", "--max-drop": "5.0", "--min-episodes": "10"},
    }
    for command, flags in expected.items():
        actions = {a.option_strings[0]: a for a in subparser(command)._actions if a.option_strings}
        for flag, default in flags.items():
            assert f"(default: {default}" in actions[flag].help, (command, flag, actions[flag].help)
    (results,) = [a for a in subparser("leaderboard")._actions if a.dest == "results"]
    assert results.help.endswith("(default: results)")


def test_parsed_flags_build_the_config():
    from evalkit.cli_args import dataclass_from_arguments

    args = subparser("regress").parse_args(["--baseline", "a", "--candidate", "b", "--allow-partial"])
    config = dataclass_from_arguments(RegressConfig, args)
    assert config == RegressConfig(baseline=config.baseline, candidate=config.candidate, allow_partial=True)
    assert str(config.baseline) == "a" and config.max_drop == 5.0 and config.min_episodes == 10
