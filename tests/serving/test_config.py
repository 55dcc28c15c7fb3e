"""`ServeConfig` is the one home of `evalkit serve`'s defaults: `--help` shows each field's default, the flags
parse to exactly the config's defaults, and every flag of the command says its default."""

import dataclasses
import os
import subprocess

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.serving.config import ServeConfig
from tests.serving.wire_helpers import REPO, SERVE_COMMAND


def help_by_flag() -> dict[str, str]:
    """`evalkit serve --help` as run by a user, each option's help text on one line, by flag."""
    env = dict(os.environ, COLUMNS="1000")  # argparse wraps at the terminal width
    text = subprocess.run(
        [*SERVE_COMMAND, "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    helps: dict[str, str] = {}
    flag = None
    for line in text.splitlines():
        words = line.split()
        if line.startswith("  -") and words:
            flag = words[0].rstrip(",")
            helps[flag] = " ".join(words[1:])
        elif flag is not None and line.startswith("      ") and words:
            helps[flag] = f"{helps[flag]} {' '.join(words)}".strip()
    return helps


def shown(default) -> str:
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


@pytest.mark.slow
def test_help_shows_the_config_defaults():
    helps = help_by_flag()
    flagged = [f for f in dataclasses.fields(ServeConfig) if "flag" in f.metadata]
    assert len(flagged) >= 12
    for f in flagged:
        text = helps[f.metadata["flag"]]
        if f.default is None:
            assert "(default: " in text, (f.name, text)
        else:
            assert f"(default: {shown(f.default)})" in text, (f.name, text)


@pytest.mark.slow
def test_every_serve_flag_states_its_default():
    helps = help_by_flag()
    undocumented = [
        flag for flag, text in helps.items() if "default" not in text and flag not in ("-h", "--policy")
    ]
    assert not undocumented, undocumented


def test_flags_parse_to_the_config_defaults():
    import argparse

    from evalkit.cli_args import dataclass_from_arguments
    from evalkit.serving.cli import serve_arguments

    parser = argparse.ArgumentParser()
    serve_arguments(parser)
    assert dataclass_from_arguments(ServeConfig, parser.parse_args(["--policy", "zero"])) == ServeConfig()


def test_default_byte_budget_fits_four_messages_of_the_largest_size():
    assert ServeConfig().buffered_cap == 256 * 2**20
    assert ServeConfig(max_size=128 * 2**20).buffered_cap == 4 * 128 * 2**20


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("port", 70000, "--port must be between 0 and 65535"),
        ("max_connections_per_address", 0, "--max-connections-per-address must be at least 1"),
        ("handshake_timeout_s", 0, "--handshake-timeout must be positive"),
        ("max_buffered", 2000, "must be at least 2 x --max-size"),
    ],
)
def test_invalid_values_name_their_flag(field, value, message):
    with pytest.raises(EvalkitError, match=message.replace("(", r"\(")):
        ServeConfig(**{field: value}).validate()
