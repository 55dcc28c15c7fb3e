"""The two-expert Gemma transformer of π₀.₅: one attention per layer shared by both experts.

Expert 0 (PaliGemma's Gemma 2B) reads the prefix (image + text tokens), expert 1 (Gemma 300M, the action expert) the
suffix (action tokens). Each expert keeps its own norms, Q/K/V/O projections and MLP; per layer their Q, K, V are
concatenated along the sequence and one joint attention runs over all tokens (openpi `gemma.py::Block`).
Parameter names follow openpi's PyTorch port (HF Gemma): `layers.{i}.{input_layernorm, self_attn.{q,k,v,o}_proj,
post_attention_layernorm, mlp.{gate,up,down}_proj}`, `norm`, `embed_tokens`.

Shapes: B batch, T query tokens, S key tokens, D width, N query heads, K kv heads, G = N/K, Hd head dim, F MLP dim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evalkit.models.pi05.config import GemmaConfig

BIG_NEG = -2.3819763e38  # masked attention logit, as in big_vision / gemma modules.py
MLP_CHUNK_ELEMENTS = (
    8 * 1024 * 1024
)  # (rows × F) elements per MLP chunk: reused allocations, bounded peak memory


class RMSNorm(nn.Module):
    """y = x · rsqrt(mean(x²) + eps) · (1 + weight), statistics in float32. Returns (y, gate=None)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, None]:
        if cond is not None:
            raise ValueError("plain RMSNorm takes no conditioning")
        normed = _normalize(x, self.eps)
        return (normed * (1.0 + self.weight.float())).to(x.dtype), None


class AdaRMSNorm(nn.Module):
    """Adaptive RMSNorm: [scale, shift, gate] = Dense(cond); y = norm(x)·(1 + scale) + shift. Returns (y, gate)."""

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.dense = nn.Linear(cond_dim, 3 * dim)
        nn.init.zeros_(self.dense.weight)
        nn.init.zeros_(self.dense.bias)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if cond is None:
            raise ValueError("adaptive RMSNorm needs the time conditioning")
        modulation = self.dense(cond.to(self.dense.weight.dtype))[:, None, :]  # (B, 1, 3D)
        scale, shift, gate = modulation.float().chunk(3, dim=-1)
        y = _normalize(x, self.eps) * (1.0 + scale) + shift
        return y.to(x.dtype), gate.to(x.dtype)


def _normalize(x: Tensor, eps: float) -> Tensor:
    x = x.float()
    var = x.square().mean(dim=-1, keepdim=True)
    return x * torch.reciprocal(torch.sqrt(var + eps))


class GemmaAttention(nn.Module):
    """Per-expert projections; the attention itself is shared (see `shared_attention`)."""

    def __init__(self, config: GemmaConfig):
        super().__init__()
        c = config
        self.num_heads, self.num_kv_heads, self.head_dim = c.num_heads, c.num_kv_heads, c.head_dim
        self.q_proj = nn.Linear(c.width, c.num_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.width, c.num_kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.width, c.num_kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.num_heads * c.head_dim, c.width, bias=False)

    def qkv(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h (B, T, D) → q (B, T, N, Hd), k and v (B, T, K, Hd)."""
        b, t, _ = h.shape
        q = self.q_proj(h).view(b, t, self.num_heads, self.head_dim)
        k = self.k_proj(h).view(b, t, self.num_kv_heads, self.head_dim)
        v = self.v_proj(h).view(b, t, self.num_kv_heads, self.head_dim)
        return q, k, v


class GemmaMLP(nn.Module):
    """Gated MLP: down(gelu_tanh(gate(h)) ⊙ up(h))."""

    def __init__(self, config: GemmaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.width, config.mlp_dim, bias=False)
        self.up_proj = nn.Linear(config.width, config.mlp_dim, bias=False)
        self.down_proj = nn.Linear(config.mlp_dim, config.width, bias=False)

    def forward(self, h: Tensor) -> Tensor:
        """h (B, T, D) → (B, T, D); rows run in chunks so the (rows, F) intermediates stay small (~32 MB)."""
        flat = h.reshape(-1, h.shape[-1])
        rows = max(1, MLP_CHUNK_ELEMENTS // self.gate_proj.out_features)
        if flat.shape[0] <= rows:
            return self._mlp(h)
        out = torch.empty(flat.shape[0], self.down_proj.out_features, dtype=h.dtype, device=h.device)
        for start in range(0, flat.shape[0], rows):
            out[start : start + rows] = self._mlp(flat[start : start + rows])
        return out.view(*h.shape[:-1], -1)

    def _mlp(self, h: Tensor) -> Tensor:
        return self.down_proj(F.gelu(self.gate_proj(h), approximate="tanh") * self.up_proj(h))


def _make_norm(config: GemmaConfig, adarms_cond_dim: int | None, eps: float) -> nn.Module:
    return (
        RMSNorm(config.width, eps)
        if adarms_cond_dim is None
        else AdaRMSNorm(config.width, adarms_cond_dim, eps)
    )


class GemmaDecoderLayer(nn.Module):
    def __init__(self, config: GemmaConfig, adarms_cond_dim: int | None, eps: float):
        super().__init__()
        self.input_layernorm = _make_norm(config, adarms_cond_dim, eps)  # JAX pre_attention_norm
        self.self_attn = GemmaAttention(config)
        self.post_attention_layernorm = _make_norm(config, adarms_cond_dim, eps)  # JAX pre_ffw_norm
        self.mlp = GemmaMLP(config)


class GemmaModel(nn.Module):
    """One expert's weights: optional token embedder, `depth` layers, final norm.

    `adarms_cond_dim=None` → plain RMSNorms (the VLM); an int → adaRMSNorms conditioned on the time MLP (action expert).
    """

    def __init__(
        self,
        config: GemmaConfig,
        *,
        with_embedder: bool,
        adarms_cond_dim: int | None = None,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.config = config
        if with_embedder:
            self.embed_tokens = nn.Embedding(config.vocab_size, config.width)
        self.layers = nn.ModuleList(
            GemmaDecoderLayer(config, adarms_cond_dim, eps) for _ in range(config.depth)
        )
        self.norm = _make_norm(config, adarms_cond_dim, eps)  # JAX final_norm / final_norm_1

    @property
    def dtype(self) -> torch.dtype:
        """Activation dtype of the residual stream (= dtype of the projection weights)."""
        return self.layers[0].self_attn.q_proj.weight.dtype

    def embed(self, tokens: Tensor) -> Tensor:
        """tokens (B, L) → (B, L, D) · sqrt(D); the factor is rounded to the table's dtype as in JAX."""
        table = self.embed_tokens.weight
        x = F.embedding(tokens, table)
        return x * torch.tensor(math.sqrt(self.config.width), dtype=torch.float32).to(table.dtype)


def make_attn_mask(input_mask: Tensor, ar_mask: Tensor) -> Tensor:
    """big_vision prefix-LM mask. input_mask (B, S) bool, ar_mask (S,) or (B, S) → (B, S, S) bool.

    Token i may attend token j iff cumsum(ar)[j] <= cumsum(ar)[i] and both are valid (not padding).
    """
    ar = torch.broadcast_to(ar_mask.to(torch.int32), input_mask.shape)
    c = torch.cumsum(ar, dim=1)
    causal = c[:, None, :] <= c[:, :, None]
    valid = input_mask[:, None, :] & input_mask[:, :, None]
    return causal & valid


def rope_angles(positions: Tensor, head_dim: int, max_wavelength: float) -> tuple[Tensor, Tensor]:
    """positions (B, T) int → cos, sin (B, T, 1, Hd/2) float32; θ = pos / max_wavelength^(2k/Hd) (JAX order)."""
    radians = positions.to(torch.float32)[..., None] / rope_timescale(
        head_dim, max_wavelength, positions.device
    )
    radians = radians[:, :, None, :]  # (B, T, 1, Hd/2)
    return torch.cos(radians), torch.sin(radians)


_TIMESCALES: dict[tuple[int, float, torch.device], Tensor] = {}


def rope_timescale(head_dim: int, max_wavelength: float, device: torch.device) -> Tensor:
    """max_wavelength^(2k/Hd), k < Hd/2, float32 on `device`; computed once per device, so that a captured CUDA
    graph never copies a constant from the host."""
    key = (head_dim, float(max_wavelength), device)
    if key not in _TIMESCALES:
        exponents = (2.0 / head_dim) * torch.arange(head_dim // 2, dtype=torch.float32, device=device)
        base = torch.tensor(max_wavelength, dtype=torch.float32, device=device)
        _TIMESCALES[key] = torch.pow(base, exponents)
    return _TIMESCALES[key]


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Split-half rotation of x (B, T, heads, Hd) in float32, cast back to x's dtype."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


def grouped_query_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """q (B, T, N, Hd) (already scaled), k/v (B, S, K, Hd), mask (B, T, S) bool → (B, T, N·Hd) in v's dtype.

    Query head n uses kv head n // G, G = N/K (JAX groups heads as (K G); `enable_gqa` repeats kv heads the same
    way). Masked logits get BIG_NEG added, not -inf, so a fully masked (padding) row averages all values as
    big_vision's `jnp.where(mask, logits, BIG_NEG)` does, instead of turning into NaN.
    On a CPU the whole attention runs in float32: on a CPU a bfloat16 probs × V matmul is ~20× slower than float32
    (it has no fast bf16 kernel). On an accelerator it runs in the activation dtype: the fused kernels compute
    logits and softmax in float32 internally and multiply bf16 probabilities with V, as openpi's JAX attention
    does (`probs.astype(v.dtype)`); kv heads are expanded there, since the fused kernels that take a mask do not
    all take grouped heads.
    """
    b, t, n, hd = q.shape
    out_dtype = v.dtype
    on_cpu = q.device.type == "cpu"
    dtype = torch.float32 if on_cpu else out_dtype
    bias = torch.zeros(mask.shape, dtype=dtype, device=q.device).masked_fill_(~mask, BIG_NEG)
    q, k, v = (x.to(dtype).transpose(1, 2) for x in (q, k, v))  # (B, heads, tokens, Hd)
    if not on_cpu and k.shape[1] != n:
        k, v = (x.repeat_interleave(n // x.shape[1], dim=1) for x in (k, v))
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=bias[:, None], scale=1.0, enable_gqa=on_cpu
    )  # (B, N, T, Hd)
    return out.transpose(1, 2).reshape(b, t, n * hd).to(out_dtype)


@dataclass
class KVCache:
    """Per-layer keys (after RoPE, unscaled) and values of the prefix, each (B, S, K, Hd). Never mutated."""

    keys: list[Tensor]
    values: list[Tensor]


def shared_attention_forward(
    experts: Sequence[GemmaModel],
    xs: Sequence[Tensor | None],
    conds: Sequence[Tensor | None],
    positions: Tensor,
    attn_mask: Tensor,
    kv_cache: KVCache | None = None,
    fill_cache: bool = False,
    rope_max_wavelength: float = 10_000.0,
) -> tuple[list[Tensor | None], KVCache | None]:
    """Run all layers of the experts side by side; a `None` input skips that expert.

    xs[i] (B, T_i, D_i); positions (B, ΣT_i) and attn_mask (B, ΣT_i, S) cover the active tokens in expert order,
    S = cached length + ΣT_i. conds[i] (B, C) is the adaRMS conditioning of expert i (None for plain norms).
    Returns the final-normed outputs per expert and, with `fill_cache`, this pass's K/V per layer.
    """
    active = [i for i, x in enumerate(xs) if x is not None]
    if not active:
        raise ValueError("at least one expert needs input")
    lengths = [xs[i].shape[1] for i in active]
    head_dim = experts[active[0]].config.head_dim
    cos, sin = rope_angles(positions, head_dim, rope_max_wavelength)
    hidden = {i: xs[i].to(experts[i].dtype) for i in active}
    new_cache = KVCache([], []) if fill_cache else None

    for layer_idx in range(experts[active[0]].config.depth):
        layers = {i: experts[i].layers[layer_idx] for i in active}
        # 1-2. pre-attention norm and each expert's own projections
        qs, ks, vs, attn_gates = [], [], [], {}
        for i in active:
            h, attn_gates[i] = layers[i].input_layernorm(hidden[i], conds[i])
            q, k, v = layers[i].self_attn.qkv(h)
            qs.append(q), ks.append(k), vs.append(v)
        # 3. concatenate along the sequence, RoPE on shared positions, scale q after RoPE
        q = apply_rope(_cat_seq(qs), cos, sin) * head_dim**-0.5
        k = apply_rope(_cat_seq(ks), cos, sin)
        v = _cat_seq(vs)
        if new_cache is not None:
            new_cache.keys.append(k)
            new_cache.values.append(v)
        if kv_cache is not None:
            k = torch.cat([kv_cache.keys[layer_idx], k], dim=1)
            v = torch.cat([kv_cache.values[layer_idx], v], dim=1)
        # 4. one joint attention over every token
        encoded = grouped_query_attention(q, k, v, attn_mask)
        # 5-6. split per expert: output projection, gated residual, gated MLP
        for i, enc in zip(active, encoded.split(lengths, dim=1), strict=True):
            layer = layers[i]
            hidden[i] = _gated_residual(hidden[i], layer.self_attn.o_proj(enc), attn_gates[i])
            h, ffw_gate = layer.post_attention_layernorm(hidden[i], conds[i])
            hidden[i] = _gated_residual(hidden[i], layer.mlp(h), ffw_gate)

    outs: list[Tensor | None] = [None] * len(xs)
    for i in active:
        outs[i], _ = experts[i].norm(hidden[i], conds[i])  # the final adaRMS gate is discarded
    return outs, new_cache


def _cat_seq(parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _gated_residual(x: Tensor, y: Tensor, gate: Tensor | None) -> Tensor:
    return x + y if gate is None else x + y * gate
