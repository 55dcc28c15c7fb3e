"""openpi JAX/orbax parameter names → our (= openpi PyTorch) state dict.

Input: the flat param dict of an orbax `params` tree, keys joined with "/" (e.g. `PaliGemma/llm/layers/attn/q_einsum/w`),
scanned layers stacked on a leading depth axis; a trailing `/value` (nnx.State) is accepted and stripped.
Einsum layouts (D width, N heads, K kv heads, Hd head dim, F MLP dim): `q_einsum` (N, D, Hd), `kv_einsum`
(2, K, D, Hd), `attn_vec_einsum` (N, Hd, D), `gating_einsum` (2, D, F), `linear` (F, D); flax Dense kernels are
(in, out), torch Linear weights (out, in). Every input must be used and every parameter filled, else EvalkitError.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.config import Pi05Config

P = "paligemma_with_expert.paligemma.model."
E = "paligemma_with_expert.gemma_expert.model."
IMG = "PaliGemma/img/"
LLM = "PaliGemma/llm/"


def _to_torch(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    if a.dtype.name == "bfloat16":  # ml_dtypes bfloat16 from orbax: reinterpret the bits
        return torch.from_numpy(a.view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def jax_to_state_dict(flat: Mapping[str, np.ndarray], config: Pi05Config) -> dict[str, torch.Tensor]:
    """Map every JAX tensor to its PyTorch name and layout; strict in both directions."""
    src = {k.removesuffix("/value"): v for k, v in flat.items()}
    used: set[str] = set()
    out: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in src:
            raise EvalkitError(f"JAX checkpoint is missing {name!r}")
        used.add(name)
        return np.asarray(src[name])

    def dense(jax_prefix: str, torch_prefix: str, layer: int | None = None) -> None:
        kernel, bias = get(jax_prefix + "/kernel"), get(jax_prefix + "/bias")
        if layer is not None:
            kernel, bias = kernel[layer], bias[layer]
        out[torch_prefix + ".weight"] = kernel.T
        out[torch_prefix + ".bias"] = bias

    # ---- SigLIP
    sc = config.siglip
    vm = P + "vision_tower.vision_model."
    out[vm + "embeddings.patch_embedding.weight"] = get(IMG + "embedding/kernel").transpose(
        3, 2, 0, 1
    )  # HWIO → OIHW
    out[vm + "embeddings.patch_embedding.bias"] = get(IMG + "embedding/bias")
    out[vm + "embeddings.position_embedding.weight"] = get(IMG + "pos_embedding").reshape(
        sc.num_patches, sc.width
    )
    block = IMG + "Transformer/encoderblock/"
    mha = block + "MultiHeadDotProductAttention_0/"
    for i in range(sc.depth):
        lp = f"{vm}encoder.layers.{i}."
        for ln_jax, ln_torch in (("LayerNorm_0", "layer_norm1"), ("LayerNorm_1", "layer_norm2")):
            out[lp + ln_torch + ".weight"] = get(block + ln_jax + "/scale")[i]
            out[lp + ln_torch + ".bias"] = get(block + ln_jax + "/bias")[i]
        dense(block + "MlpBlock_0/Dense_0", lp + "mlp.fc1", i)
        dense(block + "MlpBlock_0/Dense_1", lp + "mlp.fc2", i)
        for proj in ("query", "key", "value"):  # kernel (W, Nv, Hv), bias (Nv, Hv)
            torch_name = lp + f"self_attn.{proj[0]}_proj"
            out[torch_name + ".weight"] = get(mha + proj + "/kernel")[i].reshape(sc.width, -1).T
            out[torch_name + ".bias"] = get(mha + proj + "/bias")[i].reshape(-1)
        out[lp + "self_attn.out_proj.weight"] = (
            get(mha + "out/kernel")[i].reshape(-1, sc.width).T
        )  # (Nv, Hv, W)
        out[lp + "self_attn.out_proj.bias"] = get(mha + "out/bias")[i]
    out[vm + "post_layernorm.weight"] = get(IMG + "Transformer/encoder_norm/scale")
    out[vm + "post_layernorm.bias"] = get(IMG + "Transformer/encoder_norm/bias")
    dense(IMG + "head", P + "multi_modal_projector.linear")

    # ---- the two Gemma experts
    out[P + "language_model.embed_tokens.weight"] = get(LLM + "embedder/input_embedding")
    for suffix, prefix, gc, adaptive in (
        ("", P + "language_model.", config.paligemma, False),
        ("_1", E, config.action_expert, True),
    ):
        layers = LLM + "layers/"
        q = get(layers + f"attn/q_einsum{suffix}/w")  # (depth, N, D, Hd)
        kv = get(layers + f"attn/kv_einsum{suffix}/w")  # (depth, 2, K, D, Hd)
        o = get(layers + f"attn/attn_vec_einsum{suffix}/w")  # (depth, N, Hd, D)
        gating = get(layers + f"mlp{suffix}/gating_einsum")  # (depth, 2, D, F)
        linear = get(layers + f"mlp{suffix}/linear")  # (depth, F, D)
        nq, nkv, d = gc.num_heads * gc.head_dim, gc.num_kv_heads * gc.head_dim, gc.width
        for i in range(gc.depth):
            lp = f"{prefix}layers.{i}."
            out[lp + "self_attn.q_proj.weight"] = q[i].transpose(0, 2, 1).reshape(nq, d)  # row n·Hd + h
            out[lp + "self_attn.k_proj.weight"] = kv[i, 0].transpose(0, 2, 1).reshape(nkv, d)
            out[lp + "self_attn.v_proj.weight"] = kv[i, 1].transpose(0, 2, 1).reshape(nkv, d)
            out[lp + "self_attn.o_proj.weight"] = o[i].reshape(nq, d).T  # W[d, n·Hd + h] = attn_vec[n, h, d]
            out[lp + "mlp.gate_proj.weight"] = gating[i, 0].T
            out[lp + "mlp.up_proj.weight"] = gating[i, 1].T
            out[lp + "mlp.down_proj.weight"] = linear[i].T
            for jax_norm, torch_norm in (
                ("pre_attention_norm", "input_layernorm"),
                ("pre_ffw_norm", "post_attention_layernorm"),
            ):
                if adaptive:
                    dense(f"{layers}{jax_norm}{suffix}/Dense_0", lp + torch_norm + ".dense", i)
                else:
                    out[lp + torch_norm + ".weight"] = get(f"{layers}{jax_norm}{suffix}/scale")[i]
        if adaptive:
            dense(f"{LLM}final_norm{suffix}/Dense_0", prefix + "norm.dense")
        else:
            out[prefix + "norm.weight"] = get(f"{LLM}final_norm{suffix}/scale")

    # ---- projections outside the transformer
    for name in ("action_in_proj", "action_out_proj", "time_mlp_in", "time_mlp_out"):
        dense(name, name)

    unused = sorted(set(src) - used)
    if unused:
        more = f" (+{len(unused) - 5} more)" if len(unused) > 5 else ""
        raise EvalkitError(f"JAX checkpoint has parameters pi05 does not use: {', '.join(unused[:5])}{more}")
    _check_shapes(out, config)
    return {k: _to_torch(v) for k, v in out.items()}


def _check_shapes(out: Mapping[str, np.ndarray], config: Pi05Config) -> None:
    """Compare against the shapes of a meta-device model (no memory is allocated)."""
    from evalkit.models.pi05.model import Pi05Model

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Pi05Model(config).state_dict().items()}
    missing = sorted(set(expected) - set(out))
    if missing:
        raise EvalkitError(f"JAX conversion left parameters unfilled: {', '.join(missing[:5])}")
    for k, shape in expected.items():
        if tuple(out[k].shape) != shape:
            raise EvalkitError(
                f"JAX parameter for {k} has shape {tuple(out[k].shape)}, config expects {shape}"
            )
