"""LIBERO-plus's path configuration, in a folder of its own.

`liberoplus` reads `$LIBERO_CONFIG_PATH/config.yaml` at import, the same variable and file name as LIBERO, and
creates a default one (printing to stdout) when it is missing. evalkit points `LIBERO_CONFIG_PATH` at
`$EVALKIT_CACHE/liberoplus/config` (never LIBERO's folder) before a worker imports `liberoplus`, with the wheel's
bddl_files and init_files and the chosen asset root.
"""

from __future__ import annotations

import os
from pathlib import Path

from evalkit.core.errors import EvalkitError


def liberoplus_home() -> Path:
    from evalkit.core.cache import cache_root

    return cache_root() / "liberoplus"


def ensure_liberoplus_config(assets: Path) -> Path:
    """Write (or refresh) evalkit's LIBERO-plus config.yaml and export LIBERO_CONFIG_PATH. Returns the folder."""
    import yaml

    from evalkit.suites.liberoplus.assets import package_root

    root = package_root()
    wanted = {
        "benchmark_root": str(root),
        "bddl_files": str(root / "bddl_files"),
        "init_states": str(root / "init_files"),
        "datasets": str(root.parent / "datasets"),
        "assets": str(assets),
    }
    directory = liberoplus_home() / "config"
    path = directory / "config.yaml"
    try:
        current = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        current = None
    if current != wanted:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(yaml.safe_dump(wanted, sort_keys=True))
            tmp.replace(path)
        except OSError as exc:
            raise EvalkitError(
                f"cannot write LIBERO-plus config to {directory}: {exc.strerror or exc}; set EVALKIT_CACHE"
            ) from exc
    os.environ["LIBERO_CONFIG_PATH"] = str(directory)
    return directory
