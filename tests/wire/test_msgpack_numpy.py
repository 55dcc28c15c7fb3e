"""openpi's msgpack-numpy wire format: round trips, exact bytes, and refusal of what must not be decoded."""

import msgpack
import numpy as np
import pytest

from evalkit.wire.msgpack_numpy import WireFormatError, packb, unpackb

DTYPES = ["u1", "i4", "i8", "f2", "f4", "f8", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (7,), (2, 3, 4), (224, 224, 3)])
def test_array_round_trip(dtype, shape):
    rng = np.random.default_rng(0)
    arr = np.asarray(rng.normal(size=shape) * 100).astype(dtype)
    back = unpackb(packb(arr))
    assert isinstance(back, np.ndarray)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    assert not back.flags.writeable  # as openpi: decoded arrays are read-only views of the message


def test_non_contiguous_and_big_endian_arrays():
    base = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    for arr in (base.T, base[:, ::2, 1:], base[..., 3], np.asfortranarray(base)):
        assert not arr.flags.c_contiguous or arr is base[..., 3]
        np.testing.assert_array_equal(unpackb(packb(arr)), arr)
    big = np.arange(5, dtype=">i4")
    back = unpackb(packb(big))
    assert back.dtype.str == ">i4"
    np.testing.assert_array_equal(back, big)


@pytest.mark.parametrize(
    "scalar", [np.float32(1.5), np.float16(0.5), np.int64(-(2**40)), np.uint8(255), np.bool_(True)]
)
def test_numpy_scalar_round_trip(scalar):
    back = unpackb(packb(scalar))
    assert type(back) is type(scalar) and back == scalar


def test_float64_scalar_travels_as_a_plain_float():
    # np.float64 subclasses float, so msgpack packs it natively (as openpi's packer does).
    back = unpackb(packb({"x": np.float64(-2.25)}))
    assert back == {"x": -2.25} and type(back["x"]) is float


def test_nested_containers_and_plain_values():
    msg = {
        "prompt": "pick up the black bowl",
        "raw": b"\x00\x01",
        "observation/state": np.linspace(0, 1, 8),
        "nested": {"deeper": {"a": np.ones((2, 2), np.int32), "n": None, "f": 1.25, "i": -3}},
        "list": [1, "two", np.int64(3), [np.zeros(2, np.uint8)]],
        "strings": np.array(["ab", "c"]),
    }
    back = unpackb(packb(msg))
    assert back["prompt"] == msg["prompt"] and back["raw"] == msg["raw"]
    np.testing.assert_array_equal(back["observation/state"], msg["observation/state"])
    np.testing.assert_array_equal(back["nested"]["deeper"]["a"], msg["nested"]["deeper"]["a"])
    assert back["nested"]["deeper"]["n"] is None and back["nested"]["deeper"]["f"] == 1.25
    assert back["list"][:2] == [1, "two"] and back["list"][2] == 3 and isinstance(back["list"][2], np.int64)
    np.testing.assert_array_equal(back["list"][3][0], np.zeros(2, np.uint8))
    np.testing.assert_array_equal(back["strings"], msg["strings"])


def test_exact_bytes_of_a_224x224x3_uint8_image():
    """openpi-client `msgpack_numpy.py` byte layout: bin keys, `|u1` as str, shape as an array of msgpack uints."""
    img = np.arange(224 * 224 * 3, dtype=np.uint64).astype(np.uint8).reshape(224, 224, 3)
    data = packb(img)
    header = b"\x84" + b"\xc4\x0b__ndarray__" + b"\xc3" + b"\xc4\x04data" + b"\xc6\x00\x02\x4c\x00"
    trailer = b"\xc4\x05dtype" + b"\xa3|u1" + b"\xc4\x05shape" + b"\x93\xcc\xe0\xcc\xe0\x03"
    assert data == header + img.tobytes() + trailer
    # Keys are msgpack bin: a plain decoder sees bytes keys, never str ones.
    plain = msgpack.unpackb(data)
    assert set(plain) == {b"__ndarray__", b"data", b"dtype", b"shape"}
    # Ordinary keys stay str.
    assert packb({"prompt": "x"}) == b"\x81\xa6prompt\xa1x"


def test_refuses_to_pack_object_void_and_complex():
    for bad in (np.array([object()]), np.zeros(2, dtype="V4"), np.zeros(2, np.complex64), np.complex128(1j)):
        with pytest.raises(TypeError):
            packb(bad)


def _array_map(dtype="|u1", shape=(2,), data=b"\x00\x00"):
    return msgpack.packb({b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape})


@pytest.mark.parametrize(
    "message, reason",
    [
        (_array_map(dtype="|O"), "not allowed"),
        (_array_map(dtype="|V2"), "not allowed"),
        (_array_map(dtype="<c8", data=b"\x00" * 16), "not allowed"),
        (_array_map(dtype="[('a', '<i4')]"), "dtype"),
        (_array_map(dtype="no-such-dtype"), "unknown array dtype"),
        (_array_map(dtype=7), "dtype must be a string"),
        (_array_map(shape=(3,)), "needs 3"),
        (_array_map(shape=(-2,)), "non-negative"),
        (_array_map(shape="2"), "shape"),
        (_array_map(data="ab"), "bin"),
        (msgpack.packb({b"__npgeneric__": True, b"data": "x", b"dtype": "<f4"}), "scalar"),
        (b"\xc1", "not a msgpack message"),
        (b"\x92\x01", "not a msgpack message"),
        (b"\x01\x02", "not a msgpack message"),
        (b"", "not a msgpack message"),
    ],
)
def test_refuses_malformed_messages(message, reason):
    with pytest.raises(WireFormatError, match=reason):
        unpackb(message)
