"""diagnostics.neurons: activations against the model's own nn.LSTM/GRU/RNN run by hand on
every prefix, each feature on a hand example, and the search on planted units."""

import math

import pytest
import torch

from charrnn.diagnostics.neurons import (FEATURES, activations, correlations, default_kind, in_brackets, in_quotes,
                                         in_word, line_position, search, speaker_line, top_units, unit_activations,
                                         uppercase)
from charrnn.errors import ConfigError
from charrnn.models.lm import RNNLanguageModel
from charrnn.text.char import CharTokenizer
from charrnn.text.sentencepiece import SentencePieceTokenizer
from conftest import CELLS, TINY_TEXT, tiny_model_config


def _model(cell, vocab_size, layers=2):
    torch.manual_seed(1)
    return RNNLanguageModel(tiny_model_config(cell, vocab_size=vocab_size, layers=layers)).eval()


@pytest.mark.parametrize("cell", CELLS)
def test_activations_equal_the_module_run_on_every_prefix(cell):
    """After token t, layer k's state is what nn.LSTM/GRU/RNN leaves after reading ids[:t+1]."""
    tok = CharTokenizer.train(TINY_TEXT)
    model = _model(cell, tok.vocab_size, layers=3)
    ids = tok.encode("the cat.\n")
    emb = model.embedding(ids).unsqueeze(0)  # (1, T, E)
    for layer in range(3):
        for kind in (("c", "h") if cell == "lstm" else ("h",)):
            got = activations(model, ids, layer, kind)  # (T, H)
            assert got.shape == (ids.numel(), 5)
            with torch.no_grad():
                for t in range(ids.numel()):
                    _, state = model.rnn(emb[:, : t + 1])
                    h, c = state if cell == "lstm" else (state, None)
                    torch.testing.assert_close(got[t], (c if kind == "c" else h)[layer, 0], rtol=1e-5, atol=1e-6)


def test_top_layer_outputs_give_the_models_logits():
    tok = CharTokenizer.train(TINY_TEXT)
    model = _model("gru", tok.vocab_size)
    ids = tok.encode("a dog met a cat")
    h = activations(model, ids, 1, "h")
    with torch.no_grad():
        logits, _ = model(ids.view(1, -1))
        torch.testing.assert_close(model.decoder(h), logits[0], rtol=1e-5, atol=1e-6)


def test_bad_layer_or_kind_is_a_config_error():
    model = _model("gru", 7)
    ids = torch.tensor([1, 2, 3])
    with pytest.raises(ConfigError, match="out of range"):
        activations(model, ids, 2, "h")
    with pytest.raises(ConfigError, match="no cell state"):
        activations(model, ids, 0, "c")
    with pytest.raises(ConfigError):
        activations(model, ids, 0, "x")
    assert default_kind("lstm") == "c" and default_kind("gru") == default_kind("rnn") == "h"


def test_a_subword_gives_its_activation_to_each_of_its_characters():
    tok = SentencePieceTokenizer.train("bpe", TINY_TEXT, 300)
    model = _model("lstm", tok.vocab_size)
    text = "the cat ✨ sat"
    acts = unit_activations(model, tok, text, 1, "c")
    assert acts.values.shape == (len(text), 5) and acts.text == text
    ids = tok.encode(text)
    per_token = activations(model, ids, 1, "c")
    det, pos = tok.detokenizer(), 0
    for t, i in enumerate(ids.tolist()):
        piece = det.feed(i)
        for k in range(len(piece)):
            assert torch.equal(acts.values[pos + k], per_token[t])
        pos += len(piece)
    assert pos == len(text)


# --------------------------------------------------------------------------- features


def test_features_on_hand_examples():
    assert in_quotes('a"bc"d').tolist() == [0, 1, 1, 1, 0, 0]
    assert in_brackets("a(b[c])d)").tolist() == [0, 1, 1, 1, 1, 1, 0, 0, 0]
    assert line_position("ab\ncd\n\ne").tolist() == [1, 2, 0, 1, 2, 0, 0, 1]
    assert in_word("o'er it's 'x").tolist() == [1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1]
    assert uppercase("Ab C:").tolist() == [1, 0, 0, 1, 0]
    text = "KING:\nHo:\n\nFirst Citizen:\nAy.\nNo:\n"
    want = [1] * 5 + [0] + [0] * 3 + [0] + [0] + [1] * 14 + [0] + [0] * 3 + [0] + [0] * 3 + [0]
    assert speaker_line(text).tolist() == want
    for name, fn in FEATURES.items():
        for text in ("", "x", "a\n\n✨ b"):
            assert fn(text).shape == (len(text),) and fn(text).dtype == torch.float64, name


# --------------------------------------------------------------------------- search


def _planted(C=211, H=7):
    g = torch.Generator().manual_seed(0)
    feature = line_position(("a" * 13 + "\n") * 16)[:C]
    values = torch.randn(C, H, generator=g)
    values[:, 3] = feature + 0.5 * torch.randn(C, generator=g)
    values[:, 5] = -feature + 3.0 * torch.randn(C, generator=g)
    return values, feature


def test_the_search_finds_planted_units():
    values, feature = _planted()
    best = top_units(values, feature, k=2)
    assert [u for u, _ in best] == [3, 5]
    assert best[0][1] > 0.9 and best[1][1] < -0.5


def test_correlations_are_pearson():
    values, feature = _planted()
    r = correlations(values, feature)
    ref = torch.corrcoef(torch.cat([values.double().T, feature[None]]))[-1, :-1]
    torch.testing.assert_close(r, ref)
    values[:, 0] = 2.0  # a constant unit correlates with nothing
    assert correlations(values, feature)[0] == 0


def test_a_constant_feature_has_no_units():
    values, _ = _planted()
    assert top_units(values, torch.ones(values.shape[0], dtype=torch.float64)) == []
    assert all(math.isnan(r) for r in correlations(values, torch.zeros(values.shape[0])).tolist())


def test_search_over_named_features():
    tok = CharTokenizer.train(TINY_TEXT)
    acts = unit_activations(_model("lstm", tok.vocab_size), tok, TINY_TEXT[:120], 0, "h")
    found = search(acts, ["line_position", "in_quotes"], k=4)
    assert len(found["line_position"]) == 4 and found["in_quotes"] == []
    with pytest.raises(ConfigError, match="unknown feature"):
        search(acts, ["nope"])
