"""openpi's LIBERO observation transforms against hand-computed values and robosuite's own quat2axisangle."""

import math

import numpy as np
import pytest

from evalkit.suites.libero.transforms import libero_state, quat2axisangle


def test_quat2axisangle_hand_computed():
    s = math.sqrt(0.5)
    np.testing.assert_allclose(
        quat2axisangle([0, 0, s, s]), [0, 0, math.pi / 2], atol=1e-12
    )  # 90 deg about z
    np.testing.assert_allclose(quat2axisangle([1, 0, 0, 0]), [math.pi, 0, 0], atol=1e-12)  # 180 deg about x
    assert quat2axisangle([0, 0, 0, 1]).tolist() == [0, 0, 0]


def test_quat2axisangle_edges_w_near_plus_minus_one():
    assert quat2axisangle([0, 0, 0, -1]).tolist() == [0, 0, 0]  # den == 0 -> zeros, not a 2*pi rotation
    q = np.array([1e-9, 0, 0, 1 + 1e-9])  # w > 1 is clipped; the input is not modified
    assert quat2axisangle(q).tolist() == [0, 0, 0]
    assert q[3] == 1 + 1e-9
    frozen = np.array([0.0, 0.0, 0.0, 1.5])
    frozen.setflags(write=False)  # e.g. a msgpack-decoded array
    assert quat2axisangle(frozen).tolist() == [0, 0, 0]


def test_quat2axisangle_has_no_antipodal_flip():
    s = math.sqrt(0.5)
    # -q is the same rotation, but robosuite's formula (no w >= 0 normalization) gives the 2*pi - theta form
    np.testing.assert_allclose(quat2axisangle([0, 0, -s, -s]), [0, 0, -3 * math.pi / 2], atol=1e-12)


@pytest.mark.slow
def test_quat2axisangle_matches_robosuite():
    from robosuite.utils.transform_utils import quat2axisangle as robosuite_q2aa

    rng = np.random.default_rng(3)
    for _ in range(200):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        np.testing.assert_array_equal(quat2axisangle(q), robosuite_q2aa(q.copy()))


def test_libero_state_layout_and_dtype():
    s = math.sqrt(0.5)
    state = libero_state([0.1, 0.2, 0.3], [0, 0, s, s], [0.04, -0.04])
    assert state.dtype == np.float32 and state.shape == (8,)
    np.testing.assert_allclose(state, [0.1, 0.2, 0.3, 0, 0, math.pi / 2, 0.04, -0.04], rtol=1e-6)
