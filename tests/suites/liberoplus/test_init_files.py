"""LIBERO-plus init files are read as plain numpy arrays, and nothing else is unpickled."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from evalkit.core.errors import EvalkitError
from evalkit.suites.liberoplus.catalog import suite_variants
from evalkit.suites.liberoplus.init_files import load_init_states


@pytest.mark.parametrize("dimension", ["camera", "language", "layout"])
def test_equals_torch_load(dimension: str) -> None:
    v = next(v for v in suite_variants("libero_goal") if v.runnable and v.info.dimension == dimension)
    flat = dimension == "layout"
    states = load_init_states(v.init_file, flat=flat)
    expected = torch.load(
        v.init_file, weights_only=False
    )  # trusted here: the wheel's own file, as a reference
    expected = expected.reshape(1, -1) if flat else expected
    assert states.dtype == expected.dtype
    np.testing.assert_array_equal(states, expected)
    assert states.ndim == 2 and states.shape[1] > 50


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_other_globals(tmp_path) -> None:
    path = tmp_path / "evil.pruned_init"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(_Exploit(), protocol=2))
    with pytest.raises(EvalkitError, match=r"refusing (posix|os)\.system"):
        load_init_states(str(path))


def test_refuses_torch_tensors(tmp_path) -> None:
    path = tmp_path / "tensor.pruned_init"
    torch.save(torch.zeros(2, 3), path)
    with pytest.raises(EvalkitError, match="refusing"):
        load_init_states(str(path))


def test_not_a_zip_is_one_clear_error(tmp_path) -> None:
    path = tmp_path / "junk.pruned_init"
    path.write_bytes(b"not a zip")
    with pytest.raises(EvalkitError, match="cannot read LIBERO-plus init file"):
        load_init_states(str(path))
