"""Reading the YAML files evalkit is given (suite files, protocol presets): safe, bounded, one-line errors.

PyYAML's `safe_load` constructs no objects, but it still expands aliases: a few hundred bytes of nested `*refs`
(a "billion laughs" document) become a graph whose every traversal (merging, JSON fingerprints, printing) is
exponential. Suite files have no use for anchors, so an alias is refused at parse time, as are files over
`MAX_BYTES` and nesting deep enough to exhaust the parser's recursion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evalkit.core.errors import EvalkitError

MAX_BYTES = 4 * 2**20  # the largest shipped suite file is ~30 kB


class NoAliasLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses aliases (`*name`); anchors alone are harmless."""

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


def load_yaml(path: Path, what: str = "suite file") -> Any:
    """The document in `path`; any problem is an EvalkitError naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise EvalkitError(f"{what} {path} is larger than {MAX_BYTES // 2**20} MB")
        return yaml.load(data.decode("utf-8"), Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        message = " ".join(str(exc).split())
        raise EvalkitError(f"cannot read {what} {path}: {message[:300]}") from None
    except RecursionError:
        raise EvalkitError(f"cannot read {what} {path}: nested too deeply") from None
