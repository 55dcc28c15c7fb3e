"""evalkit's sensor noise equals upstream's functions (env_wrapper.py of the installed wheel) on the same frames.

Upstream's functions are compiled from the wheel's source without importing the module (its import patches
robosuite); they run against a numpy namespace that restores the two names numpy 2 removed (`np.float_`,
`np.fromstring` for binary data), and draw from the global `np.random` seeded like evalkit's generator.
"""

from __future__ import annotations

import ast
import types
from io import BytesIO

import numpy as np
import pytest

from evalkit.suites.liberoplus import noise
from evalkit.suites.liberoplus.assets import package_root
from tests.system import need_imagemagick

UPSTREAM_FUNCTIONS = (
    "motion_blur",
    "gaussian_blur",
    "clipped_zoom",
    "zoom_blur",
    "plasma_fractal",
    "fog",
    "glass_blur",
)


def _numpy_with_numpy1_names() -> types.SimpleNamespace:
    shim = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    shim.float_ = np.float64
    shim.fromstring = lambda data, dtype=float: np.frombuffer(data, dtype)
    return shim


@pytest.fixture(scope="module")
def upstream() -> dict:
    """Upstream's noise functions and MotionImage, compiled from env_wrapper.py."""
    from scipy.ndimage import zoom as scizoom
    from skimage.filters import gaussian

    source = (package_root() / "envs" / "env_wrapper.py").read_text()
    tree = ast.parse(source)
    keep = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in UPSTREAM_FUNCTIONS]
    assert {n.name for n in keep} == set(UPSTREAM_FUNCTIONS)
    namespace = {
        "np": _numpy_with_numpy1_names(),
        "gaussian": gaussian,
        "scizoom": scizoom,
        "BytesIO": BytesIO,
    }
    if noise.motion_blur_unavailable() is None:
        import ctypes

        import cv2
        from wand.api import library
        from wand.image import Image as WandImage

        library.MagickMotionBlurImage.argtypes = (
            ctypes.c_void_p,
            ctypes.c_double,
            ctypes.c_double,
            ctypes.c_double,
        )

        class MotionImage(WandImage):
            def motion_blur(self, radius=0.0, sigma=0.0, angle=0.0):
                library.MagickMotionBlurImage(self.wand, radius, sigma, angle)

        namespace.update(MotionImage=MotionImage, cv2=cv2)
    exec(compile(ast.Module(body=keep, type_ignores=[]), "env_wrapper.py", "exec"), namespace)
    return namespace


def _frame(seed: int = 0, size: int = 256) -> np.ndarray:
    """A structured (not white-noise) uint8 frame, like a render: gradients plus blocks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    frame = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(np.float64)
    for _ in range(12):
        y, x = rng.integers(0, size - 40, size=2)
        frame[y : y + 40, x : x + 40] = rng.integers(0, 256, size=3)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _upstream(upstream: dict, code: int, frame: np.ndarray, seed: int) -> np.ndarray:
    """What `ControlEnv.step` stores in agentview_image for noise `code` (env_wrapper.py)."""
    from PIL import Image

    np.random.seed(seed)
    pil = Image.fromarray(frame)
    kind, severity = (code - 1) // 10, (code - 1) % 10 + 1
    fn = ("motion_blur", "gaussian_blur", "zoom_blur", "fog", "glass_blur")[kind]
    out = upstream[fn](pil, severity=severity)
    return out if kind == 0 else out.astype(np.uint8)


@pytest.mark.parametrize("code", [11, 15, 20, 21, 25, 30, 31, 35, 40, 41, 44, 50])
def test_noise_matches_upstream(upstream: dict, code: int) -> None:
    frame = _frame(code)
    expected = _upstream(upstream, code, frame, seed=1234)
    got = noise.apply_noise(frame, code, np.random.RandomState(1234))
    assert got.dtype == np.uint8 and got.shape == frame.shape
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, frame)  # the corruption changed the frame


@pytest.mark.parametrize("code", [1, 5, 10])
def test_motion_blur_matches_upstream(upstream: dict, code: int) -> None:
    need_imagemagick()
    frame = _frame(code)
    expected = _upstream(upstream, code, frame, seed=99)
    got = noise.apply_noise(frame, code, np.random.RandomState(99))
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, frame)


def test_random_draws_follow_the_generator() -> None:
    frame = _frame(3)
    a = noise.apply_noise(frame, 35, np.random.RandomState(5))
    b = noise.apply_noise(frame, 35, np.random.RandomState(5))
    c = noise.apply_noise(frame, 35, np.random.RandomState(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fog_needs_256_frames() -> None:
    with pytest.raises(ValueError, match="256x256"):
        noise.apply_noise(_frame(0, size=224), 31, np.random.RandomState(0))
