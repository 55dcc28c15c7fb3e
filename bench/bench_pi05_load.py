"""Load time and peak memory of a REAL full-size π₀.₅ checkpoint file (not a test).

1. Writes a full-size (3.35 B parameters) random-weight checkpoint in openpi's PyTorch layout (openpi
   `examples/convert_jax_model_to_pytorch.py` output: bf16 `model.safetensors`, `config.json`,
   `assets/physical-intelligence/libero/norm_stats.json`), streaming one tensor at a time (~6.7 GB on disk).
2. Loads it with `load_checkpoint(dir, "pi05_libero").build_model(dtype=...)` in float32 and in bfloat16, each in its
   own process, and reports load time, peak RSS (`ru_maxrss`) ÷ the model's parameter bytes in that dtype (goal
   ≤ 1.1), and whether the file is still mapped afterwards (it must not be).
3. Deletes the checkpoint (unless --keep).

    .venv/bin/python bench/bench_pi05_load.py [--dir DIR] [--keep]

Needs ~7 GB of free disk under DIR and ~14 GB of free memory for the float32 load; run it alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIBERO_ASSET = "physical-intelligence/libero"


def write_checkpoint(out: Path, seed: int = 0) -> int:
    """Stream a bf16 safetensors file with every tensor of the full model (safetensors format: 8-byte header length,
    JSON header, data), plus openpi's config.json and norm stats. Returns the file size."""
    import numpy as np
    import torch

    from evalkit.models.pi05.checkpoint import expected_shapes
    from evalkit.models.pi05.config import Pi05Config
    from evalkit.models.pi05.normalize import write_openpi_norm_stats

    shapes = sorted(expected_shapes(Pi05Config.full(action_horizon=10, discrete_state_input=False)).items())
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes:
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    with open(out / "model.safetensors", "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        for _, shape in shapes:
            tensor = (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)
            handle.write(tensor.view(torch.uint8).numpy().tobytes())
    (out / "config.json").write_text(
        json.dumps({"action_dim": 32, "action_horizon": 10, "precision": "bfloat16"})
    )
    q = {"q01": -np.ones(8), "q99": np.ones(8), "mean": np.zeros(8), "std": np.ones(8)}
    write_openpi_norm_stats(
        out / "assets" / LIBERO_ASSET / "norm_stats.json", q, {k: v[:7] for k, v in q.items()}
    )
    return (out / "model.safetensors").stat().st_size


def load(directory: Path, dtype: str) -> dict[str, object]:
    """One load in this process (run by the parent in a fresh interpreter per dtype)."""
    import torch

    from evalkit.models.pi05.checkpoint import load_checkpoint

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    ckpt = load_checkpoint(directory, "pi05_libero")
    model = ckpt.build_model(dtype=dtype, progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    weights = str((directory / "model.safetensors").resolve())
    return {
        "dtype": dtype,
        "params": sum(p.numel() for p in model.parameters()),
        "param_bytes": param_bytes,
        "load_s": round(seconds, 1),
        "peak_rss": peak,
        "baseline_rss": baseline,
        "ratio": round(peak / param_bytes, 3),
        "file_still_mapped": weights in Path("/proc/self/maps").read_text(),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--dir", type=Path, default=None, help="where to write the checkpoint (default: a temp dir)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    ap.add_argument("--load", type=Path, help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load is not None:
        print(json.dumps(load(args.load, args.dtype)))
        return
    root = args.dir or Path(tempfile.mkdtemp(prefix="pi05_full_"))
    free = shutil.disk_usage(root if root.exists() else root.parent).free
    if free < 9 << 30:
        sys.exit(f"only {free / 2**30:.1f} GiB free under {root}; need ~9 GiB")
    ckpt = root / "pi05_full"
    try:
        t = time.perf_counter()
        size = write_checkpoint(ckpt)
        print(
            f"wrote {ckpt} ({size / 1e9:.2f} GB bf16 safetensors) in {time.perf_counter() - t:.0f} s",
            flush=True,
        )
        print(
            f"{'dtype':<9} {'params':>8} {'param GiB':>10} {'load s':>7} {'peak RSS GiB':>13} {'ratio':>6} {'mapped':>7}"
        )
        for dtype in ("float32", "bfloat16"):
            cmd = [sys.executable, __file__, "--load", str(ckpt), "--dtype", dtype]
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            print(
                f"{dtype:<9} {out['params'] / 1e9:>7.3f}B {out['param_bytes'] / 2**30:>10.2f} {out['load_s']:>7.1f} "
                f"{out['peak_rss'] / 2**30:>13.2f} {out['ratio']:>6.3f} {out['file_still_mapped']!s:>7}",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(root if args.dir is None else ckpt, ignore_errors=True)


if __name__ == "__main__":
    main()
