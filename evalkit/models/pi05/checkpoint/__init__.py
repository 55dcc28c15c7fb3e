"""π₀.₅ checkpoints: layouts, reading, validation, conversion and fingerprints.

Modules:
- `configs`: training configs (`TrainingConfig`, `NAMED_CONFIGS`) and norm-stats checks against them.
- `layout`: the `Layout` interface and `detect_layout`; one module per layout, each with detect, key map, training
  config and norm-stat location: `evalkit_layout`, `openpi_pytorch`, `lerobot`, `openpi_jax`.
- `io`: safetensors (copied into owned memory, never left mapped), json and npz reading; pickles refused.
- `shapes`: expected shapes, strict comparison, dims inferred from tensors.
- `load`: `load_checkpoint` → `Pi05Checkpoint` (`build_model`, `state_dict`, `fingerprint`).
- `convert`: `convert_checkpoint`, `write_evalkit_checkpoint`.
- `fingerprint`: sha256 fingerprints of files, cached under the cache root (`evalkit.core.cache`).
"""

from evalkit.models.pi05.checkpoint.configs import NAMED_CONFIGS, TrainingConfig, named_config
from evalkit.models.pi05.checkpoint.convert import convert_checkpoint, write_evalkit_checkpoint
from evalkit.models.pi05.checkpoint.fingerprint import fingerprint_files
from evalkit.models.pi05.checkpoint.io import WEIGHTS_FILE, WEIGHTS_INDEX
from evalkit.models.pi05.checkpoint.load import Pi05Checkpoint, load_checkpoint
from evalkit.models.pi05.checkpoint.shapes import EVALKIT_FORMAT, expected_shapes, infer_dims

__all__ = [
    "EVALKIT_FORMAT",
    "NAMED_CONFIGS",
    "WEIGHTS_FILE",
    "WEIGHTS_INDEX",
    "TrainingConfig",
    "Pi05Checkpoint",
    "convert_checkpoint",
    "expected_shapes",
    "fingerprint_files",
    "infer_dims",
    "load_checkpoint",
    "named_config",
    "write_evalkit_checkpoint",
]
