"""Dimensions of π₀.₅: the Gemma 2B VLM expert, the Gemma 300M action expert, SigLIP So400m/14.

Pure dataclasses (no torch import) so that the CLI and checkpoint code can read configs cheaply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from evalkit.core.errors import EvalkitError

PALIGEMMA_VOCAB_SIZE = 257_152
IMAGE_KEYS = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")


@dataclass(frozen=True)
class GemmaConfig:
    """One expert of the shared-attention transformer (openpi `gemma.Config`)."""

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int = PALIGEMMA_VOCAB_SIZE

    def __post_init__(self) -> None:
        if min(self.width, self.depth, self.mlp_dim, self.num_heads, self.num_kv_heads, self.head_dim) <= 0:
            raise EvalkitError(f"gemma config has a non-positive dimension: {self}")
        if self.num_heads % self.num_kv_heads:
            raise EvalkitError(
                f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}"
            )
        if self.head_dim % 2:
            raise EvalkitError(f"head_dim {self.head_dim} must be even for RoPE")


@dataclass(frozen=True)
class SiglipConfig:
    """SigLIP ViT with learned position embeddings, no pooling, and a `head` Dense to the LLM width."""

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch_size: int = 14
    image_size: int = 224
    out_dim: int = 2048  # = width of the VLM expert
    layernorm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise EvalkitError(f"siglip width {self.width} is not a multiple of num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise EvalkitError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


GEMMA_2B = GemmaConfig(width=2048, depth=18, mlp_dim=16_384, num_heads=8, num_kv_heads=1, head_dim=256)
GEMMA_300M = GemmaConfig(width=1024, depth=18, mlp_dim=4096, num_heads=8, num_kv_heads=1, head_dim=256)
SIGLIP_SO400M = SiglipConfig(width=1152, depth=27, mlp_dim=4304, num_heads=16, out_dim=2048)


@dataclass(frozen=True)
class Pi05Config:
    """Everything that fixes the shapes and the numerics of a π₀.₅ model."""

    paligemma: GemmaConfig
    action_expert: GemmaConfig
    siglip: SiglipConfig
    action_dim: int = 32
    action_horizon: int = 50
    max_token_len: int = 200
    num_steps: int = 10
    discrete_state_input: bool = True
    image_keys: tuple[str, ...] = IMAGE_KEYS
    rmsnorm_eps: float = 1e-6
    rope_max_wavelength: float = 10_000.0
    time_min_period: float = 4e-3
    time_max_period: float = 4.0

    def __post_init__(self) -> None:
        vlm, expert = self.paligemma, self.action_expert
        for name in ("depth", "num_heads", "num_kv_heads", "head_dim"):
            if getattr(vlm, name) != getattr(expert, name):
                raise EvalkitError(
                    f"the two experts share attention, so their {name} must match: "
                    f"{getattr(vlm, name)} != {getattr(expert, name)}"
                )
        if self.siglip.out_dim != vlm.width:
            raise EvalkitError(f"siglip out_dim {self.siglip.out_dim} != VLM width {vlm.width}")
        if expert.width % 2:
            raise EvalkitError(f"action expert width {expert.width} must be even (sin/cos time embedding)")
        if min(self.action_dim, self.action_horizon, self.max_token_len, self.num_steps) <= 0:
            raise EvalkitError("action_dim, action_horizon, max_token_len and num_steps must be positive")
        if not self.image_keys:
            raise EvalkitError("image_keys must not be empty")
        object.__setattr__(self, "image_keys", tuple(self.image_keys))

    @property
    def prefix_len(self) -> int:
        """Prefix positions including padding: 256 per image slot + the padded prompt."""
        return len(self.image_keys) * self.siglip.num_patches + self.max_token_len

    @classmethod
    def full(
        cls, action_horizon: int = 50, discrete_state_input: bool = True, max_token_len: int = 200
    ) -> Pi05Config:
        """The released π₀.₅ size: Gemma 2B + Gemma 300M + SigLIP So400m/14 (~3.3B parameters)."""
        return cls(
            paligemma=GEMMA_2B,
            action_expert=GEMMA_300M,
            siglip=SIGLIP_SO400M,
            action_horizon=action_horizon,
            discrete_state_input=discrete_state_input,
            max_token_len=max_token_len,
        )

    @classmethod
    def from_fixture(cls, config_json: dict[str, Any]) -> Pi05Config:
        """Read the schema of the golden fixtures' `config.json` (e.g. tests/fixtures/pi05_tiny_a)."""
        try:
            if not config_json.get("pi05", True):
                raise EvalkitError("fixture config is not a pi05 model (pi05=false)")
            gemma_keys = ("width", "depth", "mlp_dim", "num_heads", "num_kv_heads", "head_dim")
            vlm = config_json["paligemma"]
            expert = config_json["action_expert"]
            vis = config_json["siglip"]
            vocab = int(vlm.get("vocab_size", PALIGEMMA_VOCAB_SIZE))
            time = config_json.get("time_posemb", {})
            return cls(
                paligemma=GemmaConfig(**{k: int(vlm[k]) for k in gemma_keys}, vocab_size=vocab),
                action_expert=GemmaConfig(**{k: int(expert[k]) for k in gemma_keys}, vocab_size=vocab),
                siglip=SiglipConfig(
                    width=int(vis["width"]),
                    depth=int(vis["depth"]),
                    mlp_dim=int(vis["mlp_dim"]),
                    num_heads=int(vis["num_heads"]),
                    patch_size=int(vis.get("patch_size", 14)),
                    image_size=int(vis.get("image_size", 224)),
                    out_dim=int(vis.get("head_out_dim", vlm["width"])),
                    layernorm_eps=float(vis.get("layernorm_eps", 1e-6)),
                ),
                action_dim=int(config_json["action_dim"]),
                action_horizon=int(config_json["action_horizon"]),
                max_token_len=int(config_json["max_token_len"]),
                num_steps=int(config_json.get("num_steps", 10)),
                discrete_state_input=bool(config_json.get("discrete_state_input", True)),
                image_keys=tuple(config_json.get("image_keys", IMAGE_KEYS)),
                rmsnorm_eps=float(config_json.get("rmsnorm_eps", 1e-6)),
                rope_max_wavelength=float(config_json.get("rope_max_wavelength", 10_000)),
                time_min_period=float(time.get("min_period", 4e-3)),
                time_max_period=float(time.get("max_period", 4.0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise EvalkitError(f"fixture config.json is malformed: {type(e).__name__}: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (our checkpoint's config.json)."""
        d = dataclasses.asdict(self)
        d["image_keys"] = list(self.image_keys)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pi05Config:
        """Inverse of `to_dict`; unknown or missing keys are an error, never silently ignored."""
        if not isinstance(data, dict):
            raise EvalkitError("pi05 config must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EvalkitError(f"unknown pi05 config keys: {', '.join(unknown)}")
        try:
            fields = dict(data)
            fields["paligemma"] = GemmaConfig(**data["paligemma"])
            fields["action_expert"] = GemmaConfig(**data["action_expert"])
            fields["siglip"] = SiglipConfig(**data["siglip"])
            if "image_keys" in fields:
                fields["image_keys"] = tuple(fields["image_keys"])
            return cls(**fields)
        except (KeyError, TypeError) as e:
            raise EvalkitError(f"pi05 config is malformed: {type(e).__name__}: {e}") from e
