"""Read the records of a W&B offline run file (`run-<id>.wandb`), decoded with W&B's own protobuf schema.

W&B writes its transaction log in LevelDB's log format (32 KiB blocks; each chunk: crc32c u32, length u16, type u8;
FULL=1, FIRST=2, MIDDLE=3, LAST=4) after a 7-byte header `:W&B`, magic 0xBEE1, version. wandb no longer ships a
Python reader for it (its Go core reads it), so the framing is read here and every record is parsed by
`wandb.proto.wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def record_payloads(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic) == (b":W&B", 0xBEE1), "not a W&B transaction log"
    pos, parts = HEADER, []
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:  # zero padding
            pos += BLOCK - pos % BLOCK
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            parts = [chunk]
        elif kind == MIDDLE:
            parts.append(chunk)
        elif kind == LAST:
            yield b"".join([*parts, chunk])
            parts = []


def records(path: Path) -> Iterator:
    from wandb.proto import wandb_internal_pb2

    for payload in record_payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        yield record
