"""evalkit's one cache root: `$EVALKIT_CACHE`, default `~/.cache/evalkit` (downloads, file digests, LIBERO config)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("EVALKIT_CACHE", "~/.cache/evalkit")).expanduser()
