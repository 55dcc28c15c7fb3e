"""Command-line flags generated from config dataclasses, so that each default and help text lives in one place.

A dataclass field becomes a flag when its metadata carries one (`evalkit.core.flags.flag`); its default is the
field's default, `--help` shows it, and fields that name a group are listed under that heading.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def add_dataclass_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    skip: tuple[str, ...] = (),
    title: str | None = None,
    helps: dict[str, str] | None = None,
) -> None:
    """Flags for the fields of `cls` that carry one, under their group's heading (or `title`); `helps` replaces
    the help of fields by name (text known only when the parser is built). Every help ends with the default:
    the field's, or "off" for a switch, or "none", unless the text already says what the default is."""
    groups: dict[str | None, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "flag" not in meta or f.name in skip:
            continue
        heading = meta.get("group") or title
        if heading not in groups:
            groups[heading] = parser.add_argument_group(heading) if heading else parser
        group = groups[heading]
        kwargs: dict[str, Any] = dict(meta["argparse"])
        help_text = (helps or {}).get(f.name, meta["help"])
        switch = {"store_true": "off", "store_false": "on"}.get(kwargs.get("action", ""))
        if f.default is not dataclasses.MISSING and switch is None:
            kwargs["default"] = f.default
        if f.default is not dataclasses.MISSING and "default" not in help_text:
            shown = switch or ("none" if f.default is None else f.default)
            help_text += f" (default: {shown})"
        group.add_argument(meta["flag"], dest=f.name, help=help_text, **kwargs)


def dataclass_from_arguments(cls: type[T], args: argparse.Namespace, **fixed: Any) -> T:
    """An instance of `cls` from the flags `add_dataclass_arguments` generated, plus `fixed` values."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **fixed})
