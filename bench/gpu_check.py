"""Is evalkit ready for this GPU? `make gpu-check` (python bench/gpu_check.py). Within 5 minutes on a CUDA device:

1. parity of the pi05 model on the device against the CPU, on the tiny random checkpoint, in float32 and bfloat16;
2. full-size (~3.3B) random-weight latency at batch 1, 4, 16, 64: prefix pass, one denoising step, whole sample;
   achieved FLOP/s (counted analytically, bench/bench_pi05_model.py) / the device's peak bf16 FLOP/s; peak memory;
3. a short LIBERO run through `evalkit eval --ray local` with full-size random weights, in observations/s.

Without CUDA (or with --tiny) the same code runs at tiny size on the CPU, and `make test` runs it that way
(tests/bench/test_gpu_check.py) so that it keeps working before a GPU is there. Exit status 1 if parity fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pi05_model import count_flops, make_inputs, matmul_flops_per_s, random_init_  # noqa: E402

from evalkit.models.pi05.checkpoint import NAMED_CONFIGS, load_checkpoint, write_evalkit_checkpoint  # noqa: E402
from evalkit.models.pi05.cli import (  # noqa: E402
    make_tiny_checkpoint,
    tiny_norm_stats,
    tiny_training_sentences,
)
from evalkit.models.pi05.config import Pi05Config  # noqa: E402
from evalkit.models.pi05.model import Pi05Model  # noqa: E402

# Dense bf16 tensor-core peaks from the vendors' data sheets (FLOP/s), by a substring of the device name.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}
TOLERANCE = {"float32": 1e-3, "bfloat16": 0.1}  # max |actions - CPU float32 actions| (normalized units)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def clock(device: str, fn) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def time_batch(model: Pi05Model, c: Pi05Config, b: int, device: str, dtype: torch.dtype) -> dict[str, float]:
    """Seconds of the prefix pass, one denoising step and a whole sample at batch b (after a warm-up)."""
    x = {k: _to(v, device) for k, v in make_inputs(c, b, prompt_len=20, dtype=dtype).items()}
    prefix_inputs = {k: v for k, v in x.items() if k != "noise"}
    t_vec = torch.ones(b, device=device)
    with torch.no_grad():
        cache = model.prefix_kv_cache(**prefix_inputs)
        model.velocity(cache, x["noise"], t_vec)
        return {
            "prefix": clock(device, lambda: model.prefix_kv_cache(**prefix_inputs)),
            "step": clock(device, lambda: model.velocity(cache, x["noise"], t_vec)),
            "whole": clock(device, lambda: model.sample_actions(**x)),
        }


def parity(device: str, checkpoint: Path) -> bool:
    ckpt = load_checkpoint(checkpoint)
    c = ckpt.config
    x = make_inputs(c, 2, prompt_len=8)
    with torch.no_grad():
        reference = ckpt.build_model("cpu", "float32").sample_actions(**x)
        ok = True
        for dtype in ("float32", "bfloat16"):
            model = ckpt.build_model(device, dtype)
            out = model.sample_actions(**{k: _to(v, device) for k, v in x.items()}).float().cpu()
            diff = (out - reference).abs().max().item()
            passed = diff <= TOLERANCE[dtype]
            ok &= passed
            print(
                f"parity {device} {dtype} vs cpu float32: max |diff| {diff:.2e} "
                f"(tolerance {TOLERANCE[dtype]:g}) {'OK' if passed else 'FAIL'}",
                flush=True,
            )
    return ok


def _to(value, device):
    return {k: v.to(device) for k, v in value.items()} if isinstance(value, dict) else value.to(device)


def latency(device: str, c: Pi05Config, batches: list[int], dtype: torch.dtype) -> None:
    model = random_init_(Pi05Model.empty(c, dtype=dtype, device=device)).eval()
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        peak_name = f"{name} bf16 peak" if peak else f"{name} (peak unknown: measured bf16 matmul)"
        if peak is None:
            a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
            a @ a
            sync(device)
            start = time.perf_counter()
            a @ a
            sync(device)
            peak = 2 * 8192**3 / (time.perf_counter() - start)
    else:
        peak, peak_name = matmul_flops_per_s(1024), "this CPU's measured fp32 matmul"
    print(
        f"latency, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, {dtype}, vs {peak_name} "
        f"{peak / 1e12:.2f} TFLOP/s",
        flush=True,
    )
    print(f"{'B':>3} {'prefix ms':>10} {'step ms':>9} {'sample ms':>10} {'TFLOP/s':>8} {'of peak':>8}")
    for b in batches:
        times = time_batch(model, c, b, device, dtype)
        achieved = count_flops(c, b)["whole"] / times["whole"]
        print(
            f"{b:>3} {times['prefix'] * 1e3:>10.1f} {times['step'] * 1e3:>9.1f} {times['whole'] * 1e3:>10.1f} "
            f"{achieved / 1e12:>8.3f} {achieved / peak:>8.3f}",
            flush=True,
        )
    if device.startswith("cuda"):
        print(f"peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (torch allocator)")
    else:
        print(
            f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process RSS)"
        )


def full_size_checkpoint(out: Path) -> Path:
    """pi05_libero's training config and the full model size, random weights, the tiny tokenizer (fewer pieces than the
    model's vocabulary, so any of its tokens is valid)."""
    from evalkit.models.pi05.normalize import FeatureNorm, NormSpec
    from evalkit.models.pi05.tokenizer import TOKENIZER_FILENAME, train_tiny_sentencepiece

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_sentencepiece(out / TOKENIZER_FILENAME, tiny_training_sentences())
    training_config = NAMED_CONFIGS["pi05_libero"]
    config = Pi05Config.full(
        action_horizon=training_config.action_horizon,
        max_token_len=training_config.max_token_len,
        discrete_state_input=training_config.discrete_state_input,
    )
    weights = random_init_(Pi05Model.empty(config, dtype=torch.bfloat16)).state_dict()
    state, actions = tiny_norm_stats("libero")
    norm = NormSpec(FeatureNorm("quantile", state), FeatureNorm("quantile", actions))
    return write_evalkit_checkpoint(out, weights, config, training_config, norm, "bfloat16", tokenizer)


def libero_run(device: str, checkpoint: Path, out: Path, workers: int, max_steps: int) -> None:
    cmd = [sys.executable, "-m", "evalkit.cli", "eval", "--suite", "libero_spatial", "--policy", "pi05"]
    cmd += ["--checkpoint", str(checkpoint), "--device", device, "--ray", "local", "--tasks", "0"]
    cmd += ["--episodes-per-task", str(workers), "--workers", str(workers), "--max-steps", str(max_steps)]
    cmd += ["--dtype", "bfloat16" if device.startswith("cuda") else "float32", "--quiet", "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    import sqlite3

    db = sqlite3.connect(out / "episodes.sqlite")
    calls, errors = db.execute(
        "SELECT SUM(policy_calls), SUM(termination = 'error') FROM episodes"
    ).fetchone()
    db.close()
    print(
        f"LIBERO through --ray local: {workers} episodes x {max_steps} steps, {calls} observations in {wall:.0f} s "
        f"(Ray start-up included) = {calls / wall:.2f} obs/s, {errors} errors",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU even if CUDA is there")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = "cpu" if args.tiny else args.device
    tiny = device == "cpu"
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        fixture = make_tiny_checkpoint(tmp / "tiny", "libero", seed=0)
        ok = parity(device, fixture)
        if tiny:
            c = load_checkpoint(fixture).config
            latency(device, c, [1, 4], torch.float32)
            libero_run(device, fixture, tmp / "run", workers=1, max_steps=10)
        else:
            full = Pi05Config.full(action_horizon=10)
            latency(device, dataclasses.replace(full), [1, 4, 16, 64], torch.bfloat16)
            libero_run(device, full_size_checkpoint(tmp / "full"), tmp / "run", workers=8, max_steps=50)
    print(
        f"gpu-check {'passed' if ok else 'FAILED'} on {device}{' (tiny, CPU)' if tiny else ''} "
        f"in {time.time() - start:.0f} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
