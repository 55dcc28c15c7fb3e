"""Speed and memory of evalkit's π₀.₅ on this CPU (not a test).

Part 1 (default): a model with the REAL widths (Gemma 2B 2048 / Gemma 300M 1024 / SigLIP 1152, full head dims, MLPs,
prefix 3·256 + max_token_len) but fewer layers, float32, at several batch sizes. Reports the prefix pass, one
denoising step and a whole sample; overhead = whole / (prefix + num_steps·step) (goal ≤ 1.05); achieved FLOP/s
(FLOPs counted analytically, all matmuls incl. attention over padded positions) ÷ this machine's fp32 matmul FLOP/s
measured in the same run, between the batch sizes (goal ≥ 0.5 at batch 16).

Part 3 (`--dtypes`): the same reduced model at batch 1, one whole sample (process CPU time, min over round-robin repeats) in float32 and in bfloat16, with evalkit's
attention (`gemma.grouped_query_attention`: float32 `scaled_dot_product_attention`) and with the attention evalkit
used before (float32 logits and softmax, then a bfloat16 probs × V `torch.matmul`, kept below as
`matmul_attention`), side by side in one run: bf16 ÷ fp32 time for each.

Part 4 (`--trim`): the analytic FLOPs per observation of the full-size LIBERO and DROID configs, openpi's computation
vs the trimmed prefix (`evalkit.models.pi05.model.trim_prefix`), then the reduced model's whole-sample CPU time
trimmed vs untrimmed at each batch size, beside its FLOP ratio.

Part 2 (`--full-size`, run it as its own process): the full ~3.3B-parameter model built on the meta device and
materialised directly in bfloat16 with random weights; peak RSS vs parameter bytes (goal ≤ 1.05×), then one whole
sample at batch 1 with a short prompt.

    .venv/bin/python bench/bench_pi05_model.py                 # part 1, batches 1,4,16
    .venv/bin/python bench/bench_pi05_model.py --full-size     # part 2
    .venv/bin/python bench/bench_pi05_model.py --trim --batches 1,4   # part 4
    .venv/bin/python bench/bench_pi05_model.py --dtypes        # part 3
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python bench/bench_pi05_model.py --dtypes
                                                               # part 3 as on a CPU without bf16 instructions
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time
from pathlib import Path

import torch

from evalkit.models.pi05.config import Pi05Config
from evalkit.models.pi05.model import Pi05Model


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def matmul_flops_per_s(n: int = 4096, repeats: int = 3) -> float:
    """Best-of-`repeats` fp32 GEMM throughput (n×n @ n×n)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def count_flops(
    c: Pi05Config, b: int, slots: int | None = None, prompt_len: int | None = None
) -> dict[str, float]:
    """Analytic matmul FLOPs (2 per multiply-add) of the prefix pass, one denoising step, the whole sample.

    `slots` image slots encoded and `prompt_len` prompt positions (default: all of them, openpi's computation; a
    trimmed prefix encodes fewer, see `evalkit.models.pi05.model.trim_prefix`)."""
    v, g, e = c.siglip, c.paligemma, c.action_expert
    p_img = v.num_patches
    n_img = len(c.image_keys) if slots is None else slots
    patch = p_img * (3 * v.patch_size**2) * v.width
    vit_layer = p_img * (4 * v.width**2 + 2 * v.width * v.mlp_dim) + 2 * p_img * p_img * v.width
    siglip = n_img * (patch + v.depth * vit_layer + p_img * v.width * v.out_dim)

    def proj(w: int, mlp: int, tokens: int) -> int:  # q, k, v, o and the gated MLP of one layer
        nq, nkv = g.num_heads * g.head_dim, g.num_kv_heads * g.head_dim
        return tokens * (w * nq + 2 * w * nkv + nq * w + 3 * w * mlp)

    def attn(t: int, s: int) -> int:  # QKᵀ and PV
        return 2 * g.num_heads * t * s * g.head_dim

    p = n_img * p_img + (c.max_token_len if prompt_len is None else prompt_len)
    h = c.action_horizon
    prefix = siglip + g.depth * (proj(g.width, g.mlp_dim, p) + attn(p, p))
    step = g.depth * (proj(e.width, e.mlp_dim, h) + attn(h, p + h))
    step += (
        h * (c.action_dim * e.width * 2)
        + 2 * e.width * e.width
        + g.depth * 2 * e.width * 3 * e.width
        + 3 * e.width**2
    )
    flops = {"prefix": 2.0 * b * prefix, "step": 2.0 * b * step}
    flops["whole"] = flops["prefix"] + c.num_steps * flops["step"]
    return flops


# Prompt positions a trimmed prefix keeps (multiples of 32): LIBERO's instructions are 10-25 PaliGemma tokens
# (pi05_libero has no state in the prompt); pi05_droid adds "Task: ..., State: <8 numbers>;\nAction: " (~40-60).
TRIMMED_PROMPT = {"pi05_libero": 32, "pi05_droid": 64}


def flop_table() -> list[dict[str, float | str]]:
    """FLOPs per observation, openpi's computation (3 slots, 200 prompt positions) vs trimmed (2 slots: the right
    wrist is always masked; the prompt cut to TRIMMED_PROMPT), full-size configs."""
    from evalkit.models.pi05.checkpoint import NAMED_CONFIGS

    rows = []
    for name, prompt in TRIMMED_PROMPT.items():
        training_config = NAMED_CONFIGS[name]
        c = Pi05Config.full(
            action_horizon=training_config.action_horizon, max_token_len=training_config.max_token_len
        )
        full, trimmed = count_flops(c, 1), count_flops(c, 1, slots=2, prompt_len=prompt)
        rows.append(
            {
                "config": name,
                "prefix_tokens": f"{c.prefix_len} -> {2 * c.siglip.num_patches + prompt}",
                "prefix_gflop": full["prefix"] / 1e9,
                "prefix_gflop_trimmed": trimmed["prefix"] / 1e9,
                "whole_gflop": full["whole"] / 1e9,
                "whole_gflop_trimmed": trimmed["whole"] / 1e9,
            }
        )
    return rows


def print_flop_table() -> None:
    print("analytic FLOPs per observation, full-size pi0.5 (GFLOP; whole = prefix + 10 denoising steps)")
    print(
        "| config | prefix tokens | prefix | prefix trimmed | saved | whole sample | whole trimmed | saved |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in flop_table():
        p, pt, w, wt = (
            r["prefix_gflop"],
            r["prefix_gflop_trimmed"],
            r["whole_gflop"],
            r["whole_gflop_trimmed"],
        )
        print(
            f"| {r['config']} | {r['prefix_tokens']} | {p:,.0f} | {pt:,.0f} | {1 - pt / p:.0%} | {w:,.0f} | "
            f"{wt:,.0f} | {1 - wt / w:.0%} |"
        )


def random_init_(model: Pi05Model, std: float = 0.02) -> Pi05Model:
    """In-place random weights in each parameter's own dtype (no fp32 copy of a bf16 model)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std, generator=g)
    return model


def make_inputs(c: Pi05Config, b: int, prompt_len: int, dtype: torch.dtype = torch.float32) -> dict:
    g = torch.Generator().manual_seed(1)
    s = c.siglip.image_size
    token_mask = (torch.arange(c.max_token_len) < prompt_len)[None].repeat(b, 1)
    return {
        "images": {k: torch.rand(b, s, s, 3, generator=g) * 2 - 1 for k in c.image_keys},
        "image_masks": {k: torch.tensor([k != "right_wrist_0_rgb"] * b) for k in c.image_keys},
        "tokens": torch.randint(3, c.paligemma.vocab_size, (b, c.max_token_len), generator=g) * token_mask,
        "token_mask": token_mask,
        "noise": torch.randn(b, c.action_horizon, c.action_dim, generator=g),
    }


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out  # min: the least disturbed run on a shared machine


def bench_reduced(args: argparse.Namespace) -> None:
    c = reduced_config(args)
    model = random_init_(Pi05Model(c).eval(), std=0.02)
    nparams = sum(p.numel() for p in model.parameters())
    print(
        f"reduced config: widths 2048/1024/1152, {args.layers} LLM layers, {args.vision_layers} SigLIP layers, "
        f"vocab {args.vocab}, prefix {c.prefix_len}, H {c.action_horizon}, {c.num_steps} steps, float32, "
        f"{nparams / 1e6:.0f}M params, torch threads {torch.get_num_threads()}"
    )
    header = (
        f"{'B':>3} {'prefix s':>9} {'step s':>8} {'whole s':>8} {'overhead':>9} "
        f"{'GFLOP':>8} {'GFLOP/s':>8} {'matmul GFLOP/s':>15} {'ratio':>6}"
    )
    print(header)
    for b in args.batches:
        bench_batch(model, c, b, args.repeats, args.prompt_len)


def bench_batch(model: Pi05Model, c: Pi05Config, b: int, repeats: int, prompt_len: int) -> None:
    x = make_inputs(c, b, prompt_len)
    prefix_inputs = {k: v for k, v in x.items() if k != "noise"}
    t_vec = torch.ones(b)
    with torch.no_grad():
        machine_before = matmul_flops_per_s()
        t_prefix, cache = timed(lambda: model.prefix_kv_cache(**prefix_inputs), repeats)
        model.velocity(cache, x["noise"], t_vec)  # warm-up
        t_step, _ = timed(lambda: model.velocity(cache, x["noise"], t_vec), 5)
        cache = None  # free the prefix K/V before the whole-sample timing
        t_whole, _ = timed(lambda: model.sample_actions(**x), repeats)
        machine_after = matmul_flops_per_s()
    machine = (machine_before + machine_after) / 2
    flops = count_flops(c, b)
    achieved = flops["whole"] / t_whole
    overhead = t_whole / (t_prefix + c.num_steps * t_step)
    print(
        f"{b:>3} {t_prefix:>9.3f} {t_step:>8.4f} {t_whole:>8.3f} {overhead:>9.3f} {flops['whole'] / 1e9:>8.0f} "
        f"{achieved / 1e9:>8.1f} {machine / 1e9:>15.1f} {achieved / machine:>6.2f}",
        flush=True,
    )


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """evalkit's attention before `scaled_dot_product_attention`: float32 logits and softmax, probs cast to the
    activation dtype, then probs × V with `torch.matmul` in that dtype (slow in bfloat16 on a CPU)."""
    from evalkit.models.pi05.gemma import BIG_NEG

    b, t, n, hd = q.shape
    s, kh = k.shape[1], k.shape[2]
    g = n // kh
    qg = q.view(b, t, kh, g, hd).permute(0, 2, 3, 1, 4).reshape(b, kh, g * t, hd)
    logits = torch.matmul(qg.float(), k.permute(0, 2, 3, 1).float())
    logits = logits.view(b, kh, g, t, s).masked_fill_(~mask[:, None, None], BIG_NEG)
    probs = torch.softmax(logits, dim=-1).to(v.dtype).view(b, kh, g * t, s)
    out = torch.matmul(probs, v.permute(0, 2, 1, 3))
    return out.view(b, kh, g, t, hd).permute(0, 3, 1, 2, 4).reshape(b, t, n * hd)


def reduced_config(args: argparse.Namespace) -> Pi05Config:
    full = Pi05Config.full(action_horizon=args.horizon, max_token_len=args.max_token_len)
    return dataclasses.replace(
        full,
        paligemma=dataclasses.replace(full.paligemma, depth=args.layers, vocab_size=args.vocab),
        action_expert=dataclasses.replace(full.action_expert, depth=args.layers, vocab_size=args.vocab),
        siglip=dataclasses.replace(full.siglip, depth=args.vision_layers),
    )


def bench_dtypes(args: argparse.Namespace) -> None:
    from evalkit.models.pi05 import gemma

    c = reduced_config(args)
    x = make_inputs(c, 1, args.prompt_len)
    current = gemma.grouped_query_attention
    models = {
        "float32": random_init_(Pi05Model(c).eval()),
        "bfloat16": random_init_(Pi05Model(c).eval()).to_dtype(torch.bfloat16),
    }
    print(
        f"reduced config ({args.layers} LLM layers, {args.vision_layers} SigLIP layers, real widths), batch 1, "
        f"prompt {args.prompt_len}, one whole sample ({c.num_steps} steps), min of {args.repeats} round-robin, "
        f"torch threads {torch.get_num_threads()}"
    )
    impls = {"scaled_dot_product_attention f32": current, "matmul (bf16 probs x V)": matmul_attention}
    times: dict[tuple[str, str], float] = {}
    with torch.no_grad():
        for repeat in range(args.repeats + 1):  # round-robin, so that other load hits every variant alike
            for label, impl in impls.items():
                for dtype, model in models.items():
                    gemma.grouped_query_attention = impl
                    try:
                        t = time.process_time()  # CPU time: robust to other load on a shared machine
                        model.sample_actions(**x)
                        elapsed = time.process_time() - t
                    finally:
                        gemma.grouped_query_attention = current
                    if repeat:  # the first round is the warm-up
                        times[label, dtype] = min(times.get((label, dtype), float("inf")), elapsed)
    print(f"{'whole sample, attention':<36} {'fp32 CPU s':>10} {'bf16 CPU s':>10} {'bf16/fp32':>10}")
    for label in impls:
        fp32, bf16 = times[label, "float32"], times[label, "bfloat16"]
        print(f"{label:<36} {fp32:>10.2f} {bf16:>10.2f} {bf16 / fp32:>10.2f}")
    bench_attention_alone(c, impls, args.repeats)


def bench_attention_alone(c: Pi05Config, impls: dict, repeats: int) -> None:
    """One prefix-pass attention call (all prefix tokens, 8 heads, 1 kv head), CPU ms per variant and dtype."""
    cpuinfo = Path("/proc/cpuinfo").read_text().split()
    flags = [f for f in ("avx512_bf16", "amx_bf16") if f in cpuinfo]
    g, p = c.paligemma, c.prefix_len
    gen = torch.Generator().manual_seed(2)
    mask = torch.ones(1, p, p, dtype=torch.bool)
    mask[:, :, p - c.max_token_len // 2 :] = False
    print(
        f"attention alone, prefix {p} tokens, CPU bf16 flags: {', '.join(flags) or 'none'}, "
        f"torch kernels: {torch.backends.cpu.get_cpu_capability()}"
    )
    print(f"{'attention':<36} {'fp32 CPU ms':>11} {'bf16 CPU ms':>11}")
    for label, impl in impls.items():
        row = []
        for dtype in (torch.float32, torch.bfloat16):
            q = (torch.randn(1, p, g.num_heads, g.head_dim, generator=gen) * g.head_dim**-0.5).to(dtype)
            k, v = (torch.randn(1, p, g.num_kv_heads, g.head_dim, generator=gen).to(dtype) for _ in range(2))
            impl(q, k, v, mask)
            best = float("inf")
            for _ in range(repeats):
                t = time.process_time()
                impl(q, k, v, mask)
                best = min(best, time.process_time() - t)
            row.append(best * 1000)
        print(f"{label:<36} {row[0]:>11.0f} {row[1]:>11.0f}")


def bench_trim(args: argparse.Namespace) -> None:
    """Trimmed vs openpi's computation on the reduced model (real widths), LIBERO-like inputs (right wrist masked,
    a prompt of --prompt-len tokens padded to max_token_len): process CPU time of one whole sample, min over
    round-robin repeats, and the analytic FLOP ratio of the same model."""
    c = reduced_config(args)
    model = random_init_(Pi05Model(c).eval())
    print(
        f"trimmed vs untrimmed: reduced config ({args.layers} LLM layers, {args.vision_layers} SigLIP layers, "
        f"real widths), prompt {args.prompt_len} of {c.max_token_len}, float32, torch threads {torch.get_num_threads()}"
    )
    print(f"{'B':>3} {'untrimmed CPU s':>16} {'trimmed CPU s':>14} {'time ratio':>11} {'FLOP ratio':>11}")
    prompt = -(-args.prompt_len // 32) * 32
    for b in args.batches:
        x = make_inputs(c, b, args.prompt_len)
        best = {True: float("inf"), False: float("inf")}
        with torch.no_grad():
            for repeat in range(args.repeats + 1):
                for trim in (False, True):
                    t = time.process_time()
                    model.sample_actions(**x, trim=trim)
                    if repeat:  # the first round is the warm-up
                        best[trim] = min(best[trim], time.process_time() - t)
        flops = count_flops(c, b, slots=2, prompt_len=prompt)["whole"] / count_flops(c, b)["whole"]
        print(
            f"{b:>3} {best[False]:>16.2f} {best[True]:>14.2f} {best[True] / best[False]:>11.3f} {flops:>11.3f}",
            flush=True,
        )


def bench_full_size(args: argparse.Namespace) -> None:
    c = Pi05Config.full(action_horizon=args.horizon, max_token_len=args.max_token_len)
    rss0 = current_rss_bytes()
    t = time.perf_counter()
    model = random_init_(Pi05Model.empty(c, dtype=torch.bfloat16)).eval()
    t_build = time.perf_counter() - t
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    nparams = sum(p.numel() for p in model.parameters())
    peak = peak_rss_bytes()
    print(
        f"full-size pi0.5: {nparams / 1e9:.3f}B params, {param_bytes / 2**30:.2f} GiB in bf16 (+fp32 keep-list)"
    )
    print(f"built on meta + materialised in bf16 + random init: {t_build:.1f} s")
    print(f"RSS before build {rss0 / 2**30:.2f} GiB; peak RSS after build {peak / 2**30:.2f} GiB")
    print(
        f"peak RSS / param bytes = {peak / param_bytes:.3f}  (excluding the pre-build baseline: {(peak - rss0) / param_bytes:.3f})"
    )
    x = make_inputs(c, 1, args.prompt_len)
    stamps: list[float] = []
    with torch.no_grad():  # one sample = exactly what sample_actions does, timed per phase
        t0 = time.perf_counter()
        cache = model.prefix_kv_cache(**{k: v for k, v in x.items() if k != "noise"})
        t_prefix = time.perf_counter() - t0
        actions = model.denoise(cache, x["noise"], on_step=lambda *_: stamps.append(time.perf_counter()))
        t_whole = time.perf_counter() - t0
    assert torch.isfinite(actions).all()
    t_steps = t_whole - t_prefix
    print(
        f"batch 1, prompt {args.prompt_len} tokens (padded to {c.max_token_len}), H {c.action_horizon}, bf16 on CPU: "
        f"prefix {t_prefix:.1f} s, first step {stamps[0] - t0 - t_prefix:.2f} s, "
        f"{len(stamps)} steps {t_steps:.1f} s, whole sample {t_whole:.1f} s"
    )
    peak = peak_rss_bytes()
    print(f"peak RSS after sampling {peak / 2**30:.2f} GiB = {peak / param_bytes:.3f} × param bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=[1, 4, 16])
    ap.add_argument("--layers", type=int, default=2, help="LLM layers of each expert (reduced model)")
    ap.add_argument("--vision-layers", type=int, default=2, help="SigLIP layers (reduced model)")
    ap.add_argument("--vocab", type=int, default=1024, help="vocab of the reduced model (FLOP-free lookup)")
    ap.add_argument("--horizon", type=int, default=10, help="action horizon (pi05_libero: 10)")
    ap.add_argument("--max-token-len", type=int, default=200)
    ap.add_argument("--prompt-len", type=int, default=20, help="valid prompt tokens (rest is padding)")
    ap.add_argument("--repeats", type=int, default=2, help="timing repeats (min is reported)")
    ap.add_argument("--full-size", action="store_true", help="run part 2 (full 3.3B model in bf16) instead")
    ap.add_argument("--dtypes", action="store_true", help="run part 3 (fp32 vs bf16, two attentions) instead")
    ap.add_argument(
        "--trim", action="store_true", help="run part 4 (FLOP table; trimmed vs untrimmed CPU time) instead"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.full_size:
        bench_full_size(args)
    elif args.trim:
        print_flop_table()
        bench_trim(args)
    elif args.dtypes:
        bench_dtypes(args)
    else:
        bench_reduced(args)


if __name__ == "__main__":
    main()
