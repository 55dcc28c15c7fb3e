"""Reading checkpoint files: safetensors, json and npz only; pickles are refused, never opened.

Tensors are copied from safetensors files into storage the caller owns with plain `read` calls. safetensors'
own `safe_open(...).get_tensor` returns tensors backed by a map of the whole file, which stays resident as long as
any of them lives (and a bf16 model loaded that way keeps reading the disk during its first inference). The file
format is simple (safetensors `README.md`, "Format": 8-byte little-endian header length, a JSON header of
`{name: {dtype, shape, data_offsets}}`, then the data); the library still validates each file first (`safe_open`).
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.paths import inside

if TYPE_CHECKING:
    import torch

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
CHUNK_BYTES = 32 << 20  # scratch buffer for tensors whose stored dtype differs from the target's
DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise EvalkitError(
            f"{path} is a pickle-based file; evalkit never unpickles checkpoints. "
            "Convert it to safetensors (model.safetensors) with the tool that made it"
        )


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalkitError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise EvalkitError(f"{path}: expected a JSON object")
    return data


def weight_files(directory: Path) -> list[Path]:
    """`model.safetensors`, or the shards listed in `model.safetensors.index.json`."""
    single = directory / WEIGHTS_FILE
    if single.is_file():
        return [single]
    index = directory / WEIGHTS_INDEX
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise EvalkitError(f"{index} has no weight_map")
        names = sorted(set(weight_map.values()))
        if not all(isinstance(name, str) for name in names):
            raise EvalkitError(f"{index}: shard names must be strings")
        files = [inside(directory, name, "read", named_in=index) for name in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise EvalkitError(
                f"{directory}: shards listed in {WEIGHTS_INDEX} are missing: {', '.join(missing)}"
            )
        return files
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise EvalkitError(
            f"{directory} has only pickle-based weights ({', '.join(pickles)}); evalkit reads safetensors only "
            "and never unpickles. Convert them to model.safetensors"
        )
    raise EvalkitError(f"{directory} has no {WEIGHTS_FILE}")


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor's bytes are in a safetensors file."""

    file: Path
    dtype: str  # safetensors name, e.g. "BF16"
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int


def safetensors_index(files: Iterable[Path]) -> dict[str, StoredTensor]:
    """Every tensor of the files (validated by safetensors first), by its name in the file."""
    from safetensors import safe_open

    out: dict[str, StoredTensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as exc:  # safetensors raises its own error types
            raise EvalkitError(f"{path} is not a readable safetensors file: {exc}") from exc
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER_BYTES:
                raise EvalkitError(f"{path}: safetensors header of {length} bytes is too large")
            header = json.loads(handle.read(length))
        base = 8 + length
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            start, end = entry["data_offsets"]
            out[name] = StoredTensor(path, entry["dtype"], tuple(entry["shape"]), base + start, base + end)
    return out


def safetensors_shapes(files: Iterable[Path]) -> dict[str, tuple[int, ...]]:
    return {name: stored.shape for name, stored in safetensors_index(files).items()}


def read_tensors_into(
    stored: Mapping[str, StoredTensor],
    targets: Mapping[str, torch.Tensor],
    key_map: Mapping[str, str] | None = None,
    progress: bool | None = None,
) -> None:
    """Copy each stored tensor (file name -> our name via `key_map`; None: same name) into `targets[name]`, a
    contiguous CPU tensor of the right shape, casting to its dtype. Nothing of the file stays mapped or referenced.

    `progress`: a tqdm bar over bytes on stderr (None: only on a terminal)."""
    import torch
    from tqdm import tqdm

    if sys.byteorder != "little":  # pragma: no cover
        raise EvalkitError("reading safetensors needs a little-endian machine")
    plan = []
    for file_key, item in stored.items():
        name = file_key if key_map is None else key_map.get(file_key)
        if name is None or name not in targets:
            continue
        target = targets[name]
        if tuple(target.shape) != item.shape:
            raise EvalkitError(
                f"{item.file}: {file_key} has shape {item.shape}, expected {tuple(target.shape)}"
            )
        if item.dtype not in DTYPE_NAMES:
            raise EvalkitError(f"{item.file}: {file_key} has unsupported dtype {item.dtype}")
        if not target.is_contiguous() or target.device.type != "cpu":
            raise EvalkitError(f"internal error: target for {name} is not a contiguous CPU tensor")
        src_dtype = getattr(torch, DTYPE_NAMES[item.dtype])
        if item.end - item.start != target.numel() * src_dtype.itemsize:
            raise EvalkitError(f"{item.file}: {file_key} has {item.end - item.start} bytes, not its shape's")
        plan.append((item, target, src_dtype))
    plan.sort(key=lambda p: (str(p[0].file), p[0].start))  # sequential reads
    total = sum(item.end - item.start for item, _, _ in plan)
    handles: dict[Path, Any] = {}
    try:
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="pi05 weights",
            file=sys.stderr,
            disable=_off(progress),
        ) as bar:
            for item, target, src_dtype in plan:
                if item.file not in handles:
                    handles[item.file] = open(item.file, "rb", buffering=0)  # noqa: SIM115 (closed below)
                _read_one(handles[item.file], item, target, src_dtype)
                bar.update(item.end - item.start)
    finally:
        for handle in handles.values():
            handle.close()


def _off(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def _read_one(handle: Any, item: StoredTensor, target: torch.Tensor, src_dtype: torch.dtype) -> None:
    import torch

    flat = target.view(-1)
    if flat.numel() == 0:
        return
    handle.seek(item.start)
    if target.dtype == src_dtype:
        _read_exactly(handle, flat.view(torch.uint8).numpy(), item)
        return
    per_chunk = max(1, CHUNK_BYTES // src_dtype.itemsize)
    scratch = torch.empty(min(per_chunk, flat.numel()), dtype=src_dtype)
    for begin in range(0, flat.numel(), per_chunk):
        n = min(per_chunk, flat.numel() - begin)
        _read_exactly(handle, scratch[:n].view(torch.uint8).numpy(), item)
        flat[begin : begin + n].copy_(scratch[:n])


def _read_exactly(handle: Any, buffer: np.ndarray, item: StoredTensor) -> None:
    view = memoryview(buffer).cast("B")
    done = 0
    while done < len(view):
        got = handle.readinto(view[done:])
        if not got:
            raise EvalkitError(f"{item.file} ends early (truncated safetensors file)")
        done += got


def read_safetensors(
    stored: Mapping[str, StoredTensor], key_map: Mapping[str, str] | None, names: Collection[str]
) -> dict[str, torch.Tensor]:
    """The tensors called `names` (after `key_map`; None: file names) in their stored dtype, in memory of their own."""
    import torch

    targets = {}
    for file_key, item in stored.items():
        name = file_key if key_map is None else key_map.get(file_key)
        if name in names and item.dtype in DTYPE_NAMES:
            targets[name] = torch.empty(item.shape, dtype=getattr(torch, DTYPE_NAMES[item.dtype]))
    read_tensors_into(stored, targets, key_map, progress=False)
    return targets


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """A flat npz (JAX names), read without pickle."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}
    except ValueError as exc:
        raise EvalkitError(
            f"{path} holds pickled objects; evalkit reads plain numeric npz arrays only"
        ) from exc
    except (OSError, EOFError) as exc:
        raise EvalkitError(f"cannot read {path}: {exc}") from exc


def read_orbax_params(params_dir: Path) -> dict[str, np.ndarray]:
    """openpi JAX `params/` (orbax OCDBT) → flat `a/b/c` dict. Needs the optional `orbax-checkpoint` package."""
    try:
        import orbax.checkpoint as ocp  # type: ignore[import-not-found]
    except ImportError as exc:
        raise EvalkitError(
            f"{params_dir} is an openpi JAX (orbax) checkpoint; reading it needs the optional package "
            "orbax-checkpoint (pip install -e '.[orbax]'), or convert it on a machine that has it with "
            "`evalkit convert --src <ckpt> --out DIR --config NAME`"
        ) from exc
    try:
        restored = ocp.PyTreeCheckpointer().restore(str(params_dir.resolve()))
    except Exception as exc:  # orbax/tensorstore raise many types
        raise EvalkitError(
            f"cannot read the orbax checkpoint {params_dir}: {type(exc).__name__}: {exc}"
        ) from exc
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: tuple[str, ...]) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, prefix + (str(key),))
            return
        parts = prefix[:-1] if prefix and prefix[-1] == "value" else prefix  # nnx.State leaves end in "value"
        flat["/".join(parts)] = np.asarray(node)

    walk(restored, ())
    if flat and all(k.startswith("params/") for k in flat):
        flat = {k[len("params/") :]: v for k, v in flat.items()}
    return flat
