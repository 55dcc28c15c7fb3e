"""evalkit's one cache root: `$EVALKIT_CACHE`, default `~/.cache/evalkit`.

Below it: `hub/<owner>--<name>/<revision>/` and `urls/<name>-<digest>/` (checkpoint downloads, `hub.py`) and
`fingerprints.json` (digests of large checkpoint files, `checkpoint/fingerprint.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "EVALKIT_CACHE"
DEFAULT_CACHE = "~/.cache/evalkit"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()
