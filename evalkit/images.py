"""Image transforms of openpi's clients, shared by suites (which send images) and policies (which check them).

Reproduces openpi's LIBERO client rotation (`img[::-1, ::-1]`) and openpi-client's `image_tools.resize_with_pad` /
`convert_to_uint8` (openpi `examples/libero/main.py`, `packages/openpi-client/src/openpi_client/image_tools.py`) exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rot180(image: np.ndarray) -> np.ndarray:
    """Rotate an (H, W, C) image by 180 degrees (openpi's `img[::-1, ::-1]`), as a contiguous array."""
    return np.ascontiguousarray(image[::-1, ::-1])


def convert_to_uint8(image: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> `(255 * x).astype(uint8)` (truncating, like openpi-client); uint8 passes through."""
    if np.issubdtype(image.dtype, np.floating):
        return (255 * image).astype(np.uint8)
    return image


def resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an (H, W, C) uint8 image to fit (height, width) keeping its aspect ratio, then pad with zeros.

    openpi-client's algorithm: no-op if the size already matches; `ratio = max(w / width, h / height)`; new size
    `(int(w / ratio), int(h / ratio))` with PIL bilinear; pasted on black at
    `(int((width - new_w) / 2), int((height - new_h) / 2))`.
    """
    from PIL import Image

    cur_height, cur_width = image.shape[:2]
    if (cur_height, cur_width) == (height, width):
        return image
    ratio = max(cur_width / width, cur_height / height)
    resized_height = int(cur_height / ratio)
    resized_width = int(cur_width / ratio)
    resized = Image.fromarray(image).resize((resized_width, resized_height), resample=Image.BILINEAR)
    canvas = Image.new(resized.mode, (width, height), 0)
    pad_height = max(0, int((height - resized_height) / 2))
    pad_width = max(0, int((width - resized_width) / 2))
    canvas.paste(resized, (pad_width, pad_height))
    return np.asarray(canvas)


IMAGE_TRANSFORMS = ("rot180", "resize_with_pad")


def apply_image_transforms(image: np.ndarray, transforms: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    """Apply the protocol's named transforms in order; the result is a uint8 (H, W, 3) image."""
    out = image
    for name in transforms:
        if name == "rot180":
            out = rot180(out)
        elif name == "resize_with_pad":
            out = resize_with_pad(convert_to_uint8(out), size[0], size[1])
        else:
            raise ValueError(f"unknown image transform {name!r}")
    return convert_to_uint8(np.ascontiguousarray(out))
