"""LIBERO-plus init files, read without `torch.load`.

Upstream writes them with `torch.save` (a zip with `<name>/data.pkl`) and reads them with
`torch.load(path, weights_only=False)` (`liberoplus/benchmark/__init__.py`), which would run any pickle. They hold
one plain numpy array, so evalkit unpickles `data.pkl` with an unpickler that admits only what a numpy array
needs (`numpy.core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype`, `_codecs.encode`) and refuses
torch storages (persistent ids) and every other global.
"""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np

from evalkit.core.errors import EvalkitError

MAX_PICKLE_BYTES = 64 * 2**20


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy 2
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct as fn
    return fn


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in (
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        ):
            return _reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing {module}.{name}: init files hold plain numpy arrays")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing torch storage: init files hold plain numpy arrays")


def load_init_states(path: str, flat: bool = False) -> np.ndarray:
    """The (n, state_dim) initial MuJoCo states of a variant. `flat`: a single state stored as a 1-D array
    (the `_add_` / `_level` files, which upstream reshapes to (1, -1))."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pickles) != 1:
                raise EvalkitError(f"LIBERO-plus init file {path} is not a torch.save archive of one object")
            info = archive.getinfo(pickles[0])
            if info.file_size > MAX_PICKLE_BYTES:
                raise EvalkitError(
                    f"LIBERO-plus init file {path} is implausibly large ({info.file_size} bytes)"
                )
            data = archive.read(info)
        states = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise EvalkitError(f"cannot read LIBERO-plus init file {path}: {exc}") from exc
    if not isinstance(states, np.ndarray) or not np.issubdtype(states.dtype, np.number):
        raise EvalkitError(f"LIBERO-plus init file {path} does not hold a numeric numpy array")
    if flat:
        states = states.reshape(1, -1)
    if states.ndim != 2 or not len(states):
        raise EvalkitError(f"LIBERO-plus init file {path} holds no usable states (shape {states.shape})")
    return states
