"""LIBERO-plus's sensor noise, ported to numpy 2 with an explicit random generator.

Upstream (`liberoplus/envs/env_wrapper.py`, from the ImageNet-C corruptions) applies one of five corruptions to
`agentview_image` after every `ControlEnv.step()`: on the raw render (render size, OpenGL row order, before
openpi's client flips and resizes it), noise code N in 1..50 -> type (N-1)//10, severity (N-1)%10+1. This module
reproduces that math exactly, with two changes that do not alter any output:
- the random draws come from a `numpy.random.RandomState` passed in (upstream draws from the global
  `np.random`; the same seed gives the same pixels);
- numpy 2: `np.float_` -> `np.float64` (fog), `np.fromstring` -> `np.frombuffer` (motion blur); glass blur's
  pixel loop runs on Python lists (same order, same draws, same aliasing: upstream's tuple "swap" of two numpy
  views copies the displaced pixel into place and leaves the source pixel unchanged).

Motion blur calls ImageMagick through Wand (`MagickMotionBlurImage`); without `libMagickWand` it is unavailable
and `motion_blur_unavailable()` says why. Fog adds a 256x256 plasma fractal, so it needs 256x256 frames, the
render size of upstream's evaluation.
"""

from __future__ import annotations

import ctypes
from functools import cache
from io import BytesIO

import numpy as np

from evalkit.suites.liberoplus.variants import NOISE_TYPES

FOG_SIZE = 256
GLASS_LOOP_SIZE = 224  # upstream's glass blur shuffles pixels in [c, 224 - c] whatever the frame size

# Parameters per severity 1..10 (env_wrapper.py)
MOTION_BLUR = [(5, 2), (8, 3), (10, 4), (12, 5), (15, 6), (18, 8), (20, 10), (25, 12), (30, 15), (35, 20)]
GAUSSIAN_SIGMA = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
ZOOM_FACTORS = [
    np.arange(1, 1.11, 0.01),
    np.arange(1, 1.16, 0.01),
    np.arange(1, 1.21, 0.02),
    np.arange(1, 1.26, 0.02),
    np.arange(1, 1.31, 0.03),
    np.arange(1, 1.36, 0.01),
    np.arange(1, 1.41, 0.01),
    np.arange(1, 1.46, 0.02),
    np.arange(1, 1.51, 0.02),
    np.arange(1, 1.56, 0.03),
]
FOG = [
    (0.5, 3),
    (1.0, 2.8),
    (1.5, 2.5),
    (2.0, 2.2),
    (2.5, 2.0),
    (3.0, 1.8),
    (3.5, 1.6),
    (4.0, 1.5),
    (4.5, 1.4),
    (5.0, 1.3),
]
GLASS = [
    (0.5, 1, 3),
    (0.7, 1, 3),
    (0.9, 2, 3),
    (1.0, 2, 2),
    (1.1, 3, 2),
    (1.3, 3, 2),
    (1.5, 4, 2),
    (1.8, 4, 2),
    (2.2, 5, 1),
    (2.5, 5, 1),
]


@cache
def motion_blur_unavailable() -> str | None:
    """None if ImageMagick's MagickWand library loads through Wand, else a one-line reason."""
    try:
        from wand.api import library  # noqa: F401  (loads libMagickWand via ctypes)
    except ImportError as exc:
        return (
            f"motion blur needs ImageMagick's libMagickWand and the Wand package ({str(exc).splitlines()[0]})"
        )
    return None


def motion_blur(image: np.ndarray, severity: int, rng: np.random.RandomState) -> np.ndarray:
    """ImageMagick motion blur along a random angle in [-45, 45) degrees."""
    import cv2
    from PIL import Image
    from wand.api import library
    from wand.image import Image as WandImage

    library.MagickMotionBlurImage.argtypes = (
        ctypes.c_void_p,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_double,
    )
    radius, sigma = MOTION_BLUR[severity - 1]
    png = BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    with WandImage(blob=png.getvalue()) as wand:
        library.MagickMotionBlurImage(wand.wand, radius, sigma, rng.uniform(-45, 45))
        blob = wand.make_blob()
    out = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
    if out.shape != (224, 224):
        return np.clip(out[..., [2, 1, 0]], 0, 255)  # BGR to RGB
    return np.clip(np.array([out, out, out]).transpose((1, 2, 0)), 0, 255)  # greyscale to RGB


def gaussian_blur(image: np.ndarray, severity: int) -> np.ndarray:
    from skimage.filters import gaussian

    out = gaussian(np.array(image) / 255.0, sigma=GAUSSIAN_SIGMA[severity - 1], channel_axis=-1)
    return np.clip(out, 0, 1) * 255


def _clipped_zoom(image: np.ndarray, factor: float) -> np.ndarray:
    from scipy.ndimage import zoom

    h = image.shape[0]
    ch = int(np.ceil(h / float(factor)))
    top = (h - ch) // 2
    out = zoom(image[top : top + ch, top : top + ch], (factor, factor, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


def zoom_blur(image: np.ndarray, severity: int) -> np.ndarray:
    x = (np.array(image) / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    factors = ZOOM_FACTORS[severity - 1]
    for factor in factors:
        out += _clipped_zoom(x, factor)
    x = (x + out) / (len(factors) + 1)
    return np.clip(x, 0, 1) * 255


def plasma_fractal(rng: np.random.RandomState, mapsize: int = 256, wibbledecay: float = 3) -> np.ndarray:
    """Diamond-square height map in [0, 1] (mapsize a power of two)."""
    assert mapsize & (mapsize - 1) == 0
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100

    def wibbledmean(array: np.ndarray) -> np.ndarray:
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        # squares
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize] = wibbledmean(
            squareaccum
        )
        # diamonds
        drgrid = maparray[stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = (drgrid + np.roll(drgrid, 1, axis=0)) + (ulgrid + np.roll(ulgrid, -1, axis=1))
        maparray[0:mapsize:stepsize, stepsize // 2 : mapsize : stepsize] = wibbledmean(ltsum)
        ttsum = (drgrid + np.roll(drgrid, 1, axis=1)) + (ulgrid + np.roll(ulgrid, -1, axis=0))
        maparray[stepsize // 2 : mapsize : stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def fog(image: np.ndarray, severity: int, rng: np.random.RandomState) -> np.ndarray:
    if image.shape[:2] != (FOG_SIZE, FOG_SIZE):
        raise ValueError(f"LIBERO-plus fog needs {FOG_SIZE}x{FOG_SIZE} frames, got {image.shape[:2]}")
    strength, decay = FOG[severity - 1]
    x = np.array(image) / 255.0
    max_val = x.max()
    x += strength * plasma_fractal(rng, wibbledecay=decay)[:FOG_SIZE, :FOG_SIZE][..., np.newaxis]
    return np.clip(x * max_val / (max_val + strength), 0, 1) * 255


def glass_blur(image: np.ndarray, severity: int, rng: np.random.RandomState) -> np.ndarray:
    from skimage.filters import gaussian

    sigma, delta, iterations = GLASS[severity - 1]
    x = np.uint8(gaussian(np.array(image) / 255.0, sigma=sigma, channel_axis=-1) * 255)
    rows = [[tuple(pixel) for pixel in row] for row in x.tolist()]
    span = range(GLASS_LOOP_SIZE - delta, delta, -1)
    pixels = [(h, w) for h in span for w in span]
    for _ in range(iterations):
        # one draw of all offsets: the same stream as upstream's per-pixel `randint(size=(2,))` (legacy
        # RandomState fills arrays element by element; test_noise checks it against upstream)
        offsets = rng.randint(-delta, delta, size=(len(pixels), 2)).tolist()
        for (h, w), (dx, dy) in zip(pixels, offsets, strict=True):
            rows[h][w] = rows[h + dy][w + dx]
    x = np.asarray(rows, dtype=np.uint8)
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def apply_noise(image: np.ndarray, code: int, rng: np.random.RandomState) -> np.ndarray:
    """Upstream's noise code 1..50 applied to a uint8 (H, W, 3) frame; returns uint8 (as `ControlEnv.step`)."""
    if not 1 <= code <= 50:
        raise ValueError(f"LIBERO-plus noise codes are 1..50, got {code}")
    kind, severity = NOISE_TYPES[(code - 1) // 10], (code - 1) % 10 + 1
    if kind == "motion_blur":
        return motion_blur(image, severity, rng)
    if kind == "gaussian_blur":
        out = gaussian_blur(image, severity)
    elif kind == "zoom_blur":
        out = zoom_blur(image, severity)
    elif kind == "fog":
        out = fog(image, severity, rng)
    else:
        out = glass_blur(image, severity, rng)
    return out.astype(np.uint8)
