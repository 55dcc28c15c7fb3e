"""Model dims and tensor shapes: what `Pi05Model(config)` expects, strict comparison, and dims inferred from a
checkpoint's tensors (openpi PyTorch names or openpi JAX names)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.checkpoint.configs import TrainingConfig
from evalkit.models.pi05.checkpoint.io import read_json
from evalkit.models.pi05.config import IMAGE_KEYS, GemmaConfig, Pi05Config, SiglipConfig

EVALKIT_FORMAT = "evalkit.pi05"
P = "paligemma_with_expert.paligemma.model."
E = "paligemma_with_expert.gemma_expert.model."
# Present in converted/lerobot checkpoints but never used by the model (HF lm_heads; the expert's token embedder,
# which pi0.5 never calls; the expert's plain norm scales, replaced by adaRMS).
KNOWN_UNUSED = re.compile(
    r"^paligemma_with_expert\.(paligemma|gemma_expert)\.lm_head\.weight$"
    r"|^paligemma_with_expert\.gemma_expert\.model\.embed_tokens\.weight$"
    r"|^paligemma_with_expert\.gemma_expert\.model\.(layers\.\d+\.(input_layernorm|post_attention_layernorm)|norm)"
    r"\.weight$"
)
SIGLIP_HEADS_BY_WIDTH = {1152: 16}  # So400m/14; other widths need an explicit model config


def expected_shapes(config: Pi05Config) -> dict[str, tuple[int, ...]]:
    """Shapes of `Pi05Model(config).state_dict()`, built on the meta device (no memory)."""
    import torch

    from evalkit.models.pi05.model import Pi05Model

    with torch.device("meta"):
        model = Pi05Model(config)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def compare_shapes(
    found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], where: str, limit: int = 3
) -> None:
    """EvalkitError naming the first mismatches unless `found` == `expected` (ignoring KNOWN_UNUSED extras)."""
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected and not KNOWN_UNUSED.match(k))
    wrong = sorted(k for k in expected if k in found and tuple(found[k]) != tuple(expected[k]))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {', '.join(missing[:limit])}")
    if wrong:
        shown = ", ".join(
            f"{k} has shape {tuple(found[k])}, expected {tuple(expected[k])}" for k in wrong[:limit]
        )
        problems.append(f"{len(wrong)} with the wrong shape: {shown}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected[:limit])}")
    if problems:
        raise EvalkitError(f"{where} does not match the pi05 model: " + "; ".join(problems))


def infer_dims(shapes: Mapping[str, tuple[int, ...]], training_config: TrainingConfig) -> Pi05Config:
    """Model dims from openpi PyTorch tensor shapes (assuming pi0.5's single kv head), plus the config's horizon and
    prompt format."""

    def get(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise EvalkitError(f"cannot infer the model dims: tensor {key} is missing")
        return shapes[key]

    def depth(prefix: str) -> int:
        layers = {int(m.group(1)) for k in shapes if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
        if not layers or layers != set(range(len(layers))):
            raise EvalkitError(f"cannot infer the model depth from tensors under {prefix}")
        return len(layers)

    def gemma(prefix: str, vocab: int) -> GemmaConfig:
        q_rows, width = get(prefix + "layers.0.self_attn.q_proj.weight")
        head_dim = get(prefix + "layers.0.self_attn.k_proj.weight")[0]  # one kv head
        return GemmaConfig(
            width=width,
            depth=depth(prefix + "layers."),
            mlp_dim=get(prefix + "layers.0.mlp.gate_proj.weight")[0],
            num_heads=q_rows // head_dim,
            num_kv_heads=1,
            head_dim=head_dim,
            vocab_size=vocab,
        )

    vocab = get(P + "language_model.embed_tokens.weight")[0]
    vision = P + "vision_tower.vision_model."
    patch = get(vision + "embeddings.patch_embedding.weight")
    width = patch[0]
    if width not in SIGLIP_HEADS_BY_WIDTH:
        raise EvalkitError(
            f"cannot infer the SigLIP head count for width {width}; give the checkpoint an evalkit config.json "
            "(evalkit convert --model-config FILE)"
        )
    num_patches = get(vision + "embeddings.position_embedding.weight")[0]
    siglip = SiglipConfig(
        width=width,
        depth=depth(vision + "encoder.layers."),
        mlp_dim=get(vision + "encoder.layers.0.mlp.fc1.weight")[0],
        num_heads=SIGLIP_HEADS_BY_WIDTH[width],
        patch_size=patch[-1],
        image_size=int(round(num_patches**0.5)) * patch[-1],
        out_dim=get(P + "multi_modal_projector.linear.weight")[0],
    )
    return Pi05Config(
        paligemma=gemma(P + "language_model.", vocab),
        action_expert=gemma(E, vocab),
        siglip=siglip,
        action_dim=get("action_in_proj.weight")[1],
        action_horizon=training_config.action_horizon,
        max_token_len=training_config.max_token_len,
        discrete_state_input=training_config.discrete_state_input,
        image_keys=IMAGE_KEYS,
    )


def infer_dims_jax(flat: Mapping[str, np.ndarray], training_config: TrainingConfig) -> Pi05Config:
    """Model dims from openpi JAX parameter shapes (heads and head dims are explicit there)."""

    def get(key: str) -> tuple[int, ...]:
        if key not in flat:
            raise EvalkitError(f"cannot infer the model dims: JAX parameter {key} is missing")
        return tuple(int(n) for n in np.shape(flat[key]))

    llm, img = "PaliGemma/llm/", "PaliGemma/img/"
    vocab = get(llm + "embedder/input_embedding")[0]

    def gemma(suffix: str) -> GemmaConfig:
        depth, heads, width, head_dim = get(f"{llm}layers/attn/q_einsum{suffix}/w")
        kv_heads = get(f"{llm}layers/attn/kv_einsum{suffix}/w")[2]
        mlp_dim = get(f"{llm}layers/mlp{suffix}/gating_einsum")[-1]
        return GemmaConfig(width, depth, mlp_dim, heads, kv_heads, head_dim, vocab_size=vocab)

    block = img + "Transformer/encoderblock/"
    patch, _, _, width = get(img + "embedding/kernel")
    depth, _, heads, _ = get(block + "MultiHeadDotProductAttention_0/query/kernel")
    num_patches = get(img + "pos_embedding")[1]
    siglip = SiglipConfig(
        width=width,
        depth=depth,
        mlp_dim=get(block + "MlpBlock_0/Dense_0/kernel")[-1],
        num_heads=heads,
        patch_size=patch,
        image_size=int(round(num_patches**0.5)) * patch,
        out_dim=get(img + "head/kernel")[-1],
    )
    return Pi05Config(
        paligemma=gemma(""),
        action_expert=gemma("_1"),
        siglip=siglip,
        action_dim=get("action_in_proj/kernel")[0],
        action_horizon=training_config.action_horizon,
        max_token_len=training_config.max_token_len,
        discrete_state_input=training_config.discrete_state_input,
    )


def read_model_config_file(path: Path) -> Pi05Config:
    """A model config JSON: our checkpoint's config.json, a bare `Pi05Config.to_dict()`, or a fixture config.json."""
    data = read_json(Path(path))
    if data.get("format") == EVALKIT_FORMAT:
        return Pi05Config.from_dict(data.get("model", {}))
    if "pi05" in data or "time_posemb" in data:
        return Pi05Config.from_fixture(data)
    return Pi05Config.from_dict(data)


def apply_behaviour(config: Pi05Config, training_config: TrainingConfig) -> Pi05Config:
    return replace(
        config,
        action_horizon=training_config.action_horizon,
        discrete_state_input=training_config.discrete_state_input,
        max_token_len=training_config.max_token_len,
    )


def check_dims(config: Pi05Config, inferred: Pi05Config, where: str) -> None:
    """A given model config must agree with the dims the tensors imply."""
    for part in ("paligemma", "action_expert", "siglip"):
        if getattr(config, part) != getattr(inferred, part):
            raise EvalkitError(
                f"{where}: the {part} dims of the model config {getattr(config, part)} do not match "
                f"the tensors' {getattr(inferred, part)}"
            )
    if config.action_dim != inferred.action_dim:
        raise EvalkitError(f"{where}: action_dim {config.action_dim} != the tensors' {inferred.action_dim}")
