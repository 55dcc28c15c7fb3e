"""`evalkit --help` as a user reads it: every flag of every command (nested subcommands included) states its default,
the default it states is the one it has, and `eval --protocol` lists every protocol preset under tasks/."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from evalkit.cli import build_parser, main
from evalkit.cli_args import shown_default

REPO = Path(__file__).resolve().parents[1]


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command's parser, by the words that invoke it, depth first."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, (*path, name))
    return found


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a user may leave out: flags and optional positionals (not --help, not subcommands)."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
        and not a.required
        and (a.option_strings or a.nargs in ("?", "*"))
    ]


def rendered_help(words: tuple[str, ...], capsys) -> str:
    """`evalkit WORDS --help` as printed, whitespace collapsed (argparse wraps at the terminal's width)."""
    with pytest.raises(SystemExit) as exit_:
        main([*words, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


COMMANDS = commands(build_parser())


def test_the_walk_reaches_every_command():
    names = {" ".join(words) for words, _ in COMMANDS}
    assert {"eval", "suites", "serve", "report", "leaderboard", "regress", "export", "convert"} <= names
    assert "make-tiny-checkpoint" in names and "" in names


@pytest.mark.parametrize("words", [words for words, _ in COMMANDS if words], ids=" ".join)
def test_every_flag_shows_its_default_in_help(words, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    parser = dict(COMMANDS)[words]
    text = rendered_help(words, capsys)
    missing = []
    for action in options(parser):
        name = action.option_strings[0] if action.option_strings else action.dest
        help_text = " ".join((action.help or "").split()).replace("%%", "%")
        assert help_text in text, f"evalkit {' '.join(words)} --help does not show {name}'s help"
        if not re.search(r"\bdefault\b", help_text):
            missing.append(name)
        elif action.default not in (None, argparse.SUPPRESS) and not isinstance(
            action, argparse._StoreTrueAction | argparse._StoreFalseAction
        ):
            # the default it states is the one argparse applies
            assert f"(default: {shown_default(action.default)}" in help_text, (
                name,
                action.default,
                help_text,
            )
    assert not missing, f"evalkit {' '.join(words)}: no default in the help of {', '.join(missing)}"


def test_protocol_help_lists_every_preset(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    presets = sorted(p.stem for p in REPO.glob("tasks/*/protocols/*.yaml"))
    assert {"openpi", "lerobot", "droid", "droid_jointpos", "liberoplus", "liberoplus_clean"} <= set(presets)
    (protocol,) = [a for a in dict(COMMANDS)[("eval",)]._actions if "--protocol" in a.option_strings]
    protocol_help = " ".join(protocol.help.split())
    assert protocol_help in rendered_help(("eval",), capsys)
    listed = [p for p in presets if re.search(rf"[(:,] {re.escape(p)}\b", protocol_help)]
    assert listed == presets, protocol_help
