"""msgpack with numpy arrays, byte-compatible with openpi's `openpi_client.msgpack_numpy`.

An ndarray travels as a msgpack map whose keys are msgpack **bin** (Python bytes), not str:
`{b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str, b"shape": arr.shape}`; a numpy scalar as
`{b"__npgeneric__": True, b"data": x.item(), b"dtype": x.dtype.str}`. Ordinary keys (`"prompt"`) stay str.
Decoded arrays are read-only views of the received bytes.

Unlike openpi's decoder, this one checks what it decodes (the peer is not trusted): only plain numeric, bool and
string dtypes, and a data length that matches the shape. Object dtypes would turn received bytes into pointers.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

# dtype kinds that may travel: bool, signed/unsigned int, float, bytes, unicode. openpi refuses V, O, c when packing.
_WIRE_KINDS = frozenset("biufSU")
_MAX_NDIM = 32


class WireFormatError(ValueError):
    """A received message is not valid msgpack-numpy."""


def pack_array(obj: Any) -> Any:
    """msgpack `default` hook: numpy arrays and scalars to openpi's bytes-keyed maps."""
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind not in _WIRE_KINDS:
        raise TypeError(f"cannot send numpy dtype {obj.dtype} over the wire")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send {type(obj).__name__} over the wire")


def _wire_dtype(value: Any) -> np.dtype:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise WireFormatError(f"array dtype must be a string, got {type(value).__name__}")
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError) as exc:
        raise WireFormatError(f"unknown array dtype {value!r}") from exc
    if dtype.kind not in _WIRE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WireFormatError(f"array dtype {value!r} is not allowed on the wire")
    return dtype


def unpack_array(obj: dict) -> Any:
    """msgpack `object_hook`: openpi's bytes-keyed maps back to (read-only) arrays and numpy scalars."""
    if b"__ndarray__" in obj:
        dtype = _wire_dtype(obj.get(b"dtype"))
        shape = obj.get(b"shape")
        data = obj.get(b"data")
        if not isinstance(shape, list | tuple) or len(shape) > _MAX_NDIM:
            raise WireFormatError("array shape must be a list of at most 32 sizes")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise WireFormatError(f"array shape {shape!r} must hold non-negative integers")
        if not isinstance(data, bytes):
            raise WireFormatError("array data must be msgpack bin")
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise WireFormatError(
                f"array data has {len(data)} bytes, shape {tuple(shape)} of {dtype.str} needs "
                f"{math.prod(shape) * dtype.itemsize}"
            )
        return np.ndarray(buffer=data, dtype=dtype, shape=tuple(shape))
    if b"__npgeneric__" in obj:
        dtype = _wire_dtype(obj.get(b"dtype"))
        try:
            return dtype.type(obj.get(b"data"))
        except (TypeError, ValueError, OverflowError) as exc:
            raise WireFormatError(f"bad numpy scalar of dtype {dtype.str}") from exc
    return obj


def Packer() -> msgpack.Packer:  # noqa: N802 (mirrors openpi's `msgpack_numpy.Packer`)
    """A reusable packer (cheaper than `packb` when sending many messages)."""
    return msgpack.Packer(default=pack_array)


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=pack_array)


def unpackb(data: bytes) -> Any:
    """Decode one message; raises WireFormatError for anything that is not valid msgpack-numpy."""
    try:
        return msgpack.unpackb(data, object_hook=unpack_array)
    except WireFormatError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise WireFormatError(f"not a msgpack message ({type(exc).__name__}: {exc})") from exc
