import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.errors import TokenizerError
from charrnn.tokenizers import UNK_ID, UNK_TEXT, CharTokenizer, tokenizer_from_state

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
