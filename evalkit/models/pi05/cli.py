"""`evalkit convert` (any supported pi05 checkpoint → evalkit's safetensors layout) and
`evalkit make-tiny-checkpoint` (random tiny weights + a tiny tokenizer, for smoke runs of `--policy pi05`).

No heavy imports at module level: torch is imported inside the commands.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evalkit.core.errors import EvalkitError

if TYPE_CHECKING:
    import torch

    from evalkit.models.pi05.config import Pi05Config

# ------------------------------------------------------------------------------------------------------ convert


def convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--src",
        required=True,
        help="openpi JAX checkpoint dir (params/, needs orbax-checkpoint), a flat JAX-named .npz, "
        "an openpi PyTorch or lerobot pi05 dir, or an evalkit checkpoint",
    )
    parser.add_argument("--out", required=True, help="output directory (evalkit layout)")
    parser.add_argument(
        "--config",
        default=None,
        help="training config name: pi05_libero, pi05_droid, pi05_droid_jointpos (horizon, prompt format, stats) "
        "(default: the one the source records; required when it records none)",
    )
    parser.add_argument(
        "--model-config",
        default=None,
        help="JSON with model dims the tensors cannot tell (non-standard SigLIP) (default: none: dims read from the "
        "tensors)",
    )
    parser.add_argument(
        "--norm-stats",
        default=None,
        help="openpi norm_stats.json to use instead of the source's (default: the source's)",
    )
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="PaliGemma SentencePiece model to copy into the output (default: the source's, if it has one)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="stored weight dtype (default: float32)",
    )


def convert_main(args: argparse.Namespace) -> int:
    from evalkit.models.pi05.checkpoint import convert_checkpoint, load_checkpoint

    out = convert_checkpoint(
        args.src,
        args.out,
        config_name=args.config,
        model_config_file=args.model_config,
        norm_stats=args.norm_stats,
        dtype=args.dtype,
        tokenizer=args.tokenizer,
    )
    ckpt = load_checkpoint(out)  # read back: the output must load strictly
    print(
        f"wrote {out} ({ckpt.training_config.name}: horizon {ckpt.config.action_horizon}, "
        f"{'state prompt' if ckpt.config.discrete_state_input else 'no state in prompt'}, "
        f"norm {ckpt.norm.state.mode}/{ckpt.norm.actions.mode}, {args.dtype})"
    )
    print(f"fingerprint {ckpt.fingerprint()}")
    return 0


# ------------------------------------------------------------------------------------------ make-tiny-checkpoint

TINY_DIMS = {  # like tests/fixtures/pi05_tiny_a
    "paligemma": dict(width=64, depth=2, mlp_dim=128, num_heads=2, num_kv_heads=1, head_dim=32),
    "action_expert": dict(width=32, depth=2, mlp_dim=64, num_heads=2, num_kv_heads=1, head_dim=32),
    "siglip": dict(width=32, depth=2, mlp_dim=64, num_heads=2),
}
TINY_MAX_TOKEN_LEN = 64

_OBJECTS = (
    "black bowl",
    "plate",
    "ketchup",
    "alphabet soup",
    "cream cheese",
    "tomato sauce",
    "butter",
    "milk",
    "orange juice",
    "bbq sauce",
    "salad dressing",
    "wine bottle",
    "mug",
    "frying pan",
    "cube",
    "can",
    "banana",
)
_PLACES = (
    "plate",
    "basket",
    "top drawer of the cabinet",
    "stove",
    "wooden cabinet",
    "tray",
    "bowl",
    "bin",
    "mug",
    "cookie box",
    "ramekin",
    "wine rack",
    "microwave",
)
_VERBS = (
    "pick up the {o} and place it on the {p}",
    "put the {o} in the {p}",
    "put the {o} on the {p}",
    "pick up the {o} next to the {p} and place it on the plate",
    "open the {p}",
    "turn on the stove",
    "push the {o} to the front of the {p}",
)


def tiny_training_sentences() -> list[str]:
    """LIBERO/DROID-like instructions plus the pi0.5 state prompt frame, for the tiny tokenizer."""
    rng = np.random.default_rng(0)
    sentences = []
    for verb, obj, place in itertools.product(_VERBS, _OBJECTS, _PLACES):
        text = verb.format(o=obj, p=place)
        sentences.append(text)
        state = " ".join(str(v) for v in rng.integers(-1, 256, size=8))
        sentences.append(f"Task: {text}, State: {state};")
    sentences.append("Action: ")
    return sentences


def tiny_norm_stats(embodiment: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Plausible (not measured) stats: LIBERO eef pose + gripper qpos / delta actions; DROID joints / velocities."""
    if embodiment == "libero":
        state_q01 = [-0.25, -0.35, 0.85, 2.4, -1.2, -1.0, 0.0, -0.042]
        state_q99 = [0.2, 0.35, 1.35, 3.4, 1.0, 0.8, 0.042, 0.0]
        act_q01 = [-0.9, -0.9, -0.9, -0.15, -0.2, -0.3, -1.0]
        act_q99 = [0.9, 0.9, 0.9, 0.15, 0.2, 0.3, 1.0]
    elif embodiment == "droid":
        state_q01 = [-1.5, -0.8, -1.2, -2.8, -1.5, 0.6, -1.5, 0.0]
        state_q99 = [1.5, 1.2, 1.2, -0.8, 1.5, 3.2, 1.5, 1.0]
        act_q01 = [-0.6, -0.6, -0.6, -0.6, -0.8, -0.8, -0.8, 0.0]
        act_q99 = [0.6, 0.6, 0.6, 0.6, 0.8, 0.8, 0.8, 1.0]
    else:
        raise EvalkitError(f"unknown embodiment {embodiment!r}; choose libero or droid")

    def stats(q01: list[float], q99: list[float]) -> dict[str, np.ndarray]:
        low, high = np.asarray(q01, np.float32), np.asarray(q99, np.float32)
        return {"mean": (low + high) / 2, "std": (high - low) / 4, "q01": low, "q99": high}

    return stats(state_q01, state_q99), stats(act_q01, act_q99)


def random_tiny_weights(config: Pi05Config, seed: int) -> dict[str, torch.Tensor]:
    """Every tensor random and non-trivial: matrices N(0, 1/fan_in), embeddings N(0, 1/width), vectors N(0, 0.1²)."""
    import torch

    from evalkit.models.pi05.checkpoint import expected_shapes

    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in sorted(expected_shapes(config).items()):
        if len(shape) == 1:
            std = 0.1
        elif name.endswith("embed_tokens.weight") or name.endswith("position_embedding.weight"):
            std = shape[-1] ** -0.5
        else:
            std = float(np.prod(shape[1:])) ** -0.5
        out[name] = torch.randn(shape, generator=generator) * std
    return out


def make_tiny_checkpoint(out: Path, embodiment: str = "libero", seed: int = 0) -> Path:
    from dataclasses import replace

    from evalkit.models.pi05.checkpoint import NAMED_CONFIGS, write_evalkit_checkpoint
    from evalkit.models.pi05.config import GemmaConfig, Pi05Config, SiglipConfig
    from evalkit.models.pi05.normalize import FeatureNorm, NormSpec
    from evalkit.models.pi05.tokenizer import TOKENIZER_FILENAME, train_tiny_sentencepiece

    base = {"libero": "pi05_libero", "droid": "pi05_droid"}.get(embodiment)
    if base is None:
        raise EvalkitError(f"unknown embodiment {embodiment!r}; choose libero or droid")
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_sentencepiece(out / TOKENIZER_FILENAME, tiny_training_sentences())
    import sentencepiece

    vocab = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer)).get_piece_size()
    training_config = replace(NAMED_CONFIGS[base], name=f"tiny_{base}", max_token_len=TINY_MAX_TOKEN_LEN)
    config = Pi05Config(
        paligemma=GemmaConfig(**TINY_DIMS["paligemma"], vocab_size=vocab),
        action_expert=GemmaConfig(**TINY_DIMS["action_expert"], vocab_size=vocab),
        siglip=SiglipConfig(**TINY_DIMS["siglip"], out_dim=TINY_DIMS["paligemma"]["width"]),
        action_horizon=training_config.action_horizon,
        max_token_len=training_config.max_token_len,
        discrete_state_input=training_config.discrete_state_input,
    )
    state, actions = tiny_norm_stats(embodiment)
    norm = NormSpec(FeatureNorm("quantile", state), FeatureNorm("quantile", actions))
    weights = random_tiny_weights(config, seed)
    return write_evalkit_checkpoint(out, weights, config, training_config, norm, "float32", tokenizer)


def make_tiny_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output directory")
    parser.add_argument(
        "--embodiment",
        default="libero",
        choices=("libero", "droid"),
        help="robot whose training config and norm stats it mimics (default: libero)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")


def make_tiny_checkpoint_main(args: argparse.Namespace) -> int:
    from evalkit.models.pi05.checkpoint import load_checkpoint

    out = make_tiny_checkpoint(Path(args.out), args.embodiment, args.seed)
    ckpt = load_checkpoint(out)
    print(
        f"wrote tiny random pi05 checkpoint {out} ({ckpt.training_config.name}); it is for smoke tests only"
    )
    suite = "libero_spatial" if args.embodiment == "libero" else "droid_demo"
    print(
        f"one-episode smoke run: evalkit eval --suite {suite} --policy pi05 --checkpoint {out} "
        f"--tasks 0 --episodes-per-task 1 --max-steps 20 --out results/{suite}__pi05_tiny_smoke"
    )
    return 0
