"""What some tests need beyond `make setup`: a browser, ImageMagick, Ray. Outside CI a missing one skips the test
with the reason (a developer's machine may lack it); under `CI=true` it fails the run, since CI installs all of
them (`.ci/run`) and a silently skipped check would let a regression through."""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType

import pytest

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def need(available: bool, what: str, install: str, module_level: bool = False) -> None:
    """Skip (outside CI) or fail (in CI) unless `available`."""
    if available:
        return
    message = f"{what} is not installed (install: {install})"
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=module_level)


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def need_chromium() -> str:
    need(chromium_binary() is not None, "Chromium (checks the HTML pages)", "apt-get install chromium")
    return str(chromium_binary())


def need_imagemagick() -> None:
    from evalkit.suites.liberoplus.noise import motion_blur_unavailable

    reason = motion_blur_unavailable()
    need(reason is None, f"ImageMagick's libMagickWand ({reason})", "apt-get install libmagickwand-6.q16-6")


def import_or_skip(module: str, install: str) -> ModuleType:
    """`pytest.importorskip` that fails under CI; for a test module's top level."""
    try:
        return importlib.import_module(module)
    except ImportError:
        need(False, f"Python package {module!r}", install, module_level=True)
        raise
