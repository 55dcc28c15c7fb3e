"""Prompt construction as openpi's PaligemmaTokenizer (golden strings) and real ids from a tiny SentencePiece model."""

import io
import json
import logging

import numpy as np
import pytest
import sentencepiece

from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.tokenizer import (
    PaligemmaTokenizer,
    clean_prompt,
    discretize_state,
    encode_calls,
    find_tokenizer,
)
from tests.fixtures import pi05_fixture

CASES = json.loads((pi05_fixture() / "prompt_cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["prompt"][:20] for c in CASES])
def test_prompt_cases_match_openpi_exactly(case):
    state = np.asarray(case["state_float32"], dtype=np.float32)
    assert discretize_state(state).tolist() == case["discretized_state"]
    calls = encode_calls(case["prompt"], state, discrete_state_input=True)
    assert calls == [(c["text"], c["add_bos"]) for c in case["sp_calls_pi05"]]
    assert calls[0][0] == case["full_prompt_pi05"]
    no_state = encode_calls(case["prompt"], None, discrete_state_input=False)
    assert no_state == [(c["text"], c["add_bos"]) for c in case["sp_calls_discrete_state_input_false"]]


def test_discretize_edges_without_clipping():
    x = np.array([-1.5, -1.0, -1e-9, 0.0, 1 - 2 / 256 - 1e-6, 1 - 2 / 256, 1.0, 7.0])
    assert discretize_state(x).tolist() == [-1, 0, 127, 128, 254, 255, 255, 255]
    assert clean_prompt("  a_b\nc  ") == "a b c"


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    """A ~100-piece SentencePiece model with PaliGemma's special ids, trained here on a small text."""
    text = [
        "pick up the black bowl and place it on the plate",
        "open the top drawer and put the bowl inside",
        "put the cream cheese in the bowl",
        "turn on the stove",
        "Task: put the mug on the plate, State: 0 1 2 3 4 5 6 7 8 9;",
        "Action: ",
    ] * 10
    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_writer=buffer,
        vocab_size=100,
        model_type="bpe",
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        user_defined_symbols=["\n"],
        split_digits=True,
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
    )
    path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    path.write_bytes(buffer.getvalue())
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    assert 50 <= sp.get_piece_size() <= 100
    return path, sp


def test_state_prompt_token_ids(sp_model):
    path, sp = sp_model
    tok = PaligemmaTokenizer(path, max_len=64, discrete_state_input=True)
    state = np.array([-1.0, 0.0, 0.5, 2.0], np.float32)
    out = tok.tokenize("put_the mug\non the plate ", state)
    expected = sp.encode("Task: put the mug on the plate, State: 0 128 192 255;\nAction: ", add_bos=True)
    assert expected[0] == 2 and sp.piece_to_id("\n") in expected
    n = len(expected)
    assert out.tokens.dtype == np.int64 and out.tokens.shape == (64,) and out.mask.shape == (64,)
    assert out.tokens[:n].tolist() == expected
    assert out.mask[:n].all() and not out.mask[n:].any()
    assert (out.tokens[n:] == 0).all() and not out.truncated
    with pytest.raises(EvalkitError, match="no state was given"):
        tok.tokenize("put the mug", None)


def test_pi0_format_token_ids(sp_model):
    path, sp = sp_model
    tok = PaligemmaTokenizer(path, max_len=48, discrete_state_input=False)
    out = tok.tokenize(" turn_on the stove\n", np.full(8, 5.0))  # the state is ignored
    expected = sp.encode("turn on the stove", add_bos=True) + sp.encode("\n")
    assert expected[-1] == sp.piece_to_id("\n") and expected[0] == 2
    assert out.tokens[: len(expected)].tolist() == expected and int(out.mask.sum()) == len(expected)


def test_truncation_warns_and_keeps_max_len(sp_model, caplog):
    path, sp = sp_model
    tok = PaligemmaTokenizer(path, max_len=8, discrete_state_input=False)
    with caplog.at_level(logging.WARNING):
        out = tok.tokenize("pick up the black bowl and place it on the plate")
    full = sp.encode("pick up the black bowl and place it on the plate", add_bos=True) + sp.encode("\n")
    assert len(full) > 8 and out.truncated and out.mask.all()
    assert out.tokens.tolist() == full[:8]
    assert "truncating" in caplog.text


def test_find_tokenizer_order(tmp_path, monkeypatch, sp_model):
    monkeypatch.setenv("OPENPI_DATA_HOME", str(tmp_path / "openpi"))
    with pytest.raises(EvalkitError, match="no PaliGemma tokenizer found"):
        find_tokenizer(tmp_path)
    cached = tmp_path / "openpi" / "big_vision" / "paligemma_tokenizer.model"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(sp_model[0].read_bytes())
    assert find_tokenizer(tmp_path) == cached
    (tmp_path / "tokenizer.model").write_bytes(sp_model[0].read_bytes())
    assert find_tokenizer(tmp_path) == tmp_path / "tokenizer.model"
    assert find_tokenizer(tmp_path, cached) == cached
    with pytest.raises(EvalkitError, match="does not exist"):
        find_tokenizer(tmp_path, tmp_path / "nope.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(EvalkitError, match="cannot load SentencePiece"):
        PaligemmaTokenizer(tmp_path / "bad.model", 8, False)


def test_tokenizer_must_match_the_model_vocabulary_and_special_ids(sp_model, tmp_path):
    path, sp = sp_model
    tok = PaligemmaTokenizer(path, max_len=8, discrete_state_input=False)
    tok.check_matches(sp.get_piece_size())
    with pytest.raises(EvalkitError, match=r"pieces, not PaliGemma's 257152: wrong tokenizer"):
        tok.check_matches(257_152)
    with pytest.raises(EvalkitError, match=r"pieces, not the model's 512"):
        tok.check_matches(512)
    buffer = (
        io.BytesIO()
    )  # same text, other special ids (SentencePiece's defaults: unk 0, bos 1, eos 2, no pad)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["put the mug on the plate", "turn on the stove"] * 10),
        model_writer=buffer,
        vocab_size=60,
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
    )
    (tmp_path / "other.model").write_bytes(buffer.getvalue())
    other = PaligemmaTokenizer(tmp_path / "other.model", max_len=8, discrete_state_input=False)
    with pytest.raises(EvalkitError, match=r"special ids \{'pad': -1, 'eos': 2, 'bos': 1\}, not PaliGemma's"):
        other.check_matches(other.vocab_size)
