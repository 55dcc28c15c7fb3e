"""File names built from data (suite names, task instructions, episode ids): one safe component each, of bounded
length, and a check that a path joined under a root stays inside it.

Suite names and instructions come from YAML files and simulator packages, not from evalkit, so a name such as
`../../x` or one longer than a file system allows (255 bytes per component on ext4, tmpfs, APFS) must neither
escape the run directory nor make a write fail.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from evalkit.core.errors import EvalkitError

MAX_COMPONENT = 96  # characters of one data-derived component; leaves room for evalkit's own affixes


def safe_component(text: str, max_len: int = MAX_COMPONENT) -> str:
    """`text` as one file name component: [A-Za-z0-9._-] only, no leading dot, at most `max_len` characters.

    A shortened (or emptied) name ends with a hash of the original, so distinct names stay distinct.
    """
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".")
    if clean and len(clean) <= max_len and clean == text:
        return clean
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    keep = max(0, max_len - len(digest) - 1)
    return f"{clean[:keep]}_{digest}" if clean[:keep] else digest


def inside(root: Path, relative: str | Path, verb: str = "write", named_in: Path | None = None) -> Path:
    """`root / relative`, refused unless it resolves inside `root` (no `..`, no absolute path, no symlink out).

    `named_in`: the file that gave `relative` (said in the error, e.g. a checkpoint's own config)."""
    root_resolved = Path(root).resolve()
    path = (Path(root) / relative).resolve()
    if path == root_resolved or not path.is_relative_to(root_resolved):
        where = f"{named_in}: " if named_in is not None else ""
        raise EvalkitError(f"{where}refusing to {verb} {relative!s}: it is outside {root}")
    return path
