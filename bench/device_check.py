"""Is evalkit's π₀.₅ ready for this accelerator? Runs on a bare GPU machine: Python ≥ 3.11, torch with CUDA, numpy,
safetensors and sentencepiece, nothing else (no venv, no MuJoCo, no Ray, no network), from the repository root:

    PYTHONPATH=. python bench/device_check.py            # CUDA; well under 8 minutes on an H100/H200
    PYTHONPATH=. python bench/device_check.py --tiny     # a tiny model on the CPU (what the test runs)

1. parity: the golden fixture (tests/fixtures/pi05_tiny_a, openpi's JAX reference) on the device in float32 and
   bfloat16 against the CPU in float32 and against the JAX actions, trimmed and untrimmed;
2. the full-size model (~3.3B parameters, pi05_libero's horizon 10) with random bfloat16 weights created directly
   on the device; the sampler the policy uses (`Pi05Sampler`: batch buckets, trimmed prefix, CUDA graphs with
   `compile`) at batch 1, 4, 16, 64, eager and compiled (one CUDA graph per shape), trimmed and untrimmed:
   latency, observations/s, achieved TFLOP/s (counted analytically, bench/bench_pi05_model.py) ÷ the device's
   dense bf16 peak (PEAK_BF16), peak memory;
3. determinism: the deterministic sampler gives bit-identical actions twice and whatever the batch composition.

Each section has a time budget; what does not fit is skipped and said so. With $OUT set, every figure goes to
$OUT/device_check.json. The last line is always
`device=NAME b1_ms=X b64_obs_per_s=Y mfu_b64=Z trim_speedup_b64=W` (compiled and trimmed where measured).
Exit status 1 if parity fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pi05_model import count_flops  # noqa: E402

from evalkit.models.pi05.config import GemmaConfig, Pi05Config, SiglipConfig  # noqa: E402
from evalkit.models.pi05.model import Pi05Model, kept_prompt_length  # noqa: E402
from evalkit.models.pi05.sampler import Pi05Sampler, SamplerOptions  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s; the first name contained in
# torch.cuda.get_device_name() wins, so the specific variants come first.
PEAK_BF16 = (
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
)
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "pi05_tiny_a"
# max |actions − reference|: float32 on any device vs the CPU and vs JAX (the fixture's own tolerance); bfloat16
# as a fraction of max |actions|, as tests/models/pi05/test_parity.py allows.
FP32_TOLERANCE, BF16_RELATIVE = 1e-4, 0.1
BATCHES = (1, 4, 16, 64)
PROMPT_TOKENS = 20  # a LIBERO instruction; padded to max_token_len untrimmed, to 32 trimmed
# seconds each section may start within (from the script's start); compile time counts
BUDGET_S = {"parity": 60, "latency": 330, "determinism": 400}


class Clock:
    def __init__(self, device: torch.device):
        self.device = device
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def peak_flops(device: torch.device) -> tuple[float, str]:
    """(FLOP/s, what it is): the data-sheet bf16 peak, else a measured bf16 (CUDA) or fp32 (CPU) matmul."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in PEAK_BF16:
            if key in name:
                return tflops * 1e12, f"{key} dense bf16 peak (data sheet)"
        dtype, n, what = torch.bfloat16, 8192, "measured bf16 matmul (device not in PEAK_BF16)"
    else:
        dtype, n, what = torch.float32, 1024, "measured fp32 matmul on this CPU"
    a = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(4):
        clock = Clock(device)
        clock.sync()
        t = time.perf_counter()
        a @ a
        clock.sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best, what


# -- 1. parity on the golden fixture ---------------------------------------------------------------------------
def load_fixture(device: torch.device, dtype: torch.dtype) -> tuple[Pi05Model, dict, dict]:
    from safetensors.torch import load_file

    config = Pi05Config.from_fixture(json.loads((FIXTURE / "config.json").read_text()))
    model = Pi05Model(config)
    model.load_state_dict(load_file(str(FIXTURE / "model.safetensors")), strict=True)
    model = model.to_dtype(dtype).to(device).eval()
    raw = dict(np.load(FIXTURE / "inputs.npz", allow_pickle=False))
    keys = config.image_keys
    inputs = {
        "images": {k: torch.from_numpy(raw[f"image/{k}"]).to(device) for k in keys},
        "image_masks": {k: torch.from_numpy(raw[f"image_mask/{k}"]).to(device) for k in keys},
        "tokens": torch.from_numpy(raw["tokenized_prompt"]).long().to(device),
        "token_mask": torch.from_numpy(raw["tokenized_prompt_mask"]).to(device),
        "noise": torch.from_numpy(raw["noise"]).to(device),
    }
    expected = dict(np.load(FIXTURE / "expected.npz", allow_pickle=False))
    return model, inputs, expected


def parity(device: torch.device) -> dict[str, Any]:
    """Max |actions − reference| on the golden fixture, per dtype and trim, and whether each is within tolerance."""
    torch.backends.cudnn.allow_tf32 = False  # float32 parity means float32 convolutions too
    cpu_model, cpu_inputs, expected = load_fixture(torch.device("cpu"), torch.float32)
    with torch.no_grad():
        reference = cpu_model.sample_actions(**cpu_inputs, trim=False)
    jax = torch.from_numpy(expected["actions"])
    scale = float(jax.abs().max())
    rows = {}
    for dtype in (torch.float32, torch.bfloat16):
        model, inputs, _ = load_fixture(device, dtype)
        for trim in (False, True):
            with torch.no_grad():
                actions = model.sample_actions(**inputs, trim=trim).float().cpu()
            vs_cpu = float((actions - reference).abs().max())
            vs_jax = float((actions - jax).abs().max())
            limit = FP32_TOLERANCE if dtype == torch.float32 else BF16_RELATIVE * scale
            name = f"{str(dtype).removeprefix('torch.')}_{'trimmed' if trim else 'untrimmed'}"
            rows[name] = {
                "vs_cpu_fp32": vs_cpu,
                "vs_jax": vs_jax,
                "tolerance": limit,
                "ok": max(vs_cpu, vs_jax) <= limit,
            }
            print(
                f"parity {device.type} {name:<18} max|diff| vs CPU fp32 {vs_cpu:.2e}, vs JAX {vs_jax:.2e} "
                f"(tolerance {limit:.1e}) {'OK' if rows[name]['ok'] else 'FAIL'}",
                flush=True,
            )
        del model
    torch.backends.cudnn.allow_tf32 = True
    return rows


# -- 2. latency ------------------------------------------------------------------------------------------------
def tiny_config() -> Pi05Config:
    """Small enough for a 2-core CPU at batch 64: 28×28 images (4 patches per slot), a 64-position prompt."""
    vlm = GemmaConfig(
        width=64, depth=2, mlp_dim=128, num_heads=2, num_kv_heads=1, head_dim=32, vocab_size=512
    )
    expert = dataclasses.replace(vlm, width=32, mlp_dim=64)
    vision = SiglipConfig(width=32, depth=2, mlp_dim=64, num_heads=2, image_size=28, out_dim=64)
    return Pi05Config(vlm, expert, vision, action_horizon=10, max_token_len=64)


def random_model(config: Pi05Config, device: torch.device, dtype: torch.dtype) -> Pi05Model:
    """Random weights made on the device itself (no checkpoint, no host copy): N(0, 1/fan_in) matrices."""
    model = Pi05Model.empty(config, dtype=dtype, device=device).eval()
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, min(0.1, p.shape[-1] ** -0.5), generator=generator)
    return model


def libero_batch(config: Pi05Config, b: int) -> dict[str, Any]:
    """CPU inputs as the policy gives them: uint8 images, the right wrist masked, a PROMPT_TOKENS-token prompt."""
    g = torch.Generator().manual_seed(b)
    s = config.siglip.image_size
    token_mask = (torch.arange(config.max_token_len) < PROMPT_TOKENS)[None].repeat(b, 1)
    return {
        "images": {
            k: torch.randint(0, 256, (b, s, s, 3), generator=g, dtype=torch.uint8) for k in config.image_keys
        },
        "image_masks": {k: torch.tensor([k != "right_wrist_0_rgb"] * b) for k in config.image_keys},
        "tokens": torch.randint(3, config.paligemma.vocab_size, (b, config.max_token_len), generator=g)
        * token_mask,
        "token_mask": token_mask,
        "noise": torch.randn(b, config.action_horizon, config.action_dim, generator=g),
    }


def time_sampler(sampler: Pi05Sampler, x: dict, clock: Clock, repeats: int) -> float:
    """Seconds per call, min over `repeats` after two warm-up calls (the first captures a CUDA graph)."""
    for _ in range(2):
        out = sampler(**x)
    if not torch.isfinite(out).all():
        raise RuntimeError("non-finite actions")
    best = float("inf")
    for _ in range(repeats):
        clock.sync()
        t = time.perf_counter()
        sampler(**x)
        clock.sync()
        best = min(best, time.perf_counter() - t)
    return best


def latency(
    model: Pi05Model, clock: Clock, peak: float, compiled: bool, budget_s: float
) -> list[dict[str, Any]]:
    c = model.config
    rows = []
    print(
        f"{'mode':<9} {'prefix':<10} {'B':>3} {'ms/call':>9} {'obs/s':>8} {'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>9}"
    )
    modes = ("eager", "compiled") if compiled else ("eager",)
    prompt = kept_prompt_length(libero_batch(c, 1)["token_mask"], c.max_token_len)
    for mode in modes:
        for trim in (True, False):
            sampler = Pi05Sampler(model, SamplerOptions(trim=trim, compile=mode == "compiled"))
            for b in BATCHES:
                if clock.elapsed() > budget_s:
                    print(
                        f"{mode} {'trimmed' if trim else 'untrimmed'} B={b}: skipped (latency budget spent)"
                    )
                    continue
                if clock.device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(clock.device)
                row = {"mode": mode, "trim": trim, "batch": b}
                try:
                    seconds = time_sampler(sampler, libero_batch(c, b), clock, repeats=3 if b < 64 else 2)
                except Exception as exc:  # one failed shape must not hide the rest of the table
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    print(f"{mode:<9} {'trimmed' if trim else 'untrimmed':<10} {b:>3} error: {row['error']}")
                    rows.append(row)
                    continue
                flops = count_flops(c, b, slots=2, prompt_len=prompt) if trim else count_flops(c, b)
                achieved = flops["whole"] / seconds
                memory = (
                    torch.cuda.max_memory_allocated(clock.device) / 2**30
                    if clock.device.type == "cuda"
                    else None
                )
                row.update(
                    ms=seconds * 1e3, obs_per_s=b / seconds, tflops=achieved / 1e12, mfu=achieved / peak
                )
                row.update(gflop_per_obs=flops["whole"] / b / 1e9, peak_memory_gib=memory)
                rows.append(row)
                print(
                    f"{mode:<9} {'trimmed' if trim else 'untrimmed':<10} {b:>3} {row['ms']:>9.1f} "
                    f"{row['obs_per_s']:>8.1f} {row['tflops']:>8.2f} {row['mfu']:>6.3f} "
                    f"{'' if memory is None else f'{memory:.1f}':>9}",
                    flush=True,
                )
            del sampler
    return rows


# -- 3. determinism --------------------------------------------------------------------------------------------
def determinism(model: Pi05Model) -> dict[str, bool]:
    """Deterministic sampler: the same batch twice, and each observation alone vs in the batch, bit for bit."""
    sampler = Pi05Sampler(model, SamplerOptions(deterministic=True, max_batch=4))
    x = libero_batch(model.config, 4)
    first, second = sampler(**x), sampler(**x)
    alone = torch.cat([sampler(**{k: _rows(v, i) for k, v in x.items()}) for i in range(4)])
    torch.use_deterministic_algorithms(False)
    result = {
        "repeatable": bool(torch.equal(first, second)),
        "batch_invariant": bool(torch.equal(first, alone)),
    }
    print(
        f"determinism: same batch twice identical {result['repeatable']}, alone vs batched {result['batch_invariant']}"
    )
    return result


def _rows(value: Any, i: int) -> Any:
    return {k: v[i : i + 1] for k, v in value.items()} if isinstance(value, dict) else value[i : i + 1]


# -- summary -----------------------------------------------------------------------------------------------------
def summary_line(device_name: str, rows: list[dict[str, Any]]) -> str:
    def find(batch: int, trim: bool) -> dict[str, Any] | None:
        for mode in ("compiled", "eager"):
            for r in rows:
                if r["mode"] == mode and r["trim"] == trim and r["batch"] == batch and "ms" in r:
                    return r
        return None

    def fmt(value: float | None, spec: str) -> str:
        return "nan" if value is None else format(value, spec)

    b1, b64, b64_full = find(1, True), find(64, True), find(64, False)
    speedup = b64["obs_per_s"] / b64_full["obs_per_s"] if b64 and b64_full else None
    return (
        f"device={device_name.replace(' ', '_')} b1_ms={fmt(b1 and b1['ms'], '.1f')} "
        f"b64_obs_per_s={fmt(b64 and b64['obs_per_s'], '.1f')} mfu_b64={fmt(b64 and b64['mfu'], '.3f')} "
        f"trim_speedup_b64={fmt(speedup, '.2f')}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny model on the CPU (eager only), even with CUDA"
    )
    args = parser.parse_args()
    tiny = args.tiny or not torch.cuda.is_available()
    device = torch.device("cpu" if tiny else "cuda")
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts, for section 3
    clock = Clock(device)
    name = "cpu" if tiny else torch.cuda.get_device_name(device)
    report: dict[str, Any] = {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "tiny": tiny,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"device check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    report["parity"] = parity(device)
    ok = all(r["ok"] for r in report["parity"].values())
    peak, peak_what = peak_flops(device)
    report["peak_tflops"], report["peak_source"] = peak / 1e12, peak_what
    config = tiny_config() if tiny else Pi05Config.full(action_horizon=10)
    t = time.perf_counter()
    model = random_model(config, device, torch.float32 if tiny else torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    report["model"] = {
        "params": params,
        "dtype": "float32" if tiny else "bfloat16",
        "build_s": time.perf_counter() - t,
    }
    print(
        f"model: {params / 1e9:.3f}B parameters, {report['model']['dtype']}, random weights on {device.type} in "
        f"{report['model']['build_s']:.1f} s; MFU against {peak / 1e12:.1f} TFLOP/s ({peak_what})",
        flush=True,
    )
    report["latency"] = latency(model, clock, peak, compiled=not tiny, budget_s=BUDGET_S["latency"])
    if clock.elapsed() < BUDGET_S["determinism"]:
        report["determinism"] = determinism(model)
    report["elapsed_s"] = clock.elapsed()
    if os.environ.get("OUT"):
        path = Path(os.environ["OUT"]) / "device_check.json"
        path.write_text(json.dumps(report, indent=2))
        print(f"wrote {path}")
    print(f"parity {'passed' if ok else 'FAILED'}; {clock.elapsed():.0f} s in all")
    print(summary_line(name, report["latency"]), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
