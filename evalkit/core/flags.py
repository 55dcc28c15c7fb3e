"""Command-line flags as field metadata of config dataclasses (`PolicyOptions`, `EvalConfig`): each default and help
text lives on its field, and `evalkit.cli_args` generates the flags from them."""

from __future__ import annotations

from typing import Any


def flag(name: str, help: str, group: str | None = None, **argparse: Any) -> dict[str, Any]:
    """Metadata for `dataclasses.field(metadata=...)`: the flag, its help, an optional help group, and argparse
    keywords (type, choices, action, nargs, ...)."""
    return {"flag": name, "help": help, "group": group, "argparse": argparse}
