"""Reading files: pickles are refused unopened; weights are copied into the model's own memory."""

import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05 import cli
from evalkit.models.pi05.checkpoint import (
    convert_checkpoint,
    load_checkpoint,
)
from tests.models.pi05.checkpoint.helpers import FIXTURE_CONFIG, mapped_ranges, tensors_inside


class _Boom:
    def __reduce__(self):
        return (open, (str(_Boom.marker), "w"))


def test_pickles_are_refused_never_unpickled(tmp_path):
    _Boom.marker = tmp_path / "unpickled"
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(EvalkitError, match="never unpickles"):
        load_checkpoint(d)
    pt = tmp_path / "model.pt"
    pt.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(EvalkitError, match="never unpickles"):
        load_checkpoint(pt)
    npz = tmp_path / "params.npz"
    np.savez(npz, x=np.array([_Boom()], dtype=object))
    with pytest.raises(EvalkitError, match="pickled objects"):
        convert_checkpoint(npz, tmp_path / "out", "pi05_libero", model_config_file=FIXTURE_CONFIG)
    assert not _Boom.marker.exists()


@pytest.mark.parametrize("stored", ["float32", "bfloat16"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loaded_model_shares_no_storage_with_the_file(tmp_path, stored, dtype):
    src = cli.make_tiny_checkpoint(tmp_path / "tiny", "libero", seed=0)
    path = convert_checkpoint(src, tmp_path / stored, dtype=stored) if stored != "float32" else src
    weights = path / "model.safetensors"
    # the check can fail: safetensors' own tensors live in a map of the file
    with safe_open(str(weights), "pt") as handle:
        mapped = {k: handle.get_tensor(k) for k in list(handle.keys())[:3]}
    assert tensors_inside(mapped, mapped_ranges(weights)) == list(mapped)
    del mapped

    model = load_checkpoint(path).build_model(dtype=dtype)
    tensors = model.state_dict()
    assert mapped_ranges(weights) == []  # the file is not mapped at all any more
    before = {k: v.clone() for k, v in tensors.items()}
    weights.write_bytes(b"\0" * weights.stat().st_size)  # same inode, new content: the model must not see it
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert weights.stat().st_size > 0 and any(v.abs().sum() > 0 for v in tensors.values())


def test_truncated_weights_are_an_error(tmp_path):
    path = cli.make_tiny_checkpoint(tmp_path / "tiny", "libero", seed=0)
    ckpt = load_checkpoint(path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(EvalkitError, match="not a readable safetensors file"):
        ckpt.build_model()
