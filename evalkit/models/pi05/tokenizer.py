"""PaliGemma prompt tokenization as openpi's `PaligemmaTokenizer` does it (`openpi: models/tokenizer.py`).

Two formats:
- pi0.5 discrete-state (`pi05_droid`, lerobot pi05): `encode(f"Task: {cleaned}, State: {ints};\\nAction: ", bos)`,
  where `ints` is the normalized, unpadded state digitized into 256 bins without clipping.
- pi0 format (no state; `pi05_libero`): `encode(cleaned, bos) + encode("\\n")`.
Cleaning: `strip()`, `_` -> space, newline -> space, no lower-casing. Tokens are padded with id 0 (mask False) to
`max_len`; longer prompts are truncated with a warning.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.config import PALIGEMMA_VOCAB_SIZE

log = logging.getLogger(__name__)

TOKENIZER_FILENAME = "tokenizer.model"
PAD_ID = 0
SPECIAL_IDS = {"pad": 0, "eos": 1, "bos": 2}  # PaliGemma's SentencePiece model
STATE_BINS = np.linspace(-1, 1, 256 + 1)[:-1]  # float64, as openpi


def openpi_tokenizer_cache() -> Path:
    """Where openpi caches `gs://big_vision/paligemma_tokenizer.model` (`$OPENPI_DATA_HOME`, default ~/.cache/openpi)."""
    home = Path(os.environ.get("OPENPI_DATA_HOME", Path.home() / ".cache" / "openpi")).expanduser()
    return home / "big_vision" / "paligemma_tokenizer.model"


def clean_prompt(prompt: str) -> str:
    return prompt.strip().replace("_", " ").replace("\n", " ")


def discretize_state(state: np.ndarray) -> np.ndarray:
    """256 bins over [-1, 1], no clipping: x < -1 -> -1, x >= 1 - 2/256 -> 255 (openpi's `np.digitize(...) - 1`)."""
    return np.digitize(np.asarray(state), bins=STATE_BINS) - 1


def state_prompt(cleaned: str, discretized: np.ndarray) -> str:
    ints = " ".join(str(int(v)) for v in np.asarray(discretized).reshape(-1))
    return f"Task: {cleaned}, State: {ints};\nAction: "


def encode_calls(prompt: str, state: np.ndarray | None, discrete_state_input: bool) -> list[tuple[str, bool]]:
    """The (text, add_bos) pairs passed to SentencePiece `encode`, in order."""
    cleaned = clean_prompt(prompt)
    if discrete_state_input:
        if state is None:
            raise EvalkitError("this checkpoint puts the robot state into the prompt, but no state was given")
        return [(state_prompt(cleaned, discretize_state(state)), True)]
    return [(cleaned, True), ("\n", False)]


def find_tokenizer(checkpoint_dir: Path | None = None, explicit: str | Path | None = None) -> Path:
    """The SentencePiece model to use: `--tokenizer`, else `<checkpoint>/tokenizer.model`, else openpi's cache."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise EvalkitError(f"tokenizer file {path} does not exist")
        return path
    candidates = []
    if checkpoint_dir is not None:
        candidates.append(Path(checkpoint_dir) / TOKENIZER_FILENAME)
    candidates.append(openpi_tokenizer_cache())
    for path in candidates:
        if path.is_file():
            return path
    raise EvalkitError(
        "no PaliGemma tokenizer found (looked at "
        + ", ".join(str(p) for p in candidates)
        + "); copy paligemma_tokenizer.model (gs://big_vision/paligemma_tokenizer.model) there or pass --tokenizer"
    )


@dataclass(frozen=True)
class TokenizedPrompt:
    tokens: np.ndarray  # (max_len,) int64, padded with 0
    mask: np.ndarray  # (max_len,) bool
    truncated: bool


class PaligemmaTokenizer:
    """A SentencePiece model plus openpi's prompt format, padding and truncation."""

    def __init__(self, model_path: str | Path, max_len: int, discrete_state_input: bool):
        import sentencepiece

        self.model_path = Path(model_path)
        try:
            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(self.model_path))
        except (OSError, RuntimeError) as exc:
            raise EvalkitError(f"cannot load SentencePiece model {self.model_path}: {exc}") from exc
        self.max_len = max_len
        self.discrete_state_input = discrete_state_input

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    def check_matches(self, model_vocab_size: int) -> None:
        """The tokenizer must be the one the model was trained with: its piece count equals the model's embedding
        rows exactly (a smaller tokenizer would run, but map text to the wrong ids) and PaliGemma's special ids hold.
        For the released model that is PaliGemma's 257,152 pieces; the tiny test checkpoints are built with their
        own small tokenizer and a vocabulary of the same size, so the same rule covers them."""
        if self.vocab_size != model_vocab_size:
            expected = "PaliGemma's" if model_vocab_size == PALIGEMMA_VOCAB_SIZE else "the model's"
            raise EvalkitError(
                f"tokenizer {self.model_path} has {self.vocab_size} pieces, not {expected} {model_vocab_size}: "
                "wrong tokenizer for this checkpoint"
            )
        ids = {"pad": self._sp.pad_id(), "eos": self._sp.eos_id(), "bos": self._sp.bos_id()}
        if ids != SPECIAL_IDS:
            raise EvalkitError(
                f"tokenizer {self.model_path} has special ids {ids}, not PaliGemma's {SPECIAL_IDS}"
            )

    def encode_ids(self, prompt: str, state: np.ndarray | None = None) -> list[int]:
        ids: list[int] = []
        for text, add_bos in encode_calls(prompt, state, self.discrete_state_input):
            ids += self._sp.encode(text, add_bos=add_bos)
        return ids

    def tokenize(self, prompt: str, state: np.ndarray | None = None) -> TokenizedPrompt:
        ids = self.encode_ids(prompt, state)
        truncated = len(ids) > self.max_len
        if truncated:
            log.warning(
                "prompt is %d tokens, longer than max_token_len %d; truncating: %r",
                len(ids),
                self.max_len,
                prompt,
            )
            ids = ids[: self.max_len]
        tokens = np.full(self.max_len, PAD_ID, dtype=np.int64)
        mask = np.zeros(self.max_len, dtype=bool)
        tokens[: len(ids)] = ids
        mask[: len(ids)] = True
        return TokenizedPrompt(tokens, mask, truncated)


def train_tiny_sentencepiece(out_path: Path, sentences: list[str], vocab_size: int = 400) -> Path:
    """Train a small SentencePiece model with PaliGemma's special ids (pad 0, eos 1, bos 2, unk 3), byte fallback,
    split digits and no normalization, like the real tokenizer. For tiny test checkpoints only."""
    import io

    import sentencepiece

    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="bpe",
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        user_defined_symbols=["\n"],
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(buffer.getvalue())
    return out_path
