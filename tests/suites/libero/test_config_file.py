"""evalkit writes LIBERO's config.yaml for the installed package and points LIBERO_CONFIG_PATH at it."""

import os
import subprocess
import sys

import pytest
import yaml

from evalkit.suites.libero.config_file import CONFIG_KEYS, ensure_libero_config


def test_config_is_written_once_with_the_installed_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("LIBERO_CONFIG_PATH", "/nonexistent")
    directory = ensure_libero_config()
    assert directory == tmp_path / "libero" and os.environ["LIBERO_CONFIG_PATH"] == str(directory)
    config = yaml.safe_load((directory / "config.yaml").read_text())
    assert sorted(config) == sorted(CONFIG_KEYS)
    for key in ("benchmark_root", "bddl_files", "init_states", "assets"):
        assert os.path.isdir(config[key]), key
    assert os.path.isdir(os.path.join(config["bddl_files"], "libero_spatial"))
    mtime = (directory / "config.yaml").stat().st_mtime_ns
    ensure_libero_config()
    assert (directory / "config.yaml").stat().st_mtime_ns == mtime  # unchanged content is not rewritten


@pytest.mark.slow
def test_libero_imports_headless_with_the_written_config(tmp_path):
    """A worker-like process with no stdin and a fresh HOME imports libero without prompting."""
    script = (
        "from evalkit.suites.libero.config_file import ensure_libero_config; ensure_libero_config();"
        "from libero.libero import get_libero_path, benchmark; import os;"
        "print(os.environ['LIBERO_CONFIG_PATH']); print(get_libero_path('bddl_files'))"
    )
    env = {**os.environ, "HOME": str(tmp_path), "EVALKIT_CACHE": str(tmp_path / "ek")}
    env.pop("LIBERO_CONFIG_PATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    config_dir, bddl_files = proc.stdout.split()
    assert config_dir == str(tmp_path / "ek" / "libero")
    written = yaml.safe_load((tmp_path / "ek" / "libero" / "config.yaml").read_text())
    assert bddl_files == written["bddl_files"] and os.path.isdir(bddl_files)
