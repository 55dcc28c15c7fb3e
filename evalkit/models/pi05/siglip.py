"""SigLIP So400m/14 vision tower as π₀.₅ uses it: learned posemb, pre-LN ViT, no pooling.

Parameter names follow openpi's PyTorch port (HF `SiglipVisionModel`): `vision_model.embeddings.patch_embedding`,
`vision_model.encoder.layers.{i}.{layer_norm1,self_attn,layer_norm2,mlp}`, `vision_model.post_layernorm`.
Shapes: B images, P = (224/14)² = 256 patches, W = width, Nv heads, Hv = W / Nv.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from evalkit.models.pi05.config import SiglipConfig


class SiglipEmbeddings(nn.Module):
    """14×14 stride-14 patch conv + learned position table, both in float32 (as JAX does)."""

    def __init__(self, config: SiglipConfig):
        super().__init__()
        self.patch_embedding = nn.Conv2d(3, config.width, config.patch_size, stride=config.patch_size)
        self.position_embedding = nn.Embedding(config.num_patches, config.width)

    def forward(self, images: Tensor) -> Tensor:
        """images (B, 224, 224, 3) HWC in [-1, 1] → (B, P, W) float32, patches in row-major order."""
        w = self.patch_embedding.weight
        x = F.conv2d(images.permute(0, 3, 1, 2).to(w.dtype), w, self.patch_embedding.bias, stride=w.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # (B, W, 16, 16) → (B, 256, W), token = row*16 + col
        return x + self.position_embedding.weight[None].to(x.dtype)


class SiglipAttention(nn.Module):
    """Multi-head self-attention with biases, scale 1/sqrt(Hv)."""

    def __init__(self, config: SiglipConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.q_proj = nn.Linear(config.width, config.width)
        self.k_proj = nn.Linear(config.width, config.width)
        self.v_proj = nn.Linear(config.width, config.width)
        self.out_proj = nn.Linear(config.width, config.width)

    def forward(self, x: Tensor) -> Tensor:
        b, p, w = x.shape

        def heads(t: Tensor) -> Tensor:  # (B, P, W) → (B, Nv, P, Hv)
            return t.view(b, p, self.num_heads, w // self.num_heads).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, Nv, P, Hv)
        return self.out_proj(out.transpose(1, 2).reshape(b, p, w))


class SiglipMLP(nn.Module):
    def __init__(self, config: SiglipConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.width, config.mlp_dim)
        self.fc2 = nn.Linear(config.mlp_dim, config.width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SiglipEncoderLayer(nn.Module):
    """Pre-LN block: x += attn(LN1(x)); x += mlp(LN2(x))."""

    def __init__(self, config: SiglipConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.width, eps=config.layernorm_eps)
        self.self_attn = SiglipAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.width, eps=config.layernorm_eps)
        self.mlp = SiglipMLP(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class SiglipEncoder(nn.Module):
    def __init__(self, config: SiglipConfig):
        super().__init__()
        self.layers = nn.ModuleList(SiglipEncoderLayer(config) for _ in range(config.depth))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class SiglipVisionTransformer(nn.Module):
    def __init__(self, config: SiglipConfig):
        super().__init__()
        self.embeddings = SiglipEmbeddings(config)
        self.encoder = SiglipEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.width, eps=config.layernorm_eps)

    def forward(self, images: Tensor) -> Tensor:
        """images (B, 224, 224, 3) → (B, P, W) after `encoder_norm`, in the encoder's dtype."""
        x = self.embeddings(images)
        x = x.to(self.post_layernorm.weight.dtype)
        return self.post_layernorm(self.encoder(x))


class SiglipVisionModel(nn.Module):
    """Wrapper that gives the `vision_tower.vision_model.*` parameter names."""

    def __init__(self, config: SiglipConfig):
        super().__init__()
        self.vision_model = SiglipVisionTransformer(config)

    def forward(self, images: Tensor) -> Tensor:
        return self.vision_model(images)


class MultiModalProjector(nn.Module):
    """SigLIP `head`: Dense W → LLM width. Gives the `multi_modal_projector.linear` names."""

    def __init__(self, config: SiglipConfig):
        super().__init__()
        self.linear = nn.Linear(config.width, config.out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.to(self.linear.weight.dtype))
