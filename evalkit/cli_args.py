"""Command-line flags generated from config dataclasses, so that each default and help text lives in one place.

A dataclass field becomes a flag when its metadata carries one (`evalkit.core.flags.flag`); its default is the
field's default, `--help` shows it (unless the help text already speaks of it), and fields that name a group are
listed under that heading.
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
        switch = kwargs.get("action") in ("store_true", "store_false")
        if f.default is not dataclasses.MISSING and not switch:
            kwargs["default"] = f.default
        if f.default is not dataclasses.MISSING and "default" not in help_text:
            # a switch (--compile, --no-trim) is off unless given, whatever the field it sets
            help_text += f" (default: {'off' if switch else shown_default(f.default)})"
        if meta["flag"].startswith("-"):
            kwargs["dest"] = f.name
        elif meta["flag"] != f.name:
            # argparse takes no dest for a positional argument: its name is the field's
            raise ValueError(f"positional argument {meta['flag']!r} must be named like its field {f.name!r}")
        group.add_argument(meta["flag"], help=help_text, **kwargs)


def shown_default(value: Any) -> str:
    """A default as `--help` shows it: switches as on/off, an unset value as none, a sequence as its items,
    space-separated, as they are typed."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def dataclass_from_arguments(cls: type[T], args: argparse.Namespace, **fixed: Any) -> T:
    """An instance of `cls` from the flags `add_dataclass_arguments` generated, plus `fixed` values."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **fixed})
