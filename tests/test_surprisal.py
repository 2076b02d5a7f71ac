"""diagnostics.surprisal: per-token bits against a hand cross-entropy of the model's logits
and against perplexity's evaluate (one stream), for a char and a subword tokenizer; the map
from tokens to characters; unknown characters left unscored."""

import math

import pytest
import torch
import torch.nn.functional as F

from charrnn.diagnostics.surprisal import surprisal, token_nll, token_spans
from charrnn.models.lm import RNNLanguageModel
from charrnn.tasks.perplexity import evaluate, scored_chars
from charrnn.text.char import CharTokenizer
from charrnn.text.sentencepiece import SentencePieceTokenizer
from conftest import TINY_TEXT, tiny_model_config

TEXTS = ["the cat sat on the mat.\n", "a dog ✨ met 한국 on a log\n\n", "ab"]


@pytest.fixture(scope="module")
def tokenizers():
    return {"char": CharTokenizer.train(TINY_TEXT), "bpe": SentencePieceTokenizer.train("bpe", TINY_TEXT, 300)}


def _model(tok, cell="lstm"):
    torch.manual_seed(0)
    return RNNLanguageModel(tiny_model_config(cell, vocab_size=tok.vocab_size)).eval()


@pytest.mark.parametrize("kind", ["char", "bpe"])
@pytest.mark.parametrize("text", TEXTS)
def test_bits_are_the_cross_entropy_of_each_position_and_sum_to_evaluate(tokenizers, kind, text):
    tok = tokenizers[kind]
    model = _model(tok)
    s = surprisal(model, tok, text)
    ids = tok.encode(text)
    with torch.no_grad():
        logits, _ = model(ids[:-1].view(1, -1))
    by_hand = F.cross_entropy(logits[0], ids[1:], reduction="none").double() / math.log(2)
    unk = ids[1:] == tok.unk_id if tok.unk_id is not None else torch.zeros(len(ids) - 1, dtype=torch.bool)
    assert math.isnan(s.bits[0])
    torch.testing.assert_close(s.bits[1:][~unk], by_hand[~unk], rtol=1e-5, atol=1e-6)
    ref = evaluate(model, ids, unk_id=tok.unk_id, chars=scored_chars(tok, text, ids), streams=1)
    assert s.tokens == ref.tokens and s.chars == ref.chars
    assert s.nll == pytest.approx(ref.nll, rel=1e-6)
    assert s.bpc == pytest.approx(ref.bpc, rel=1e-6)
    per_char = s.char_bits()
    assert per_char.numel() == len(text) and s.text == text
    assert float(per_char.nansum()) == pytest.approx(float(s.bits.nansum()), rel=1e-9)


def test_unknown_characters_are_read_but_not_scored(tokenizers):
    tok = tokenizers["char"]
    text = "the Zat\u00e9 sat"  # Z and é never occur in TINY_TEXT
    s = surprisal(_model(tok), tok, text)
    assert s.unknown.tolist() == [c in "Z\u00e9" for c in text]
    assert torch.isnan(s.bits[s.unknown]).all() and not torch.isnan(s.bits[1:][~s.unknown[1:]]).any()
    bits = s.char_bits()
    assert [math.isnan(b) for b in bits.tolist()] == [i == 0 or c in "Z\u00e9" for i, c in enumerate(text)]
    assert s.text == text  # the characters themselves, not U+FFFD
    ids = tok.encode(text)
    assert s.chars == scored_chars(tok, text, ids) == len(text) - 3


def test_the_state_is_carried_across_windows(tokenizers):
    tok = tokenizers["char"]
    model, ids = _model(tok, "gru"), tok.encode(TINY_TEXT[:23])
    whole, top_whole, _ = token_nll(model, ids, top_k=2)
    windows, top_windows, _ = token_nll(model, ids, top_k=2, window=3)
    torch.testing.assert_close(whole, windows, equal_nan=True)
    assert torch.equal(top_whole, top_windows)


def test_top_guesses_are_the_likeliest_tokens(tokenizers):
    tok = tokenizers["char"]
    model, text = _model(tok), "the mat"
    s = surprisal(model, tok, text, top_k=3)
    with torch.no_grad():
        probs = model(tok.encode(text)[:-1].view(1, -1))[0][0].softmax(-1)
    assert s.top_ids[0].tolist() == [-1, -1, -1]
    assert s.top_ids[1:, 0].tolist() == probs.argmax(-1).tolist()
    assert (s.top_probs[1:, :-1] >= s.top_probs[1:, 1:]).all()
    torch.testing.assert_close(s.top_probs[1:, 0], probs.max(-1).values)


def test_spans_of_a_char_tokenizer_are_one_character_each(tokenizers):
    tok = tokenizers["char"]
    spans = token_spans(tok, "cat\n", tok.encode("cat\n"))
    assert spans.starts.tolist() == [0, 1, 2, 3] and spans.ends.tolist() == [1, 2, 3, 4]
    assert spans.group.tolist() == [0, 1, 2, 3] and spans.char_token().tolist() == [0, 1, 2, 3]


def test_byte_tokens_of_one_character_form_a_group(tokenizers):
    """'✨' (3 UTF-8 bytes, unseen in training) is spelled as byte tokens: the first two
    complete nothing, the third completes the character; the group shares its bits."""
    tok = tokenizers["bpe"]
    text = "a ✨ cat"
    ids = tok.encode(text)
    spans = token_spans(tok, text, ids)
    assert "".join(text[a:b] for a, b in zip(spans.starts.tolist(), spans.ends.tolist())) == text
    empty = (spans.ends == spans.starts).nonzero().view(-1).tolist()
    assert len(empty) == 2 and all(spans.group[t] == empty[-1] + 1 for t in empty)
    completer = empty[-1] + 1
    assert text[spans.starts[completer] : spans.ends[completer]] == "✨"
    s = surprisal(_model(tok), tok, text)
    star = text.index("✨")
    assert float(s.char_bits()[star]) == pytest.approx(float(s.bits[empty[0] : completer + 1].sum()))


def test_a_subword_spreads_its_bits_over_its_characters(tokenizers):
    tok = tokenizers["bpe"]
    text = "the cat sat on the mat"
    s = surprisal(_model(tok), tok, text)
    bits = s.char_bits()
    for t in range(1, s.ids.numel()):
        a, b = int(s.spans.starts[t]), int(s.spans.ends[t])
        torch.testing.assert_close(bits[a:b], torch.full((b - a,), float(s.bits[t]) / (b - a), dtype=torch.float64))
    first = int(s.spans.ends[0])
    assert torch.isnan(bits[:first]).all() and first >= 1


@pytest.mark.parametrize("text", ["", "t"])
def test_nothing_to_score(tokenizers, text):
    tok = tokenizers["char"]
    s = surprisal(_model(tok), tok, text)
    assert s.tokens == 0 and s.chars == 0 and math.isnan(s.bpc) and s.nll == 0.0
    assert s.char_bits().numel() == len(text)
