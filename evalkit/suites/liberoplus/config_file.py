"""LIBERO-plus's path configuration, in a folder of its own.

`liberoplus` reads `$LIBERO_CONFIG_PATH/config.yaml` at import, the same variable and file name as LIBERO, and
creates a default one (printing to stdout) when it is missing. evalkit points `LIBERO_CONFIG_PATH` at
`$EVALKIT_CACHE/liberoplus/config` (never LIBERO's folder) before a worker imports `liberoplus`, with the wheel's
bddl_files and init_files and the chosen asset root.
"""

from __future__ import annotations

from pathlib import Path

from evalkit.suites.libero.config_file import config_paths, write_config


def liberoplus_home() -> Path:
    from evalkit.core.cache import cache_root

    return cache_root() / "liberoplus"


def ensure_liberoplus_config(assets: Path) -> Path:
    """Write (or refresh) evalkit's LIBERO-plus config.yaml and export LIBERO_CONFIG_PATH. Returns the folder."""

    from evalkit.suites.liberoplus.assets import package_root

    return write_config(liberoplus_home() / "config", config_paths(package_root(), assets), "LIBERO-plus")
