"""π₀.₅ in PyTorch: PaliGemma (SigLIP + Gemma 2B) plus a Gemma 300M action expert, trained by flow matching.

The model reads a *prefix* (3 images × 256 SigLIP tokens + the tokenized prompt, state included as text) with the VLM
expert, and a *suffix* of H action tokens with the action expert; both experts share attention layer by layer.
The flow time t drives adaRMSNorm in the action expert (no time token). Convention (openpi): t=1 is noise, t=0 is
data; sampling integrates dx/dt = v from t=1 to 0 with Euler steps dt = -1/num_steps.

Sampling computes the prefix K/V cache once; each denoising step then runs only the action expert on the suffix,
attending to [cached prefix K/V | its own K/V]. The cache is never written to.

Trimmed prefix (`trim_prefix`, on by default in `sample_actions`): masked prefix tokens contribute exactly nothing to
valid ones (their attention weight is exactly zero, and RoPE positions are the cumulative sum of the mask), so image
slots masked for every observation of the batch are not encoded at all (openpi's LIBERO and DROID inputs always mask
`right_wrist_0_rgb`) and prompt padding past the batch's longest prompt is cut (rounded up to a multiple of
`PROMPT_LENGTH_STEP`, so that a compiled sampler meets few shapes). Valid tokens then differ from openpi's computation
only by summation order; `trim=False` keeps openpi's exact computation (every slot, the whole padded prompt).

Parameter names equal openpi's PyTorch port (`paligemma_with_expert.paligemma.model.{vision_tower,
multi_modal_projector, language_model}.*`, `paligemma_with_expert.gemma_expert.model.*`, `action_in_proj`,
`action_out_proj`, `time_mlp_in`, `time_mlp_out`) without the unused `lm_head`s.

Shapes: B batch, P prefix length, H action horizon, A action dim, D VLM width, E expert width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.config import Pi05Config
from evalkit.models.pi05.gemma import GemmaModel, KVCache, make_attn_mask, shared_attention_forward
from evalkit.models.pi05.siglip import MultiModalProjector, SiglipVisionModel

# Parameters of `paligemma_with_expert` that openpi keeps in float32 when the model runs in bfloat16
# (`to_bfloat16_for_selected_params`): patch/position embeddings and every (ada)RMSNorm.
FP32_KEEP_PATTERNS = (
    "vision_tower.vision_model.embeddings.patch_embedding.weight",
    "vision_tower.vision_model.embeddings.patch_embedding.bias",
    "vision_tower.vision_model.embeddings.position_embedding.weight",
    "input_layernorm",
    "post_attention_layernorm",
    "model.norm",
)

StepCallback = Callable[[float, Tensor, Tensor], None]  # (t, x_t, v_t) per denoising step
# Trimmed prompts keep a multiple of this many positions (capped at max_token_len): few shapes for compiled samplers.
PROMPT_LENGTH_STEP = 32
Images = Mapping[str, Tensor | None]
ImageMasks = Mapping[str, Tensor | None]


def kept_prompt_length(token_mask: Tensor, max_len: int, step: int = PROMPT_LENGTH_STEP) -> int:
    """Prompt positions a batch needs: through its last valid token, rounded up to a multiple of `step`, at most
    `max_len` (at least one position, so that an empty prompt still has a shape)."""
    valid = token_mask.any(dim=0).nonzero()
    last = int(valid.max()) + 1 if valid.numel() else 1
    return min(max_len, -(-last // step) * step)


def trim_prefix(
    images: Images,
    image_masks: ImageMasks,
    tokens: Tensor,
    token_mask: Tensor,
    step: int = PROMPT_LENGTH_STEP,
) -> tuple[dict[str, Tensor | None], dict[str, Tensor | None], Tensor, Tensor]:
    """Drop what no observation of the batch attends to: an image slot masked for every observation becomes None
    (not encoded), and prompt positions past the longest prompt (rounded up to a multiple of `step`) are cut.
    Reads the masks (a device sync on an accelerator): call it before a compiled sampler, on CPU tensors if you can."""
    kept = {
        k: v is not None and image_masks.get(k) is not None and bool(image_masks[k].any())
        for k, v in images.items()
    }
    length = kept_prompt_length(token_mask, token_mask.shape[1], step)
    return (
        {k: v if kept[k] else None for k, v in images.items()},
        {k: v if kept.get(k, True) else None for k, v in image_masks.items()},
        tokens[:, :length],
        token_mask[:, :length],
    )


class PaliGemmaModel(nn.Module):
    def __init__(self, config: Pi05Config):
        super().__init__()
        self.vision_tower = SiglipVisionModel(config.siglip)
        self.multi_modal_projector = MultiModalProjector(config.siglip)
        self.language_model = GemmaModel(config.paligemma, with_embedder=True, eps=config.rmsnorm_eps)


class PaliGemma(nn.Module):
    def __init__(self, config: Pi05Config):
        super().__init__()
        self.model = PaliGemmaModel(config)


class GemmaExpert(nn.Module):
    def __init__(self, config: Pi05Config):
        super().__init__()
        self.model = GemmaModel(
            config.action_expert,
            with_embedder=False,
            adarms_cond_dim=config.action_expert.width,
            eps=config.rmsnorm_eps,
        )


class PaliGemmaWithExpert(nn.Module):
    def __init__(self, config: Pi05Config):
        super().__init__()
        self.paligemma = PaliGemma(config)
        self.gemma_expert = GemmaExpert(config)


@dataclass
class PrefixCache:
    """Result of the prefix pass: what each denoising step attends to."""

    kv: KVCache  # per layer (B, P, K, Hd); K after RoPE
    pad_mask: Tensor  # (B, P) bool, valid prefix tokens
    positions: Tensor  # (B, P) long, cumsum(pad_mask) − 1 (RoPE positions)
    output: Tensor  # (B, P, D) VLM output after the final norm (unused by sampling; for inspection)


class Pi05Model(nn.Module):
    def __init__(self, config: Pi05Config):
        super().__init__()
        self.config = config
        e = config.action_expert.width
        self.paligemma_with_expert = PaliGemmaWithExpert(config)
        self.action_in_proj = nn.Linear(config.action_dim, e)
        self.action_out_proj = nn.Linear(e, config.action_dim)
        self.time_mlp_in = nn.Linear(e, e)
        self.time_mlp_out = nn.Linear(e, e)
        self._time_frequencies: dict[torch.device, Tensor] = {}

    @classmethod
    def empty(
        cls, config: Pi05Config, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
    ) -> Pi05Model:
        """Uninitialised model allocated directly in `dtype` (fp32 keep-list applied) on `device`.

        Built on the meta device first, so a bf16 model never has an fp32 copy. Fill it with
        `load_state_dict(..., strict=True)` or an explicit initialiser before use.
        """
        with torch.device("meta"):
            model = cls(config)
        model.to_dtype(dtype)
        return model.to_empty(device=device)

    # ----------------------------------------------------------------------------------------- experts / dtypes
    @property
    def vlm(self) -> GemmaModel:
        return self.paligemma_with_expert.paligemma.model.language_model

    @property
    def expert(self) -> GemmaModel:
        return self.paligemma_with_expert.gemma_expert.model

    @property
    def device(self) -> torch.device:
        return self.action_in_proj.weight.device

    def to_dtype(self, dtype: torch.dtype) -> Pi05Model:
        """Cast the transformer to `dtype`, keeping openpi's float32 exceptions; projections stay float32."""
        self.paligemma_with_expert.to(dtype)
        for name, param in self.paligemma_with_expert.named_parameters():
            if any(pattern in name for pattern in FP32_KEEP_PATTERNS):
                param.data = param.data.to(torch.float32)
        for module in (self.action_in_proj, self.action_out_proj, self.time_mlp_in, self.time_mlp_out):
            module.to(torch.float32)
        return self

    # ------------------------------------------------------------------------------------------------- prefix
    def embed_images(self, images: Images, image_masks: ImageMasks) -> tuple[Tensor, Tensor]:
        """Image slots in `config.image_keys` order → tokens (B, n·256, D), pad mask (B, n·256), n = slots encoded.

        Every slot must be given. A slot given as None (image and mask; see `trim_prefix`) is masked for every
        observation and is not encoded; a slot masked for some observations only is encoded and masked."""
        keys = self.config.image_keys
        missing = [k for k in keys if k not in images or k not in image_masks]
        if missing:
            raise EvalkitError(f"pi05 needs every image slot; missing: {', '.join(missing)}")
        encoded = [k for k in keys if images[k] is not None]
        dropped = [k for k in keys if (images[k] is None) != (image_masks[k] is None)]
        if dropped:
            raise EvalkitError(
                f"image slot {dropped[0]!r}: image and mask must both be None or both be given"
            )
        size = self.config.siglip.image_size
        b = image_masks[encoded[0]].shape[0] if encoded else 0
        for k in encoded:
            if tuple(images[k].shape) != (b, size, size, 3):
                raise EvalkitError(
                    f"image {k!r} has shape {tuple(images[k].shape)}, expected ({b}, {size}, {size}, 3)"
                )
            if tuple(image_masks[k].shape) != (b,):
                raise EvalkitError(
                    f"image mask {k!r} has shape {tuple(image_masks[k].shape)}, expected ({b},)"
                )
        pg = self.paligemma_with_expert.paligemma.model
        d = self.config.paligemma.width
        if not encoded:  # (0, 0, D): embed_prefix widens it to the batch
            return torch.zeros(0, 0, d, device=self.device), torch.zeros(
                0, 0, dtype=torch.bool, device=self.device
            )
        stacked = torch.cat(
            [images[k].to(self.device, torch.float32) for k in encoded], dim=0
        )  # (n·B, 224, 224, 3)
        feats = pg.multi_modal_projector(pg.vision_tower(stacked))  # (n·B, 256, D), not scaled
        n, p = len(encoded), feats.shape[1]
        tokens = feats.view(n, b, p, d).transpose(0, 1).reshape(b, n * p, d)
        masks = torch.stack([image_masks[k].to(self.device, torch.bool) for k in encoded], dim=1)  # (B, n)
        return tokens, masks.repeat_interleave(p, dim=1)

    def embed_prefix(
        self, images: Images, image_masks: ImageMasks, tokens: Tensor, token_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """→ prefix tokens (B, P, D), pad mask (B, P) bool, ar mask (P,) bool (all False: bidirectional prefix)."""
        img_tokens, img_mask = self.embed_images(images, image_masks)
        if img_tokens.shape[1] == 0:  # every slot dropped
            img_tokens = img_tokens.new_zeros(tokens.shape[0], 0, img_tokens.shape[2])
            img_mask = img_mask.new_zeros(tokens.shape[0], 0)
        if tokens.shape != token_mask.shape or tokens.shape[0] != img_tokens.shape[0]:
            raise EvalkitError(
                f"tokens {tuple(tokens.shape)} / token_mask {tuple(token_mask.shape)} do not match batch"
            )
        llm = self.vlm
        txt = llm.embed(tokens.to(self.device, torch.long))  # (B, L, D) · sqrt(D)
        prefix = torch.cat([img_tokens.to(llm.dtype), txt.to(llm.dtype)], dim=1)
        pad_mask = torch.cat([img_mask, token_mask.to(self.device, torch.bool)], dim=1)
        ar_mask = torch.zeros(prefix.shape[1], dtype=torch.bool, device=self.device)
        return prefix, pad_mask, ar_mask

    def prefix_kv_cache(
        self, images: Images, image_masks: ImageMasks, tokens: Tensor, token_mask: Tensor
    ) -> PrefixCache:
        """One VLM-only pass over the prefix; returns its per-layer K/V (the cache every step attends to)."""
        prefix, pad_mask, ar_mask = self.embed_prefix(images, image_masks, tokens, token_mask)
        attn_mask = make_attn_mask(pad_mask, ar_mask)  # (B, P, P)
        positions = torch.cumsum(pad_mask.long(), dim=1) - 1
        (out, _), kv = shared_attention_forward(
            [self.vlm, self.expert],
            [prefix, None],
            [None, None],
            positions,
            attn_mask,
            fill_cache=True,
            rope_max_wavelength=self.config.rope_max_wavelength,
        )
        return PrefixCache(kv=kv, pad_mask=pad_mask, positions=positions, output=out)

    # ------------------------------------------------------------------------------------------------- suffix
    def time_embedding(self, t: Tensor) -> Tensor:
        """Sinusoidal embedding of the flow time, t (B,) → (B, E) = [sin(arg), cos(arg)], float32 like JAX.

        period_k = min_period·(max_period/min_period)^(k/(E/2−1)); arg = t · (2π / period)."""
        arg = t.to(self.device, torch.float32)[:, None] * self.time_frequencies()[None, :]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)

    def time_frequencies(self) -> Tensor:
        """2π / period_k (E/2,) float32 on the model's device; computed once per device, so that a captured CUDA
        graph never copies a constant from the host."""
        device = self.device
        if device not in self._time_frequencies:
            c = self.config
            half = c.action_expert.width // 2
            f32 = dict(dtype=torch.float32, device=device)
            # jnp.linspace(0, 1, half) in float32: iota · (1/(half−1)), endpoint exactly 1
            fraction = torch.arange(half, **f32) * torch.tensor(1.0 / max(half - 1, 1), **f32)
            fraction[-1] = 1.0
            ratio = torch.tensor(c.time_max_period / c.time_min_period, **f32)
            period = torch.tensor(c.time_min_period, **f32) * torch.pow(ratio, fraction)
            self._time_frequencies[device] = 1.0 / period * 2.0 * torch.tensor(math.pi, **f32)
        return self._time_frequencies[device]

    def time_conditioning(self, t: Tensor) -> Tensor:
        """adaRMS conditioning (B, E) = swish(time_mlp_out(swish(time_mlp_in(time_embedding(t)))))."""
        x = F.silu(self.time_mlp_in(self.time_embedding(t)))
        return F.silu(self.time_mlp_out(x))

    def embed_suffix(self, x_t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Noisy actions (B, H, A) → action tokens (B, H, E), pad mask (B, H), ar mask [1, 0, …, 0] (H,)."""
        b, h, a = x_t.shape
        if a != self.config.action_dim:
            raise EvalkitError(f"actions have dim {a}, model expects {self.config.action_dim}")
        tokens = self.action_in_proj(x_t.to(self.device, torch.float32))
        pad_mask = torch.ones(b, h, dtype=torch.bool, device=self.device)
        ar_mask = torch.zeros(h, dtype=torch.bool, device=self.device)
        ar_mask[0] = True
        return tokens, pad_mask, ar_mask

    def velocity(self, cache: PrefixCache, x_t: Tensor, t: Tensor) -> Tensor:
        """v(x_t, t) with the action expert only, against the cached prefix. x_t (B, H, A), t (B,) or (1,) (one
        time for the whole batch: its conditioning is computed once, whatever B) → (B, H, A) float32."""
        suffix, suffix_mask, suffix_ar = self.embed_suffix(x_t)
        cond = self.time_conditioning(t)
        b, h = suffix_mask.shape
        prefix_mask = cache.pad_mask
        # actions see every valid prefix token and (bidirectionally) each other; the prefix never sees them
        attn_mask = torch.cat(
            [
                prefix_mask[:, None, :].expand(b, h, prefix_mask.shape[1]),
                make_attn_mask(suffix_mask, suffix_ar),
            ],
            dim=2,
        )  # (B, H, P + H)
        positions = prefix_mask.sum(dim=1, keepdim=True) + torch.cumsum(suffix_mask.long(), dim=1) - 1
        (_, out), _ = shared_attention_forward(
            [self.vlm, self.expert],
            [None, suffix],
            [None, cond],
            positions,
            attn_mask,
            kv_cache=cache.kv,
            rope_max_wavelength=self.config.rope_max_wavelength,
        )
        return self.action_out_proj(out[:, -h:].float())

    # ----------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def denoise(
        self,
        cache: PrefixCache,
        noise: Tensor,
        num_steps: int | None = None,
        on_step: StepCallback | None = None,
    ) -> Tensor:
        """Euler-integrate from x = noise at t = 1 down to t ≈ 0; t accumulates in float32 as in JAX.

        Every observation shares t, so the time conditioning is computed once as a (1, E) row and broadcast: an
        observation's actions then never depend on how many others share its batch through that matmul's shape."""
        steps = self.config.num_steps if num_steps is None else int(num_steps)
        if steps <= 0:
            raise EvalkitError(f"num_steps must be positive, got {steps}")
        dt = np.float32(-1.0 / steps)
        t = np.float32(1.0)
        x = noise.to(self.device, torch.float32)
        while t >= -dt / 2:
            v = self.velocity(cache, x, torch.full((1,), float(t), dtype=torch.float32, device=self.device))
            if on_step is not None:
                on_step(float(t), x, v)
            x = x + float(dt) * v
            t = np.float32(t + dt)
        return x

    @torch.no_grad()
    def sample_actions(
        self,
        images: Images,
        image_masks: ImageMasks,
        tokens: Tensor,
        token_mask: Tensor,
        noise: Tensor,
        num_steps: int | None = None,
        trim: bool = True,
    ) -> Tensor:
        """Normalized action chunk (B, H, A) float32. images (B, 224, 224, 3) in [-1, 1]; noise = x at t = 1.

        `trim` drops what no observation attends to first (`trim_prefix`); False keeps openpi's exact computation
        (and is what a caller that trimmed already passes)."""
        expected = (tokens.shape[0], self.config.action_horizon, self.config.action_dim)
        if tuple(noise.shape) != expected:
            raise EvalkitError(f"noise has shape {tuple(noise.shape)}, expected {expected}")
        if trim:
            images, image_masks, tokens, token_mask = trim_prefix(images, image_masks, tokens, token_mask)
        cache = self.prefix_kv_cache(images, image_masks, tokens, token_mask)
        return self.denoise(cache, noise, num_steps)

    # --------------------------------------------------------------------------------------------------- loss
    def compute_loss(
        self,
        images: Mapping[str, Tensor],
        image_masks: Mapping[str, Tensor],
        tokens: Tensor,
        token_mask: Tensor,
        actions: Tensor,
        noise: Tensor,
        time: Tensor,
    ) -> Tensor:
        """Flow-matching loss (B, H): mean over A of (v(x_t, t) − (noise − actions))², prefix+suffix in one pass."""
        f32 = dict(dtype=torch.float32, device=self.device)
        actions, noise, time = actions.to(**f32), noise.to(**f32), time.to(**f32)
        t = time[:, None, None]
        x_t = t * noise + (1 - t) * actions
        u_t = noise - actions
        prefix, prefix_mask, prefix_ar = self.embed_prefix(images, image_masks, tokens, token_mask)
        suffix, suffix_mask, suffix_ar = self.embed_suffix(x_t)
        cond = self.time_conditioning(time)
        pad_mask = torch.cat([prefix_mask, suffix_mask], dim=1)
        attn_mask = make_attn_mask(pad_mask, torch.cat([prefix_ar, suffix_ar]))
        positions = torch.cumsum(pad_mask.long(), dim=1) - 1
        (_, out), _ = shared_attention_forward(
            [self.vlm, self.expert],
            [prefix, suffix],
            [None, cond],
            positions,
            attn_mask,
            rope_max_wavelength=self.config.rope_max_wavelength,
        )
        v_t = self.action_out_proj(out[:, -actions.shape[1] :].float())
        return (v_t - u_t).square().mean(dim=-1)
