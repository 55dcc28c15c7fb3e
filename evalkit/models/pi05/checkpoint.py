"""Loading π₀.₅ checkpoints from a local directory, strictly.

Layouts (`detect_layout`):
- `evalkit`: our layout = openpi PyTorch weights (`model.safetensors`) + `config.json` written by evalkit
  (`{"format": "evalkit.pi05", "model": {...}, "behaviour": {...}, "normalization": {...}}`) + norm stats under
  `assets/<asset_id>/norm_stats.json` (+ optional `tokenizer.model`). `evalkit convert` writes it.
- `openpi`: openpi PyTorch (`examples/convert_jax_model_to_pytorch.py` output): `model.safetensors` + openpi's
  informational `config.json` (action_horizon only) + `assets/<asset_id>/norm_stats.json`.
- `lerobot`: `model.safetensors` with `model.`-prefixed openpi names + `config.json` (`"type": "pi05"`) +
  `policy_preprocessor.json`/`policy_postprocessor.json` (+ their safetensors state files) for the stats.
- `orbax`: openpi JAX `params/` tree; readable only with the optional `orbax-checkpoint` package, otherwise
  convert elsewhere with `evalkit convert`. A flat JAX-named `.npz` (`params_jax.npz`) is read directly.

Everything is validated against the shapes of `Pi05Model(config)`: every expected tensor present with its shape,
no unexpected one (besides `KNOWN_UNUSED`). Only safetensors, json and npz (without pickle) are ever read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.config import IMAGE_KEYS, GemmaConfig, Pi05Config, SiglipConfig
from evalkit.models.pi05.normalize import (
    NormSpec,
    lerobot_norm_spec,
    openpi_norm_spec,
    read_openpi_norm_stats,
)
from evalkit.models.pi05.tokenizer import TOKENIZER_FILENAME

if TYPE_CHECKING:
    import torch

    from evalkit.models.pi05.model import Pi05Model

log = logging.getLogger(__name__)

EVALKIT_FORMAT = "evalkit.pi05"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")

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


@dataclass(frozen=True)
class Behaviour:
    """What a checkpoint's training config fixes beyond tensor shapes: horizon, prompt format, stats, outputs."""

    name: str  # config name, e.g. "pi05_libero"; "custom" when read from a checkpoint's own config
    action_horizon: int
    discrete_state_input: bool
    max_token_len: int = 200
    asset_id: str | None = None  # openpi norm stats: assets/<asset_id>/norm_stats.json
    embodiment: str | None = None  # "libero" | "droid"
    absolute_joint_actions: bool = False  # *_jointpos: actions[:7] += state[:7] (openpi AbsoluteActions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action_horizon": self.action_horizon,
            "discrete_state_input": self.discrete_state_input,
            "max_token_len": self.max_token_len,
            "asset_id": self.asset_id,
            "embodiment": self.embodiment,
            "absolute_joint_actions": self.absolute_joint_actions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Behaviour:
        try:
            return cls(**data)
        except TypeError as exc:
            raise EvalkitError(f"malformed behaviour entry in config.json: {exc}") from exc


NAMED_CONFIGS: dict[str, Behaviour] = {
    "pi05_libero": Behaviour("pi05_libero", 10, False, 200, "physical-intelligence/libero", "libero"),
    "pi05_droid": Behaviour("pi05_droid", 15, True, 200, "droid", "droid"),
    "pi05_droid_jointpos": Behaviour("pi05_droid_jointpos", 15, True, 200, "droid", "droid", True),
}


def named_config(name: str) -> Behaviour:
    if name not in NAMED_CONFIGS:
        raise EvalkitError(f"unknown pi05 config {name!r}; choose one of {', '.join(NAMED_CONFIGS)}")
    return NAMED_CONFIGS[name]


# ---------------------------------------------------------------------------------------------------------------
# Reading tensors (safetensors / npz only)


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise EvalkitError(
            f"{path} is a pickle-based file; evalkit never unpickles checkpoints. "
            "Convert it to safetensors (model.safetensors) with the tool that made it"
        )


def weight_files(directory: Path) -> list[Path]:
    """`model.safetensors`, or the shards listed in `model.safetensors.index.json`."""
    single = directory / WEIGHTS_FILE
    if single.is_file():
        return [single]
    index = directory / WEIGHTS_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise EvalkitError(f"cannot read {index}: {exc}") from exc
        files = [directory / name for name in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise EvalkitError(
                f"{directory}: shards listed in {WEIGHTS_INDEX} are missing: {', '.join(missing)}"
            )
        return files
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise EvalkitError(
            f"{directory} has only pickle-based weights ({', '.join(pickles)}); evalkit reads safetensors only "
            "and never unpickles. Convert them to model.safetensors"
        )
    raise EvalkitError(f"{directory} has no {WEIGHTS_FILE}")


def safetensors_shapes(files: Iterable[Path]) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    shapes[key] = tuple(handle.get_slice(key).get_shape())
        except Exception as exc:  # safetensors raises its own error types
            raise EvalkitError(f"{path} is not a readable safetensors file: {exc}") from exc
    return shapes


def read_safetensors(files: Iterable[Path], keys: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Read tensors; `keys` maps file key -> our key (None: all, unchanged)."""
    from safetensors import safe_open

    out = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118
                if keys is None:
                    out[key] = handle.get_tensor(key)
                elif key in keys:
                    out[keys[key]] = handle.get_tensor(key)
    return out


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """A flat npz (JAX names), read without pickle."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}
    except ValueError as exc:
        raise EvalkitError(
            f"{path} holds pickled objects; evalkit reads plain numeric npz arrays only"
        ) from exc
    except (OSError, EOFError) as exc:
        raise EvalkitError(f"cannot read {path}: {exc}") from exc


def read_orbax_params(params_dir: Path) -> dict[str, np.ndarray]:
    """openpi JAX `params/` (orbax OCDBT) → flat `a/b/c` dict. Needs the optional `orbax-checkpoint` package."""
    try:
        import orbax.checkpoint as ocp  # type: ignore[import-not-found]
    except ImportError as exc:
        raise EvalkitError(
            f"{params_dir} is an openpi JAX (orbax) checkpoint; reading it needs the optional package "
            "orbax-checkpoint (pip install -e '.[orbax]'), or convert it on a machine that has it with "
            "`evalkit convert --src <ckpt> --out DIR --config NAME`"
        ) from exc
    try:
        restored = ocp.PyTreeCheckpointer().restore(str(params_dir.resolve()))
    except Exception as exc:  # orbax/tensorstore raise many types
        raise EvalkitError(
            f"cannot read the orbax checkpoint {params_dir}: {type(exc).__name__}: {exc}"
        ) from exc
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: tuple[str, ...]) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, prefix + (str(key),))
            return
        parts = prefix[:-1] if prefix and prefix[-1] == "value" else prefix  # nnx.State leaves end in "value"
        flat["/".join(parts)] = np.asarray(node)

    walk(restored, ())
    if flat and all(k.startswith("params/") for k in flat):
        flat = {k[len("params/") :]: v for k, v in flat.items()}
    return flat


# ---------------------------------------------------------------------------------------------------------------
# Key fixes and validation


# transformers < 4.52 named PaliGemma's parts differently; its own `_checkpoint_conversion_mapping` renames them.
LEGACY_HF_NAMES = (
    ("paligemma_with_expert.paligemma.language_model.model.", P + "language_model."),
    ("paligemma_with_expert.paligemma.vision_tower.", P + "vision_tower."),
    ("paligemma_with_expert.paligemma.multi_modal_projector.", P + "multi_modal_projector."),
    ("paligemma_with_expert.paligemma.language_model.lm_head.", "paligemma_with_expert.paligemma.lm_head."),
)


def canonical_names(keys: Iterable[str], lerobot: bool) -> dict[str, str]:
    """File key -> our (openpi PyTorch, transformers >= 4.52) name.

    lerobot (`_fix_pytorch_state_dict_keys`): strip `model.`, `action_time_mlp_*` -> `time_mlp_*`, drop
    `state_proj`. Both: legacy transformers names; the tied PaliGemma lm_head stands in for a missing embed_tokens.
    """
    mapping: dict[str, str] = {}
    for key in keys:
        name = key
        if lerobot:
            if not key.startswith("model."):
                raise EvalkitError(f"lerobot checkpoint tensor {key!r} lacks the 'model.' prefix")
            name = key[len("model.") :]
            if name.startswith("state_proj."):
                continue
            for old, new in (
                ("action_time_mlp_in.", "time_mlp_in."),
                ("action_time_mlp_out.", "time_mlp_out."),
            ):
                name = new + name[len(old) :] if name.startswith(old) else name
        for old, new in LEGACY_HF_NAMES:
            if name.startswith(old):
                name = new + name[len(old) :]
                break
        mapping[key] = name
    embed = P + "language_model.embed_tokens.weight"
    lm_head = "paligemma_with_expert.paligemma.lm_head.weight"
    if embed not in mapping.values():
        for key, name in list(mapping.items()):
            if name == lm_head:
                mapping[key] = embed  # tied weights saved only once, under lm_head
    seen: dict[str, str] = {}
    for key, name in mapping.items():
        if name in seen:
            raise EvalkitError(f"tensors {seen[name]!r} and {key!r} both map to {name!r}")
        seen[name] = key
    return mapping


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


def expected_shapes(config: Pi05Config) -> dict[str, tuple[int, ...]]:
    """Shapes of `Pi05Model(config).state_dict()`, built on the meta device (no memory)."""
    import torch

    from evalkit.models.pi05.model import Pi05Model

    with torch.device("meta"):
        model = Pi05Model(config)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


SIGLIP_HEADS_BY_WIDTH = {1152: 16}  # So400m/14; other widths need an explicit config.json


def infer_dims(shapes: Mapping[str, tuple[int, ...]], behaviour: Behaviour) -> Pi05Config:
    """Model dims from tensor shapes (assuming pi0.5's single kv head), plus the behaviour's horizon/prompt."""

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
        action_horizon=behaviour.action_horizon,
        max_token_len=behaviour.max_token_len,
        discrete_state_input=behaviour.discrete_state_input,
        image_keys=IMAGE_KEYS,
    )


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


@dataclass(frozen=True)
class Pi05Checkpoint:
    """A validated checkpoint: where its files are, its model config, behaviour and normalization."""

    path: Path
    layout: str  # "evalkit" | "openpi" | "lerobot"
    config: Pi05Config
    behaviour: Behaviour
    norm: NormSpec
    weights: tuple[Path, ...]
    key_map: dict[str, str] | None  # file key -> our key (None: identity)
    extra_files: tuple[Path, ...] = ()  # norm stats etc., part of the fingerprint

    @property
    def tokenizer_path(self) -> Path | None:
        path = self.path / TOKENIZER_FILENAME if self.path.is_dir() else None
        return path if path is not None and path.is_file() else None

    def fingerprint(self) -> str:
        return fingerprint_files([*self.weights, *self.extra_files])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """All model tensors under openpi PyTorch names (known-unused ones dropped), validated again."""
        tensors = read_safetensors(self.weights, self.key_map)
        expected = expected_shapes(self.config)
        compare_shapes({k: tuple(v.shape) for k, v in tensors.items()}, expected, str(self.path))
        return {k: v for k, v in tensors.items() if k in expected}

    def build_model(self, device: str = "cpu", dtype: str = "float32") -> Pi05Model:
        """The model with these weights on `device`, in float32 or bfloat16 (openpi's fp32 keep-list)."""
        import torch

        from evalkit.models.pi05.model import Pi05Model

        if dtype not in ("float32", "bfloat16"):
            raise EvalkitError(f"unsupported dtype {dtype!r}; choose float32 or bfloat16")
        # Tensors as stored, cast one by one below: there is never a second full copy of the weights.
        state = self.state_dict()
        with torch.device("meta"):
            model = Pi05Model(self.config)
        model.load_state_dict(state, strict=True, assign=True)
        del state
        _assert_materialized(model)
        if dtype == "bfloat16":
            model.to_dtype(torch.bfloat16)
        else:
            model.float()
        return model.to(device).eval()


def _assert_materialized(model: Pi05Model) -> None:
    """After an assign-load on the meta device every tensor must be real (non-persistent buffers would not be)."""
    meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise EvalkitError(f"internal error: model tensors {meta[:3]} were not filled from the checkpoint")


def fingerprint_files(files: Iterable[Path]) -> str:
    """sha256 over (file name, size, bytes) of each file, streamed in 8 MiB blocks; "sha256:<hex>".

    Digests of files over `FINGERPRINT_CACHE_MIN_BYTES` are remembered in `$EVALKIT_CACHE/fingerprints.json` keyed
    by (absolute path, size, mtime), so a multi-GB checkpoint is hashed once, not at every start."""
    digest = hashlib.sha256()
    for path in sorted(Path(f) for f in files):
        digest.update(f"{path.name}\0{path.stat().st_size}\0{file_sha256(path)}\0".encode())
    return "sha256:" + digest.hexdigest()


FINGERPRINT_CACHE_MIN_BYTES = 64 << 20


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = Path(os.environ.get("EVALKIT_CACHE", "~/.cache/evalkit")).expanduser() / "fingerprints.json"
    use_cache = stat.st_size >= FINGERPRINT_CACHE_MIN_BYTES
    cache: dict[str, str] = {}
    if use_cache and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}
        if isinstance(cache.get(key), str):
            return cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    hexdigest = digest.hexdigest()
    if use_cache:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache[key] = hexdigest
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=0))
            os.replace(tmp, cache_file)
        except OSError as exc:  # a read-only cache only costs time
            log.warning("cannot write the fingerprint cache %s: %s", cache_file, exc)
    return hexdigest


def detect_layout(path: Path) -> str:
    if path.is_file():
        refuse_pickle(path)
        if path.suffix == ".npz":
            return "npz"
        if path.suffix == ".safetensors":
            raise EvalkitError(
                f"{path}: pass the checkpoint directory (with its norm stats), not the weights file"
            )
        raise EvalkitError(f"{path} is not a checkpoint directory, safetensors or npz file")
    if not path.is_dir():
        raise EvalkitError(f"checkpoint {path} does not exist")
    config = _read_json(path / "config.json") if (path / "config.json").is_file() else {}
    if config.get("format") == EVALKIT_FORMAT:
        return "evalkit"
    if (path / WEIGHTS_FILE).is_file() or (path / WEIGHTS_INDEX).is_file():
        files = weight_files(path)
        keys = safetensors_shapes(files)
        if config.get("type") == "pi05" or (keys and all(k.startswith("model.") for k in keys)):
            return "lerobot"
        return "openpi"
    if (path / "params").is_dir():
        return "orbax"
    weight_files(path)  # raises with the pickle message if there are only pickles
    raise EvalkitError(f"{path} is not a pi05 checkpoint")  # pragma: no cover


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalkitError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise EvalkitError(f"{path}: expected a JSON object")
    return data


def openpi_assets(path: Path) -> list[str]:
    """Asset ids that have `assets/<asset_id>/norm_stats.json` under `path`."""
    root = path / "assets"
    if not root.is_dir():
        return []
    return sorted(str(p.parent.relative_to(root)) for p in root.rglob("norm_stats.json"))


def openpi_behaviour(path: Path, config_name: str | None) -> Behaviour:
    """The training config of an openpi checkpoint: `config_name`, else the directory name if it is a known config,
    else the LIBERO asset (only pi05_libero uses it). DROID checkpoints are ambiguous (velocity vs joint position).
    openpi's converter records `action_horizon` in config.json: it wins unless the config was named explicitly."""
    explicit = config_name is not None
    if config_name is None and path.name in NAMED_CONFIGS:
        config_name = path.name
    if config_name is not None:
        behaviour = named_config(config_name)
    else:
        assets = openpi_assets(path)
        if assets != ["physical-intelligence/libero"]:
            raise EvalkitError(
                f"cannot tell which pi05 config {path} was trained with (norm stats: {assets or 'none'}); "
                f"pass one of {', '.join(NAMED_CONFIGS)} (evalkit convert --config NAME)"
            )
        behaviour = NAMED_CONFIGS["pi05_libero"]
        log.info("%s: LIBERO norm stats, using config pi05_libero", path)
    info = _read_json(path / "config.json") if (path / "config.json").is_file() else {}
    horizon = info.get("action_horizon")
    if isinstance(horizon, int) and horizon != behaviour.action_horizon:
        if explicit:
            log.warning(
                "%s: config.json says action_horizon %d; %s uses %d",
                path,
                horizon,
                behaviour.name,
                behaviour.action_horizon,
            )
        else:
            log.warning(
                "%s: using config.json's action_horizon %d, not %s's %d",
                path,
                horizon,
                behaviour.name,
                behaviour.action_horizon,
            )
            behaviour = replace(behaviour, action_horizon=horizon)
    return behaviour


def openpi_norm(path: Path, behaviour: Behaviour, norm_stats: Path | None) -> tuple[NormSpec, Path]:
    if norm_stats is None:
        if behaviour.asset_id is None:
            raise EvalkitError(f"{path}: no asset id to find norm stats under; pass --norm-stats FILE")
        norm_stats = path / "assets" / behaviour.asset_id / "norm_stats.json"
        if not norm_stats.is_file():
            found = openpi_assets(path)
            raise EvalkitError(
                f"missing norm stats {norm_stats} (config {behaviour.name}; found: {found or 'none'}). "
                "openpi's converter often drops them: copy <jax ckpt>/assets into the checkpoint or pass --norm-stats"
            )
    return openpi_norm_spec(norm_stats, quantile=True), norm_stats


def lerobot_behaviour(info: dict[str, Any], config_name: str | None) -> Behaviour:
    """lerobot pi05: horizon = `chunk_size`, prompt length = `tokenizer_max_length`, and always the discrete-state
    prompt (lerobot writes it for every dataset). A config name only adds the embodiment / joint-position output."""
    if info.get("type") not in (None, "pi05"):
        raise EvalkitError(f"lerobot checkpoint of type {info.get('type')!r}, not pi05")
    shape = info.get("output_features", {}).get("action", {}).get("shape") or [None]
    embodiment = {7: "libero", 8: "droid"}.get(shape[0]) if isinstance(shape[0], int) else None
    behaviour = Behaviour(
        name="lerobot_pi05",
        action_horizon=int(info.get("chunk_size", 50)),
        discrete_state_input=True,
        max_token_len=int(info.get("tokenizer_max_length", 200)),
        embodiment=embodiment,
    )
    if config_name is not None:
        named = named_config(config_name)
        behaviour = replace(
            behaviour,
            name=f"lerobot_{named.name}",
            embodiment=named.embodiment,
            absolute_joint_actions=named.absolute_joint_actions,
        )
    return behaviour


def load_checkpoint(
    path: str | Path,
    config_name: str | None = None,
    norm_stats: str | Path | None = None,
    model_config_file: str | Path | None = None,
) -> Pi05Checkpoint:
    """Find, read and validate (shapes only; tensors are read by `state_dict()`) a checkpoint directory.

    `config_name` (pi05_libero, pi05_droid, pi05_droid_jointpos) fixes horizon, prompt format and norm-stats asset;
    `model_config_file` gives dims that cannot be inferred from shapes; `norm_stats` overrides the stats file.
    """
    path = Path(path).expanduser()
    layout = detect_layout(path)
    stats_path = Path(norm_stats).expanduser() if norm_stats is not None else None
    if stats_path is not None and not stats_path.is_file():
        raise EvalkitError(f"norm stats file {stats_path} does not exist")
    if layout == "orbax":
        raise EvalkitError(
            f"{path} is an openpi JAX checkpoint (params/); convert it first: "
            f"evalkit convert --src {path} --out DIR --config NAME (needs the optional orbax-checkpoint package)"
        )
    if layout == "npz":
        raise EvalkitError(
            f"{path} is a JAX-named npz; convert it first: evalkit convert --src {path} --out DIR"
        )
    model_config = read_model_config_file(Path(model_config_file)) if model_config_file is not None else None

    files = tuple(weight_files(path))
    shapes = safetensors_shapes(files)
    key_map: dict[str, str] | None = None
    extra: list[Path] = []
    if layout == "evalkit":
        info = _read_json(path / "config.json")
        config = Pi05Config.from_dict(info.get("model", {}))
        behaviour = Behaviour.from_dict(info.get("behaviour", {}))
        if config_name is not None and config_name != behaviour.name:
            raise EvalkitError(f"{path} was converted with config {behaviour.name}, not {config_name}")
        norm, stats_file = evalkit_norm(path, info, stats_path)
        extra.append(stats_file)
    else:
        if layout == "openpi":
            behaviour = resolve_behaviour(path, config_name, model_config)
            norm, stats_file = openpi_norm(path, behaviour, stats_path)
            extra.append(stats_file)
        else:  # lerobot
            info = _read_json(path / "config.json") if (path / "config.json").is_file() else {}
            behaviour = lerobot_behaviour(info, config_name)
            if stats_path is not None:
                norm = openpi_norm_spec(stats_path, quantile=True)
                extra.append(stats_path)
            else:
                norm = lerobot_norm_spec(path)
                extra += [path / "policy_preprocessor.json", path / "policy_postprocessor.json"]
                extra += sorted(path.glob("policy_*processor*.safetensors"))
        key_map = canonical_names(shapes, lerobot=layout == "lerobot")
        shapes = {key_map[k]: v for k, v in shapes.items() if k in key_map}
        if model_config is not None:
            config = apply_behaviour(model_config, behaviour)
        else:
            config = infer_dims(shapes, behaviour)
    compare_shapes(shapes, expected_shapes(config), str(path))
    _check_norm_dims_of(norm, config)
    return Pi05Checkpoint(path, layout, config, behaviour, norm, files, key_map, tuple(extra))


def evalkit_norm(path: Path, info: dict[str, Any], override: Path | None) -> tuple[NormSpec, Path]:
    """Our layout: stats in openpi's norm_stats.json format, modes (and eps) in config.json["normalization"]."""
    from evalkit.models.pi05.normalize import FeatureNorm

    spec = info.get("normalization", {})
    stats_file = override or path / spec.get("stats_file", "")
    if not spec.get("stats_file") and override is None:
        raise EvalkitError(f"{path}/config.json names no norm stats file")
    if not stats_file.is_file():
        raise EvalkitError(
            f"missing norm stats {stats_file}; pass --norm-stats FILE or re-run evalkit convert"
        )
    stats = read_openpi_norm_stats(stats_file)
    state = FeatureNorm(spec.get("state_mode", "quantile"), stats["state"], eps=spec.get("state_eps"))
    actions = FeatureNorm(spec.get("actions_mode", "quantile"), stats["actions"], eps=spec.get("actions_eps"))
    return NormSpec(state, actions, source=str(stats_file)), stats_file


def _check_norm_dims_of(norm: NormSpec, config: Pi05Config) -> None:
    for name, feature in (("state", norm.state), ("actions", norm.actions)):
        if feature.dim is not None and feature.dim > config.action_dim:
            raise EvalkitError(
                f"{norm.source}: {name} stats have {feature.dim} dims, more than the model's {config.action_dim}"
            )


def write_evalkit_checkpoint(
    out: Path,
    state_dict: Mapping[str, torch.Tensor],
    config: Pi05Config,
    behaviour: Behaviour,
    norm: NormSpec,
    dtype: str = "float32",
    tokenizer: Path | None = None,
) -> Path:
    """Write our layout (see the module doc). Tensors are cast to `dtype` (openpi keep-list applies at load time)."""
    import shutil

    import torch
    from safetensors.torch import save_file

    from evalkit.models.pi05.normalize import write_openpi_norm_stats

    if dtype not in ("float32", "bfloat16"):
        raise EvalkitError(f"unsupported dtype {dtype!r}; choose float32 or bfloat16")
    compare_shapes(
        {k: tuple(v.shape) for k, v in state_dict.items()}, expected_shapes(config), "converted weights"
    )
    out.mkdir(parents=True, exist_ok=True)
    torch_dtype = torch.float32 if dtype == "float32" else torch.bfloat16
    tensors = {k: v.detach().to(torch_dtype).contiguous() for k, v in state_dict.items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, out / WEIGHTS_FILE)
    asset_id = behaviour.asset_id or "evalkit"
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
        "behaviour": replace(behaviour, asset_id=asset_id).to_dict(),
        "normalization": normalization,
    }
    (out / "config.json").write_text(json.dumps(info, indent=2))
    if tokenizer is not None and tokenizer.resolve() != (out / TOKENIZER_FILENAME).resolve():
        shutil.copyfile(tokenizer, out / TOKENIZER_FILENAME)
    return out


# ---------------------------------------------------------------------------------------------------------------
# JAX sources and conversion to our layout


def infer_dims_jax(flat: Mapping[str, np.ndarray], behaviour: Behaviour) -> Pi05Config:
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
        action_horizon=behaviour.action_horizon,
        max_token_len=behaviour.max_token_len,
        discrete_state_input=behaviour.discrete_state_input,
    )


def read_model_config_file(path: Path) -> Pi05Config:
    """A model config JSON: our checkpoint's config.json, a bare `Pi05Config.to_dict()`, or a fixture config.json."""
    data = _read_json(Path(path))
    if data.get("format") == EVALKIT_FORMAT:
        return Pi05Config.from_dict(data.get("model", {}))
    if "pi05" in data or "time_posemb" in data:
        return Pi05Config.from_fixture(data)
    return Pi05Config.from_dict(data)


def resolve_behaviour(path: Path, config_name: str | None, model_config: Pi05Config | None) -> Behaviour:
    """openpi sources: a config name (given, or the directory's name), else the LIBERO asset; failing those, a model
    config file fixes horizon and prompt format ("custom"); else an error asking for `--config`."""
    decidable = (
        config_name is not None
        or path.name in NAMED_CONFIGS
        or openpi_assets(path) == ["physical-intelligence/libero"]
    )
    if decidable or model_config is None:
        return openpi_behaviour(path, config_name)
    return Behaviour(
        "custom",
        model_config.action_horizon,
        model_config.discrete_state_input,
        model_config.max_token_len,
    )


def apply_behaviour(config: Pi05Config, behaviour: Behaviour) -> Pi05Config:
    return replace(
        config,
        action_horizon=behaviour.action_horizon,
        discrete_state_input=behaviour.discrete_state_input,
        max_token_len=behaviour.max_token_len,
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


def convert_checkpoint(
    src: str | Path,
    out: str | Path,
    config_name: str | None = None,
    model_config_file: str | Path | None = None,
    norm_stats: str | Path | None = None,
    dtype: str = "float32",
    tokenizer: str | Path | None = None,
) -> Path:
    """Any supported source (openpi JAX `params/` or flat `.npz`, openpi PyTorch, lerobot, ours) → our layout."""
    src, out = Path(src).expanduser(), Path(out).expanduser()
    model_config = read_model_config_file(Path(model_config_file)) if model_config_file is not None else None
    stats_path = Path(norm_stats).expanduser() if norm_stats is not None else None
    layout = detect_layout(src)
    if layout in ("npz", "orbax"):
        flat = read_npz(src) if layout == "npz" else read_orbax_params(src / "params")
        root = src.parent if layout == "npz" else src
        behaviour = resolve_behaviour(root, config_name, model_config)
        inferred = infer_dims_jax(flat, behaviour)
        if model_config is not None:
            check_dims(model_config, inferred, str(src))
        config = apply_behaviour(model_config or inferred, behaviour)
        norm, _ = openpi_norm(root, behaviour, stats_path)
        from evalkit.models.pi05.jax_names import jax_to_state_dict

        state = jax_to_state_dict(flat, config)
        tokenizer_path = Path(tokenizer) if tokenizer else _optional(root / TOKENIZER_FILENAME)
    else:
        ckpt = load_checkpoint(src, config_name, stats_path, model_config_file)
        config, behaviour, norm = ckpt.config, ckpt.behaviour, ckpt.norm
        state = ckpt.state_dict()
        tokenizer_path = Path(tokenizer) if tokenizer else ckpt.tokenizer_path
    behaviour = replace(
        behaviour,
        action_horizon=config.action_horizon,
        discrete_state_input=config.discrete_state_input,
        max_token_len=config.max_token_len,
    )
    _check_norm_dims_of(norm, config)
    return write_evalkit_checkpoint(out, state, config, behaviour, norm, dtype, tokenizer_path)


def _optional(path: Path) -> Path | None:
    return path if path.is_file() else None
