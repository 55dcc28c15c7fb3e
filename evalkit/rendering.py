"""The OpenGL backend MuJoCo renders with: EGL by default, OSMesa as the CPU fallback.

MuJoCo and robosuite read `MUJOCO_GL` (and PyOpenGL reads `PYOPENGL_PLATFORM`) once, when they are imported, so
the backend must be fixed before either is imported. The parent process calls `check_gl()` before it starts any
worker (it probes the backends in a throwaway subprocess and exports the one that works, so that spawned workers
inherit it); each worker calls `configure_gl()` first thing, which only sets and validates the variables.
"""

from __future__ import annotations

import os
import subprocess
import sys

from evalkit.core.errors import EvalkitError

BACKENDS: tuple[str, ...] = ("egl", "osmesa")  # in order of preference when MUJOCO_GL is not set
DEFAULT_BACKEND = "egl"
_CHECKED_ENV = "EVALKIT_GL_CHECKED"  # set to the backend check_gl() verified, so workers skip the probe
_PROBE_TIMEOUT_S = 60.0
_PROBE = """
import mujoco
ctx = mujoco.GLContext(16, 16)
ctx.make_current()
ctx.free()
print("ok")
"""


def _imported_with() -> str | None:
    """The backend the already-imported simulator modules picked, or None if none of them is imported."""
    if "robosuite.utils.binding_utils" in sys.modules or "mujoco" in sys.modules:
        return os.environ.get("MUJOCO_GL", "")
    return None


def configure_gl(backend: str | None = None) -> str:
    """Fix the GL backend for this process (before mujoco/robosuite are imported) and return it.

    `backend` defaults to `$MUJOCO_GL`, else EGL. Raises EvalkitError for an unknown backend or when mujoco was
    already imported under a different one.
    """
    chosen = (backend or os.environ.get("MUJOCO_GL") or DEFAULT_BACKEND).strip().lower()
    if chosen not in BACKENDS:
        raise EvalkitError(f"unsupported MUJOCO_GL={chosen!r}; use one of {', '.join(BACKENDS)}")
    imported = _imported_with()
    if imported is not None and imported.lower() != chosen:
        raise EvalkitError(
            f"mujoco was imported before the GL backend was set (MUJOCO_GL={imported or 'unset'}, wanted {chosen}); "
            "call evalkit.rendering.configure_gl() before importing mujoco or robosuite"
        )
    os.environ["MUJOCO_GL"] = chosen
    os.environ["PYOPENGL_PLATFORM"] = chosen
    return chosen


def probe_backend(backend: str, timeout_s: float = _PROBE_TIMEOUT_S) -> str | None:
    """Try to create a headless GL context with `backend` in a subprocess. Returns None if it works, else why not."""
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout_s:.0f} s"
    if proc.returncode == 0 and proc.stdout.strip().endswith("ok"):
        return None
    lines = [line.strip() for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else f"exit code {proc.returncode}"


def check_gl(candidates: tuple[str, ...] | None = None) -> str:
    """Find a working GL backend (the one in `$MUJOCO_GL` if set, else EGL then OSMesa), export it, return it.

    Raises a one-line EvalkitError naming every backend tried and why it failed.
    """
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    if candidates is None:
        if requested and os.environ.get(_CHECKED_ENV) == requested:
            return configure_gl(requested)
        candidates = (requested,) if requested else BACKENDS
    failures = []
    for backend in candidates:
        if backend not in BACKENDS:
            failures.append(f"{backend}: not a supported backend")
            continue
        reason = probe_backend(backend)
        if reason is None:
            chosen = configure_gl(backend)
            os.environ[_CHECKED_ENV] = chosen
            return chosen
        failures.append(f"{backend}: {reason}")
    hint = "install EGL (libegl1) or OSMesa (libosmesa6) drivers, or set MUJOCO_GL"
    raise EvalkitError(f"no working OpenGL backend for MuJoCo rendering ({'; '.join(failures)}); {hint}")
