"""openpi-client image transforms against hand-computed values."""

import numpy as np
import pytest

from evalkit.images import apply_image_transforms, convert_to_uint8, resize_with_pad, rot180


def test_rot180_flips_rows_and_columns():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = rot180(img)
    assert out.flags.c_contiguous
    assert out[0, 0].tolist() == img[1, 2].tolist()
    assert out[1, 2].tolist() == img[0, 0].tolist()
    assert out[0, 2].tolist() == img[1, 0].tolist()
    np.testing.assert_array_equal(rot180(out), img)


def test_resize_with_pad_wide_image_is_padded_top_and_bottom():
    # 4x8 constant image into 4x4: ratio = max(8/4, 4/4) = 2 -> 2 rows x 4 cols, pad int((4-2)/2) = 1 row on top.
    img = np.full((4, 8, 3), 200, dtype=np.uint8)
    out = resize_with_pad(img, 4, 4)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert (out[0] == 0).all() and (out[3] == 0).all()
    assert (out[1:3] == 200).all()


def test_resize_with_pad_truncates_sizes_and_offsets():
    # 3x8 into 4x4: ratio 2 -> new height int(1.5) = 1; pad int((4-1)/2) = 1: only row 1 holds the image.
    img = np.full((3, 8, 3), 90, dtype=np.uint8)
    out = resize_with_pad(img, 4, 4)
    assert (out[1] == 90).all()
    assert (out[[0, 2, 3]] == 0).all()


def test_resize_with_pad_tall_image_is_padded_left_and_right():
    # 2x1 into 4x4: ratio = max(1/4, 2/4) = 0.5 -> 2 cols x 4 rows (upscaled), pad int((4-2)/2) = 1 column.
    img = np.full((2, 1, 3), 50, dtype=np.uint8)
    out = resize_with_pad(img, 4, 4)
    assert (out[:, [0, 3]] == 0).all()
    assert (out[:, 1:3] == 50).all()


def test_resize_with_pad_same_size_is_identity_and_square_has_no_padding():
    img = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    assert resize_with_pad(img, 224, 224) is img
    full = np.full((256, 256, 3), 255, dtype=np.uint8)
    out = resize_with_pad(full, 224, 224)  # 256 / (256/224) == 224.0 exactly: no border
    assert out.shape == (224, 224, 3) and (out == 255).all()


def test_convert_to_uint8_truncates_like_openpi():
    assert convert_to_uint8(np.array([0.0, 0.5, 1.0, 0.999])).tolist() == [0, 127, 255, 254]
    ints = np.array([1, 2], dtype=np.uint8)
    assert convert_to_uint8(ints) is ints


def test_apply_image_transforms_rotates_before_resizing():
    img = np.zeros((8, 16, 3), dtype=np.uint8)
    img[:4, :8] = 255  # top-left quadrant; after rot180 it is bottom-right
    out = apply_image_transforms(img, ("rot180", "resize_with_pad"), (8, 8))
    # 8x16 -> 4x8 content pasted at row 2: content rows 2..5; bright quadrant now bottom-right of the content
    assert out.shape == (8, 8, 3)
    assert (out[5, 5:] == 255).all() and (out[2:4, :3] == 0).all()  # bilinear blurs the quadrant's edge
    assert (out[:2] == 0).all() and (out[6:] == 0).all()
    with pytest.raises(ValueError):
        apply_image_transforms(img, ("flip",), (8, 8))
