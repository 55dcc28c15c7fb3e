"""`evalkit convert`: any supported source (openpi JAX `params/` or flat `.npz`, openpi PyTorch, lerobot, ours) →
evalkit's layout (`evalkit_layout.py`)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.checkpoint.configs import TrainingConfig, check_norm_stats
from evalkit.models.pi05.checkpoint.io import WEIGHTS_FILE
from evalkit.models.pi05.checkpoint.layout import checkpoint_info, detect_layout
from evalkit.models.pi05.checkpoint.load import DTYPES, load_checkpoint
from evalkit.models.pi05.checkpoint.openpi_jax import OpenpiJaxLayout
from evalkit.models.pi05.checkpoint.shapes import (
    EVALKIT_FORMAT,
    apply_behaviour,
    check_dims,
    compare_shapes,
    expected_shapes,
    infer_dims_jax,
    read_model_config_file,
)
from evalkit.models.pi05.config import Pi05Config
from evalkit.models.pi05.normalize import NormSpec, write_openpi_norm_stats
from evalkit.models.pi05.tokenizer import TOKENIZER_FILENAME

if TYPE_CHECKING:
    import torch


def write_evalkit_checkpoint(
    out: Path,
    state_dict: Mapping[str, torch.Tensor],
    config: Pi05Config,
    training_config: TrainingConfig,
    norm: NormSpec,
    dtype: str = "float32",
    tokenizer: Path | None = None,
) -> Path:
    """Write our layout. Tensors are cast to `dtype` (openpi's fp32 keep-list applies at load time)."""
    import torch
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise EvalkitError(f"unsupported dtype {dtype!r}; choose float32 or bfloat16")
    compare_shapes(
        {k: tuple(v.shape) for k, v in state_dict.items()}, expected_shapes(config), "converted weights"
    )
    out.mkdir(parents=True, exist_ok=True)
    torch_dtype = getattr(torch, dtype)
    tensors = {k: v.detach().to(torch_dtype).contiguous() for k, v in state_dict.items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, out / WEIGHTS_FILE)
    asset_id = training_config.asset_id or "evalkit"
    stats_rel = f"assets/{asset_id}/norm_stats.json"
    write_openpi_norm_stats(out / stats_rel, dict(norm.state.stats), dict(norm.actions.stats))
    normalization: dict[str, Any] = {
        "stats_file": stats_rel,
        "state_mode": norm.state.mode,
        "actions_mode": norm.actions.mode,
    }
    if norm.state.eps is not None:
        normalization["state_eps"] = norm.state.eps
    if norm.actions.eps is not None:
        normalization["actions_eps"] = norm.actions.eps
    info = {
        "format": EVALKIT_FORMAT,
        "version": 1,
        "dtype": dtype,
        "model": config.to_dict(),
        "behaviour": replace(training_config, asset_id=asset_id).to_dict(),
        "normalization": normalization,
    }
    (out / "config.json").write_text(json.dumps(info, indent=2))
    if tokenizer is not None and tokenizer.resolve() != (out / TOKENIZER_FILENAME).resolve():
        shutil.copyfile(tokenizer, out / TOKENIZER_FILENAME)
    return out


def convert_checkpoint(
    src: str | Path,
    out: str | Path,
    config_name: str | None = None,
    model_config_file: str | Path | None = None,
    norm_stats: str | Path | None = None,
    dtype: str = "float32",
    tokenizer: str | Path | None = None,
) -> Path:
    """Convert `src` to our layout in `out`; the training config must be named unless `src` records it."""
    src, out = Path(src).expanduser(), Path(out).expanduser()
    model_config = read_model_config_file(Path(model_config_file)) if model_config_file is not None else None
    stats_path = Path(norm_stats).expanduser() if norm_stats is not None else None
    layout = detect_layout(src)
    if isinstance(layout, OpenpiJaxLayout):
        training_config = layout.training_config(src, {}, config_name)
        flat = layout.read_params(src)
        inferred = infer_dims_jax(flat, training_config)
        if model_config is not None:
            check_dims(model_config, inferred, str(src))
        config = apply_behaviour(model_config or inferred, training_config)
        norm, _ = layout.norm_stats(src, checkpoint_info(src), training_config, stats_path)
        from evalkit.models.pi05.jax_names import jax_to_state_dict

        state = jax_to_state_dict(flat, config)
        default_tokenizer = layout.root(src) / TOKENIZER_FILENAME
        tokenizer_path = (
            Path(tokenizer) if tokenizer else (default_tokenizer if default_tokenizer.is_file() else None)
        )
    else:
        ckpt = load_checkpoint(src, config_name, stats_path, model_config_file)
        config, training_config, norm = ckpt.config, ckpt.training_config, ckpt.norm
        state = ckpt.state_dict()
        tokenizer_path = Path(tokenizer) if tokenizer else ckpt.tokenizer_path
    training_config = replace(
        training_config,
        action_horizon=config.action_horizon,
        discrete_state_input=config.discrete_state_input,
        max_token_len=config.max_token_len,
    )
    check_norm_stats(norm, training_config, config.action_dim)
    return write_evalkit_checkpoint(out, state, config, training_config, norm, dtype, tokenizer_path)
