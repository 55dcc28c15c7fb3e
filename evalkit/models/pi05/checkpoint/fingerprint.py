"""Content fingerprints of checkpoint files: sha256 over (file name, size, bytes), "sha256:<hex>".

Digests of files of at least `FINGERPRINT_CACHE_MIN_BYTES` are remembered in `<cache root>/fingerprints.json`
(`evalkit.core.cache`, `$EVALKIT_CACHE`) keyed by (absolute path, size, mtime), so a multi-GB checkpoint is
hashed once, not at every start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from evalkit.core.cache import cache_root

log = logging.getLogger(__name__)

FINGERPRINT_CACHE_MIN_BYTES = 64 << 20
CACHE_FILE = "fingerprints.json"


def fingerprint_files(files: Iterable[Path]) -> str:
    """One digest over the files (sorted by path), streamed in 8 MiB blocks."""
    digest = hashlib.sha256()
    for path in sorted(Path(f) for f in files):
        digest.update(f"{path.name}\0{path.stat().st_size}\0{file_sha256(path)}\0".encode())
    return "sha256:" + digest.hexdigest()


_digests: dict[str, str] = {}  # this process's digests, by the same key as the file cache


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in _digests:
        _digests[key] = _file_sha256(path, key, stat.st_size)
    return _digests[key]


def _file_sha256(path: Path, key: str, size: int) -> str:
    cache_file = cache_root() / CACHE_FILE
    use_cache = size >= FINGERPRINT_CACHE_MIN_BYTES
    cache: dict[str, str] = {}
    if use_cache and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}
        if isinstance(cache.get(key), str):
            return cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    hexdigest = digest.hexdigest()
    if use_cache:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache[key] = hexdigest
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=0))
            os.replace(tmp, cache_file)
        except OSError as exc:  # a read-only cache only costs time
            log.warning("cannot write the fingerprint cache %s: %s", cache_file, exc)
    return hexdigest
