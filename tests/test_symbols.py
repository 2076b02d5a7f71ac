"""The seq2seq tokenizers: space-separated symbols (kind "space") and source/target pairs."""

import pytest
import torch

from charrnn.errors import ConfigError, TokenizerError
from charrnn.text.tokenizers import (
    UNK_ID,
    UNK_TEXT,
    CharTokenizer,
    PairTokenizer,
    SentencePieceTokenizer,
    SymbolTokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_state,
    train_tokenizer,
)

# Phones of several code points each ("t͡ʃ" is t, U+0361, ʃ; "a̠" is a, U+0320).
PHONES = "t͡ʃ a̠ k\na b ə ʒ u ɾ ə\nd͡ʒ i i t̪ ɛ\n"
SOURCES = "абажура\nабаджиите\nчак\n"


def _symbol_ids(tok: SymbolTokenizer, text: str) -> list[int]:
    # Independent reference: the sorted distinct symbols of the training text, ids from 1.
    vocab = sorted(set(PHONES.split()))
    return [vocab.index(s) + 1 if s in vocab else UNK_ID for s in text.split()]


def test_vocabulary_is_the_sorted_symbols_plus_unknown():
    tok = SymbolTokenizer.train(PHONES)
    assert tok.kind == "space"
    assert tok.vocabulary == sorted(set(PHONES.split()))
    assert tok.vocab_size == len(set(PHONES.split())) + 1
    assert "t͡ʃ" in tok.vocabulary and "t" not in tok.vocabulary  # one symbol, not three characters
    assert (tok.unk_id, tok.banned_ids, tok.start_id) == (UNK_ID, [UNK_ID], 1)
    assert tok.piece(UNK_ID) == "<unk>" and tok.piece(1) == tok.vocabulary[0]


@pytest.mark.parametrize("text", ["t͡ʃ a̠ k", "  a   b\tə\n ʒ  ", "d͡ʒ", ""])
def test_encode_decode_round_trip(text):
    tok = SymbolTokenizer.train(PHONES)
    ids = tok.encode(text)
    assert ids.dtype == torch.int64 and ids.dim() == 1
    assert ids.tolist() == _symbol_ids(tok, text)
    assert tok.decode(ids) == " ".join(text.split())
    assert tok.symbols(text) == text.split()
    assert tok.encode_lines([text, "k a̠"]) == [_symbol_ids(tok, text), _symbol_ids(tok, "k a̠")]


def test_unknown_symbols_map_to_the_reserved_id():
    tok = SymbolTokenizer.train(PHONES)
    ids = tok.encode("a x t͡ʃ tʃ")  # "tʃ" without the tie bar is another symbol
    assert ids.tolist()[1] == UNK_ID and ids.tolist()[3] == UNK_ID
    assert ids.tolist()[0] != UNK_ID and ids.tolist()[2] != UNK_ID
    assert tok.decode(ids) == f"a {UNK_TEXT} t͡ʃ {UNK_TEXT}"
    assert tok.token_text(tok.vocab_size) == UNK_TEXT  # past the vocabulary


def test_training_needs_symbols():
    for text in ["", " \n\t "]:
        with pytest.raises(TokenizerError):
            SymbolTokenizer.train(text)
    with pytest.raises(TokenizerError):
        SymbolTokenizer(["a", "a"])
    with pytest.raises(TokenizerError):
        SymbolTokenizer(["a b"])


def test_detokenizer_matches_decode_also_after_clone():
    tok = SymbolTokenizer.train(PHONES)
    ids = tok.encode("t͡ʃ a̠ k ə ʒ").tolist() + [UNK_ID]
    det = tok.detokenizer()
    pieces = [det.feed(i) for i in ids[:2]]
    branch = det.clone()
    rest = [det.feed(i) for i in ids[2:]]
    assert pieces[0] == "t͡ʃ" and pieces[1] == " a̠"  # no leading space on the first symbol
    assert "".join(pieces + rest) + det.flush() == tok.decode(ids) == f"t͡ʃ a̠ k ə ʒ {UNK_TEXT}"
    # The clone continues from where it was taken, independently of the original.
    other = [branch.feed(i) for i in ids[4:]]
    assert "".join(pieces + other) == tok.decode(ids[:2] + ids[4:])
    # A fresh detokenizer starts without a space again, and so does a clone taken at the start.
    fresh = tok.detokenizer()
    at_start = fresh.clone()
    assert fresh.feed(ids[2]) == "k"
    assert at_start.feed(ids[2]) == "k" and at_start.feed(ids[3]) == " ə"


def test_state_and_file_round_trip(tmp_path):
    tok = SymbolTokenizer.train(PHONES)
    meta, tensors = tok.state()
    assert meta == {"kind": "space", "symbols": sorted(set(PHONES.split()))} and tensors == {}
    again = tokenizer_from_state(meta, tensors)
    assert isinstance(again, SymbolTokenizer) and again.vocabulary == tok.vocabulary
    save_tokenizer(tmp_path / "t.tok", tok)
    loaded = load_tokenizer(tmp_path / "t.tok")
    assert loaded.kind == "space" and loaded.encode(PHONES).tolist() == tok.encode(PHONES).tolist()
    with pytest.raises(TokenizerError):
        tokenizer_from_state({"kind": "space", "symbols": "abc"}, {})


def test_train_tokenizer_knows_the_space_kind():
    tok = train_tokenizer("space", PHONES)
    assert isinstance(tok, SymbolTokenizer) and tok.vocabulary == sorted(set(PHONES.split()))
    with pytest.raises(ConfigError):
        train_tokenizer("space", PHONES, vocab_size=10)
    with pytest.raises(TokenizerError, match="space"):
        train_tokenizer("phones", PHONES)


def _same_tokenizer(a, b, text):
    assert (a.kind, a.vocab_size) == (b.kind, b.vocab_size)
    assert a.encode(text).tolist() == b.encode(text).tolist()


def test_pair_state_round_trip_unshared(tmp_path):
    pair = PairTokenizer(CharTokenizer.train(SOURCES), SymbolTokenizer.train(PHONES))
    assert not pair.shared and pair.kind == "pair"
    # As a Tokenizer it is its target side.
    assert pair.vocab_size == pair.target.vocab_size and pair.start_id == 1
    assert pair.decode(pair.encode("t͡ʃ a̠")) == "t͡ʃ a̠"
    det = pair.detokenizer()
    assert "".join([det.feed(i) for i in pair.encode("a b").tolist()]) == "a b"
    meta, tensors = pair.state()
    assert meta == {"kind": "pair", "shared": False, "source": pair.source.state()[0],
                    "target": pair.target.state()[0]}
    again = tokenizer_from_state(meta, tensors)
    assert isinstance(again, PairTokenizer) and not again.shared
    _same_tokenizer(again.source, pair.source, SOURCES)
    _same_tokenizer(again.target, pair.target, PHONES)
    save_tokenizer(tmp_path / "pair.tok", pair)
    loaded = load_tokenizer(tmp_path / "pair.tok")
    _same_tokenizer(loaded.source, pair.source, SOURCES)
    _same_tokenizer(loaded.target, pair.target, PHONES)


def test_pair_state_round_trip_shared_with_a_subword_side(tmp_path):
    text = (SOURCES + PHONES) * 20
    bpe = SentencePieceTokenizer.train("bpe", text, 300)
    pair = PairTokenizer(bpe, bpe)
    assert pair.shared
    meta, tensors = pair.state()
    assert meta["shared"] is True and "target" not in meta
    assert set(tensors) == {"source.model"}
    save_tokenizer(tmp_path / "pair.tok", pair)
    loaded = load_tokenizer(tmp_path / "pair.tok")
    assert isinstance(loaded, PairTokenizer) and loaded.shared and loaded.source is loaded.target
    _same_tokenizer(loaded.source, bpe, text)
    # Unshared with a subword source: each side finds its own tensors by prefix.
    mixed = PairTokenizer(bpe, SymbolTokenizer.train(PHONES))
    meta, tensors = mixed.state()
    assert set(tensors) == {"source.model"}
    again = tokenizer_from_state(meta, tensors)
    _same_tokenizer(again.source, bpe, text)
    _same_tokenizer(again.target, mixed.target, PHONES)


@pytest.mark.parametrize("damage", [
    lambda m: m.pop("shared"),
    lambda m: m.update(shared="no"),
    lambda m: m.pop("source"),
    lambda m: m.pop("target"),
    lambda m: m.update(source=["char"]),
    lambda m: m.update(target={"kind": "space"}),  # no symbol list
    lambda m: m.update(source={"kind": "pair", "shared": True, "source": {"kind": "char", "chars": "ab"}}),
])
def test_damaged_pair_meta_is_a_tokenizer_error(damage):
    meta, tensors = PairTokenizer(CharTokenizer.train(SOURCES), SymbolTokenizer.train(PHONES)).state()
    damage(meta)
    with pytest.raises(TokenizerError):
        tokenizer_from_state(meta, tensors)


def test_pair_with_a_subword_side_missing_its_tensor_is_a_tokenizer_error():
    bpe = SentencePieceTokenizer.train("bpe", (SOURCES + PHONES) * 20, 300)
    meta, _ = PairTokenizer(bpe, SymbolTokenizer.train(PHONES)).state()
    with pytest.raises(TokenizerError, match="source"):
        tokenizer_from_state(meta, {})
    with pytest.raises(TokenizerError):
        PairTokenizer(PairTokenizer(bpe, bpe), bpe)
