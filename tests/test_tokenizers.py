import functools
import os

import pytest
import torch
from conftest import TINY_TEXT
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.errors import ConfigError, TokenizerError
from charrnn.text.tokenizers import (
    SUBWORD_KINDS,
    UNK_ID,
    UNK_TEXT,
    CharTokenizer,
    SentencePieceTokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_state,
    train_tokenizer,
)

TRICKY = [
    "a",
    "hello world",
    "emoji 😀🎉 and 👩‍👩‍👧 family",
    "한국어 텍스트입니다",
    "mixed: ñandú, Ελληνικά, русский, 中文, עברית",
    "new\nlines\r\nand\ttabs\n\n",
    "control \x00\x01\x1b chars",
]


@pytest.mark.parametrize("text", TRICKY)
def test_encode_is_one_id_per_code_point_and_round_trips(text):
    tok = CharTokenizer.train(text)
    ids = tok.encode(text)
    assert ids.dtype == torch.int64 and ids.shape == (len(text),)
    # Reference: the vocabulary is the sorted set of characters, ids start after UNK_ID.
    ref = sorted(set(text))
    assert ids.tolist() == [ref.index(c) + 1 for c in list(text)]
    assert tok.decode(ids) == text
    assert tok.vocab_size == len(ref) + 1


def test_empty_text_encodes_to_nothing_and_cannot_train():
    tok = CharTokenizer.train("abc")
    assert tok.encode("").tolist() == []
    assert tok.decode([]) == ""
    with pytest.raises(TokenizerError):
        CharTokenizer.train("")


def test_unknown_characters_map_to_the_reserved_id():
    tok = CharTokenizer.train("abc")
    ids = tok.encode("axbz😀c")
    assert ids.tolist() == [1, UNK_ID, 2, UNK_ID, UNK_ID, 3]
    assert tok.unk_id == UNK_ID
    assert tok.decode(ids) == f"a{UNK_TEXT}b{UNK_TEXT}{UNK_TEXT}c"
    # Code points above and below the whole vocabulary.
    assert tok.encode("\x00\U0010ffff").tolist() == [UNK_ID, UNK_ID]


def test_start_id_is_newline_when_known():
    assert CharTokenizer.train("ab\n").token_text(CharTokenizer.train("ab\n").start_id) == "\n"
    tok = CharTokenizer.train("xy")
    assert tok.token_text(tok.start_id) in "xy"


def test_state_round_trip_is_exact():
    tok = CharTokenizer.train("The 한국 😀 text\n")
    meta, tensors = tok.state()
    again = tokenizer_from_state(meta, tensors)
    assert again.chars == tok.chars
    s = "text 한 😀 unseen∆"
    assert again.encode(s).tolist() == tok.encode(s).tolist()


def test_same_text_same_ids():
    a, b = CharTokenizer.train("some text"), CharTokenizer.train("text some")
    assert a.encode("some").tolist() == b.encode("some").tolist()


def test_foreign_state_is_an_error():
    with pytest.raises(TokenizerError):
        tokenizer_from_state({"kind": "mystery"}, {})
    with pytest.raises(TokenizerError):
        tokenizer_from_state({"kind": "char"}, {})


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=60), st.text(max_size=60))
def test_round_trip_any_unicode(train, other):
    tok = CharTokenizer.train(train)
    assert tok.decode(tok.encode(train)) == train
    # Unseen characters come back as U+FFFD, one per character; seen ones unchanged.
    decoded = tok.decode(tok.encode(other))
    assert len(decoded) == len(other)
    assert all(d == c if c in train else d == UNK_TEXT for c, d in zip(other, decoded))


# ----------------------------------------------------------------- SentencePiece kinds

# Round-trip cases: all of TRICKY plus what is special to SentencePiece as used here.
SUBWORD_TRICKY = TRICKY + [
    "",
    "\n",
    "▁",  # SentencePiece's own space symbol, as a literal character
    "a▁b ▁ ▁▁c",
    "  leading, trailing and  double  spaces  ",
    "the cat sat on the mat. the dog sat on the log.",  # in-vocabulary text
    "\r\n\r\n\t\t\v\f\x1c\x1d\x1e\x85\u2028\u2029",  # every Python line break but \n is line content
    "\x00 nul \x7f del \u200b zero width \ufeff bom \ufffd replacement",
    "unseen: ∮ E⋅da = Q, ẞ ǅ ﬁ 𝔘𝔫𝔦 \U0010ffff \uffff",
    "x" * 5000,  # a long run with no space: hard chunk cuts
    ("word " * 1500).strip(),  # a long line, cut before spaces
]


@functools.cache
def subword(kind: str, vocab_size: int = 300) -> SentencePieceTokenizer:
    """One tokenizer per kind, trained on the tiny text (shared: training is deterministic)."""
    return SentencePieceTokenizer.train(kind, TINY_TEXT, vocab_size)


@pytest.mark.parametrize("kind", SUBWORD_KINDS)
@pytest.mark.parametrize("text", SUBWORD_TRICKY, ids=range(len(SUBWORD_TRICKY)))
def test_subword_round_trip_is_exact(kind, text):
    tok = subword(kind)
    ids = tok.encode(text)
    assert ids.dtype == torch.int64 and ids.dim() == 1
    assert tok.decode(ids) == text
    assert all(0 < i < tok.vocab_size for i in ids.tolist())  # never unknown (id 0)
    # The incremental detokenizer gives the same text, token by token.
    det = tok.detokenizer()
    assert "".join(det.feed(i) for i in ids.tolist()) + det.flush() == text


@pytest.mark.parametrize("kind", SUBWORD_KINDS)
@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=80) | st.text(alphabet=st.sampled_from(list(" \n\t\r▁ab😀한\x00.")), max_size=40))
def test_subword_round_trip_any_unicode(kind, text):
    tok = subword(kind)
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("kind", SUBWORD_KINDS)
def test_lines_are_encoded_alone_and_joined_by_the_newline_token(kind):
    tok = subword(kind)
    a, b = "the cat sat.", "a dog met on a log"
    assert tok.start_id == tok.newline_id == 3
    assert tok.encode(f"{a}\n{b}").tolist() == tok.encode(a).tolist() + [tok.newline_id] + tok.encode(b).tolist()
    assert tok.encode_lines([a, b, ""]) == [tok.encode(a).tolist(), tok.encode(b).tolist(), []]
    # A literal U+2581 is its own token, not a space.
    assert tok.encode("▁").tolist() == [tok.literal_id] and tok.decode([tok.literal_id]) == "▁"


def test_subword_pieces_are_learned_from_the_text():
    tok = subword("bpe")
    ids = tok.encode("the cat sat on the mat.").tolist()
    assert len(ids) < 12  # far fewer than the 23 characters
    assert [tok.piece(i) for i in ids][:2] == ["the", "▁cat"]
    assert tok.piece(tok.encode("😀").tolist()[0]) == "<0xF0>"  # unseen: UTF-8 bytes


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_cutting_long_lines_before_spaces_gives_the_tokens_of_the_whole_line(kind):
    """Reference: SentencePiece's own encoding of the line in one piece."""
    tok = subword(kind)
    short = SentencePieceTokenizer(kind, tok.proto, chunk=7)
    line = "the cat sat on the mat. a dog met a cat on a log by the mat."
    assert short.encode(line).tolist() == tok._sp.encode(line, out_type=int) == tok.encode(line).tolist()
    assert short.decode(short.encode("x" * 30 + " y")) == "x" * 30 + " y"


def test_word_kind_spells_unknown_words_as_bytes_with_one_space_token():
    tok = subword("word")
    ids = tok.encode("the cat zebra").tolist()
    pieces = [tok.piece(i) for i in ids]
    assert pieces == ["the", "▁cat", "<space>", "<0x7A>", "<0x65>", "<0x62>", "<0x72>", "<0x61>"]
    assert tok.decode(ids) == "the cat zebra"
    assert tok.space_id == 2 and tok.space_id not in subword("bpe").encode("  a  b  ").tolist()


@pytest.mark.parametrize("kind", SUBWORD_KINDS)
def test_training_twice_gives_the_same_model_and_ids(kind):
    text = TINY_TEXT + "the zebra and the quokka.\n" * 5
    a = SentencePieceTokenizer.train(kind, text, 320)
    b = SentencePieceTokenizer.train(kind, text, 320)
    assert a.proto == b.proto
    probe = "the quokka sat on the zebra 😀\n"
    assert a.encode(probe).tolist() == b.encode(probe).tolist()


@pytest.mark.parametrize("kind", SUBWORD_KINDS)
def test_subword_state_round_trip_is_exact(kind, tmp_path):
    tok = subword(kind)
    meta, tensors = tok.state()
    assert tensors["model"].dtype == torch.uint8 and meta["kind"] == kind
    again = tokenizer_from_state(meta, tensors)
    probe = "the cat 한국 ▁ 😀\nsat\t"
    assert again.proto == tok.proto and again.encode(probe).tolist() == tok.encode(probe).tolist()
    # Through a tokenizer file too.
    save_tokenizer(tmp_path / "tok.safetensors", tok)
    loaded = load_tokenizer(tmp_path / "tok.safetensors")
    assert loaded.kind == kind and loaded.encode(probe).tolist() == tok.encode(probe).tolist()
    assert os.listdir(tmp_path) == ["tok.safetensors"]  # atomic write leaves no temporary file


@pytest.mark.parametrize("kind", ["char", *SUBWORD_KINDS])
def test_checkpoint_round_trip_preserves_the_tokenizer(kind, tmp_path):
    from conftest import tiny_model_config

    from charrnn.checkpoint import load_checkpoint, save_checkpoint
    from charrnn.config import TrainConfig
    from charrnn.models.lm import RNNLanguageModel

    tok = CharTokenizer.train(TINY_TEXT) if kind == "char" else subword(kind)
    model = RNNLanguageModel(tiny_model_config(vocab_size=tok.vocab_size))
    save_checkpoint(tmp_path / "ck.safetensors", model, TrainConfig(), tok)
    loaded = load_checkpoint(tmp_path / "ck.safetensors").tokenizer
    assert loaded.kind == kind and loaded.vocab_size == tok.vocab_size
    probe = "the cat sat on a log by the mat. 😀 새 ▁"
    assert loaded.encode(probe).tolist() == tok.encode(probe).tolist()
    assert loaded.state()[0] == tok.state()[0]
    # A tokenizer is read from a checkpoint (or its run directory) without the weights.
    (tmp_path / "run").mkdir()
    os.replace(tmp_path / "ck.safetensors", tmp_path / "run" / "best.safetensors")
    assert load_tokenizer(tmp_path / "run").encode(probe).tolist() == tok.encode(probe).tolist()


def test_huge_lines_are_not_dropped_from_training():
    # One 30,000-character line, far over SentencePiece's 4192-byte sentence limit: its
    # words must still be learned (the line is cut into sentences, not skipped).
    text = "zebra quokka " * 2300 + "\n" + TINY_TEXT
    tok = SentencePieceTokenizer.train("bpe", text, 320)
    assert {"▁zebra", "▁quokka"} <= {tok.piece(i) for i in range(tok.vocab_size)}


def test_training_prints_nothing_and_leaves_no_files(tmp_path, capfd):
    before = set(os.listdir(tmp_path))  # the working directory of this test
    for kind in SUBWORD_KINDS:
        SentencePieceTokenizer.train(kind, TINY_TEXT + "ok\n", 290)
    assert set(os.listdir(tmp_path)) == before
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("kind", SUBWORD_KINDS)
def test_vocabulary_too_small_is_an_error_too_large_is_capped(kind):
    with pytest.raises(ConfigError, match="too small.*needs"):
        SentencePieceTokenizer.train(kind, TINY_TEXT, 100)
    if kind != "word":  # the minimum depends on the text's characters: say it
        with pytest.raises(ConfigError, match=r"at least 27\d"):
            SentencePieceTokenizer.train(kind, TINY_TEXT, 265)
    big = SentencePieceTokenizer.train(kind, TINY_TEXT, 5000)
    assert big.vocab_size < 5000 and "supports only" in big.warnings[0]
    assert subword(kind).warnings == [] or subword(kind).vocab_size < 300


def test_lone_surrogates_are_read_as_replacement_characters():
    # Not Unicode text (Python makes them of undecodable bytes in command-line arguments).
    tok = subword("bpe")
    assert tok.decode(tok.encode("a\udcffb")) == "a\ufffdb"
    assert SentencePieceTokenizer.train("bpe", TINY_TEXT + "\ud800", 300).vocab_size > 0


def test_train_tokenizer_checks_its_arguments():
    with pytest.raises(TokenizerError):
        train_tokenizer("bpe", "")
    with pytest.raises(TokenizerError):
        train_tokenizer("bpe", "\n\n\n")
    with pytest.raises(TokenizerError):
        train_tokenizer("morpheme", TINY_TEXT)
    with pytest.raises(ConfigError):
        train_tokenizer("char", TINY_TEXT, vocab_size=100)
    assert train_tokenizer("char", "abc").vocab_size == 4


def test_damaged_or_foreign_stored_models_are_errors(tmp_path):
    meta, _tensors = subword("bpe").state()
    for junk in ([1, 2, 3], []):
        with pytest.raises(TokenizerError, match="damaged"):
            tokenizer_from_state(meta, {"model": torch.tensor(junk, dtype=torch.uint8)})
    with pytest.raises(TokenizerError, match="no model"):
        tokenizer_from_state(meta, {})
    (tmp_path / "x.txt").write_text("not a tokenizer")
    with pytest.raises(TokenizerError, match="not a charrnn tokenizer"):
        load_tokenizer(tmp_path / "x.txt")
    with pytest.raises(TokenizerError, match="no such"):
        load_tokenizer(tmp_path / "missing")


# ----------------------------------------------------------------- detokenizers


@pytest.mark.parametrize("kind", SUBWORD_KINDS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_detokenizer_on_any_id_sequence_matches_decode_and_never_fails(kind, data):
    """Random ids put byte tokens in any order: the text is valid, with U+FFFD for bad bytes."""
    tok = subword(kind)
    byte_ids = list(range(4, 260))
    ids = data.draw(st.lists(st.sampled_from(byte_ids) | st.integers(1, tok.vocab_size - 1), max_size=30))
    det = tok.detokenizer()
    pieces = [det.feed(i) for i in ids]
    text = "".join(pieces) + det.flush()
    text.encode("utf-8")  # valid UTF-8 (no lone surrogates)
    assert text == tok.decode(ids)
    # Beam search copies a detokenizer halfway: the copy carries on identically.
    half = tok.detokenizer()
    head = "".join(half.feed(i) for i in ids[: len(ids) // 2])
    copy = half.clone()
    assert head + "".join(copy.feed(i) for i in ids[len(ids) // 2 :]) + copy.flush() == text


def test_bytes_in_an_invalid_order_become_replacement_characters():
    tok = subword("bpe")
    b = lambda x: 4 + x  # the id of byte x
    the = tok.encode("the").tolist()
    # Reference: Python's own UTF-8 decoding, errors="replace", of the same bytes.
    cases = [
        ([b(0x98)], b"\x98"),  # a lone continuation byte
        ([b(0xF0), b(0x9F)] + the, b"\xf0\x9f" + b"the"),  # an unfinished emoji, then a piece
        ([b(0xE2), b(0xE2), b(0x96), b(0x81)], b"\xe2\xe2\x96\x81"),  # a lead byte twice; E2 96 81 is a space
        ([b(0xF0), b(0x9F), b(0x98), b(0x80)], b"\xf0\x9f\x98\x80"),  # a whole emoji
        ([b(0xFF), b(0xC0), b(0x80)], b"\xff\xc0\x80"),  # bytes that never occur in UTF-8
        ([b(0xED), b(0xA0), b(0x80)], b"\xed\xa0\x80"),  # an encoded surrogate
    ]
    for ids, raw in cases:
        want = raw.decode("utf-8", "replace").replace("▁", " ")
        assert tok.decode(ids) == want
        det = tok.detokenizer()
        assert "".join(det.feed(i) for i in ids) + det.flush() == want
    # An unfinished character followed by a literal U+2581 or the end of the text.
    assert tok.decode([b(0xE2), tok.literal_id, b(0xC3)]) == "\ufffd▁\ufffd"
    det = tok.detokenizer()
    assert det.feed(b(0xF0)) == "" and det.pending and det.flush() == "\ufffd" and not det.pending
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


def test_char_detokenizer_is_the_character_lookup():
    tok = CharTokenizer.train("ab\n")
    det = tok.detokenizer()
    assert det.feed == tok.token_text  # the lookup itself: no extra work per token for the char kind
    assert [det.feed(i) for i in tok.encode("ba\nz").tolist()] == ["b", "a", "\n", UNK_TEXT]
    assert tok.banned_ids == [UNK_ID] and not det.pending
    assert tok.encode_lines(["ab", "", "zb"]) == [[2, 3], [], [UNK_ID, 3]]


# ----------------------------------------------------------------- Unicode normalization

# Hangul syllables and Vietnamese letters precomposed (NFC) and decomposed (NFD), by hand:
# 한 = ᄒ ᅡ ᆫ (U+1112 U+1161 U+11AB); ệ = e + dot below (U+0323) + circumflex (U+0302).
HAN_NFC, HAN_NFD = "\ud55c", "\u1112\u1161\u11ab"
E_NFC, E_NFD = "\u1ec7", "e\u0323\u0302"


def test_nfd_tokens_are_the_decomposed_code_points_and_both_spellings_agree():
    tok = CharTokenizer.train(HAN_NFC + E_NFC + "x", normalize="NFD")
    # The vocabulary is the decomposed letters' parts, never the syllable itself.
    assert sorted(tok.chars) == sorted(set(HAN_NFD + E_NFD + "x"))
    ids = tok.encode(HAN_NFC + E_NFC).tolist()
    assert [tok.token_text(i) for i in ids] == list(HAN_NFD + E_NFD)
    assert tok.encode(HAN_NFD + E_NFD).tolist() == ids  # equivalent spellings, the same ids
    assert tok.encode_lines([HAN_NFC, "x" + E_NFD, ""]) == [tok.encode(HAN_NFC).tolist(),
                                                            tok.encode("x" + E_NFC).tolist(), []]
    assert tok.decode(ids) == HAN_NFC + E_NFC  # decoded text is composed again
    plain = CharTokenizer.train(HAN_NFC + E_NFC + "x")
    assert plain.encode(HAN_NFD).tolist() == [UNK_ID] * 3  # without normalization: unknown parts


@pytest.mark.parametrize("form", ["NFC", "NFKC", "NFKD"])
def test_other_normal_forms_match_unicodedata(form):
    import unicodedata

    text = "ﬁ ① " + HAN_NFD + E_NFD + " Å"
    tok = CharTokenizer.train(text, normalize=form)
    assert "".join(tok.token_text(i) for i in tok.encode(text).tolist()) == unicodedata.normalize(form, text)


def test_normal_form_is_stored_and_checked():
    tok = CharTokenizer.train(HAN_NFC, normalize="NFD")
    meta, tensors = tok.state()
    assert meta["normalize"] == "NFD"
    again = tokenizer_from_state(meta, tensors)
    assert again.normalize == "NFD" and again.encode(HAN_NFC).tolist() == tok.encode(HAN_NFC).tolist()
    assert "normalize" not in CharTokenizer.train("ab").state()[0]  # as before normalization existed
    assert tokenizer_from_state({"kind": "char", "chars": "ab"}, {}).normalize is None
    with pytest.raises(TokenizerError, match="normal form"):
        tokenizer_from_state({"kind": "char", "chars": "ab", "normalize": "NFX"}, {})
    with pytest.raises(ConfigError, match="char"):
        train_tokenizer("bpe", TINY_TEXT, 40, normalize="NFD")
    assert train_tokenizer("char", HAN_NFC, normalize="NFD").chars == "".join(sorted(HAN_NFD))


def test_exported_vocabulary_names_the_normal_form():
    """The JSON `charrnn export` writes tells a program without charrnn to normalise first."""
    import unicodedata

    from charrnn.export.vocab import tokenizer_json

    tok = CharTokenizer.train(HAN_NFC + E_NFC, normalize="NFD")
    data, _ = tokenizer_json(tok, None)
    assert data["normalize"] == "NFD" and "NFD" in data["encode"] and "NFC" in data["decode"]
    # Following the JSON by hand gives charrnn's ids.
    ids = [data["tokens"].index(ch) for ch in unicodedata.normalize(data["normalize"], HAN_NFC)]
    assert ids == tok.encode(HAN_NFC).tolist()
    assert "normalize" not in tokenizer_json(CharTokenizer.train("ab"), None)[0]
