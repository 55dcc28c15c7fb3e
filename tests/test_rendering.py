"""The GL backend choice: EGL by default, OSMesa fallback, one-line EvalkitErrors when nothing works."""

import os
import sys

import pytest

from evalkit import rendering
from evalkit.core.errors import EvalkitError


@pytest.fixture(autouse=True)
def restore_gl_environment():
    """configure_gl() writes os.environ directly; put every variable it may touch back afterwards."""
    names = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "EVALKIT_GL_CHECKED")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_configure_gl_sets_both_variables(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "EGL")
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    assert rendering.configure_gl() == "egl"
    assert os.environ["MUJOCO_GL"] == "egl" and os.environ["PYOPENGL_PLATFORM"] == "egl"


def test_unknown_backend_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "vulkan")
    with pytest.raises(EvalkitError, match="unsupported MUJOCO_GL='vulkan'; use one of egl, osmesa") as info:
        rendering.configure_gl()
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_switching_backend_after_mujoco_import_is_refused(monkeypatch):
    import mujoco  # noqa: F401  (tests/conftest.py set MUJOCO_GL=egl before anything imported it)

    assert "mujoco" in sys.modules
    monkeypatch.setenv("MUJOCO_GL", "egl")
    with pytest.raises(EvalkitError, match="imported before the GL backend was set") as info:
        rendering.configure_gl("osmesa")
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_probe_reports_why_a_backend_fails():
    reason = rendering.probe_backend("glx-does-not-exist")
    assert reason is not None and "invalid value for environment variable MUJOCO_GL" in reason
    assert "\n" not in reason


@pytest.mark.slow
def test_check_gl_finds_egl_here(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.delenv("EVALKIT_GL_CHECKED", raising=False)
    assert rendering.check_gl() == "egl"  # a real EGL context in a subprocess (this machine has Mesa EGL)


def test_check_gl_falls_back_to_osmesa(monkeypatch):
    tried = []

    def probe(backend, timeout_s=60.0):
        tried.append(backend)
        return "Cannot initialize a EGL device display" if backend == "egl" else None

    monkeypatch.setattr(rendering, "probe_backend", probe)
    monkeypatch.setattr(rendering, "_imported_with", lambda: None)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("EVALKIT_GL_CHECKED", raising=False)
    assert rendering.check_gl() == "osmesa"
    assert tried == ["egl", "osmesa"]
    assert os.environ["MUJOCO_GL"] == "osmesa" and os.environ["EVALKIT_GL_CHECKED"] == "osmesa"


def test_no_working_backend_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(
        rendering, "probe_backend", lambda backend, timeout_s=60.0: f"{backend} broken\tdetail"
    )
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    with pytest.raises(EvalkitError) as info:
        rendering.check_gl()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("no working OpenGL backend for MuJoCo rendering (egl: egl broken")
    assert "osmesa: osmesa broken" in message and "set MUJOCO_GL" in message
