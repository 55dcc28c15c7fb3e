import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


@pytest.fixture
def chromium() -> str:
    """The Chromium binary; skips outside CI (fails under CI=true) where there is none."""
    from tests.system import need_chromium

    return need_chromium()
