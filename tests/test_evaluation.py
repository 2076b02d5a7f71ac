import math
import re

import pytest
import torch
from conftest import CELLS, tiny_model_config

from charrnn.tasks.perplexity import EvalResult, evaluate
from charrnn.models.lm import RNNLanguageModel


def _naive_nll(model, ids, skip=None):
    """Total NLL by a plain loop: feed one token at a time, read log_softmax of the next."""
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for i in range(len(ids) - 1):
            logits, state = model(ids[i].view(1, 1), state)
            if skip is not None and int(ids[i + 1]) == skip:
                continue
            total -= torch.log_softmax(logits[0, -1].double(), -1)[ids[i + 1]].item()
            count += 1
    return total, count


@pytest.mark.parametrize("cell", CELLS)
def test_perplexity_and_bpc_equal_the_hand_computation(cell):
    torch.manual_seed(3)
    model = RNNLanguageModel(tiny_model_config(cell)).eval()
    ids = torch.randint(1, 7, (23,))
    res = evaluate(model, ids, window=5)
    nll, count = _naive_nll(model, ids)
    assert res.tokens == count == 22 and res.chars == 22
    assert res.nll == pytest.approx(nll, rel=1e-5)
    assert res.loss == pytest.approx(nll / 22, rel=1e-5)
    assert res.perplexity == pytest.approx(math.exp(nll / 22), rel=1e-5)
    assert res.bpc == pytest.approx(nll / math.log(2) / 22, rel=1e-5)


def test_unknown_targets_are_read_but_not_scored():
    torch.manual_seed(4)
    model = RNNLanguageModel(tiny_model_config("gru")).eval()
    ids = torch.tensor([1, 2, 0, 3, 4, 0, 0, 5, 6, 1])
    res = evaluate(model, ids, unk_id=0)
    nll, count = _naive_nll(model, ids, skip=0)
    assert res.unknown == 3 and res.tokens == count == 6
    assert res.nll == pytest.approx(nll, rel=1e-5)


def test_parallel_streams_with_warmup_match_the_single_stream_score():
    torch.manual_seed(5)
    model = RNNLanguageModel(tiny_model_config("lstm", hidden_size=11)).eval()
    ids = torch.randint(1, 7, (2000,))
    one = evaluate(model, ids)
    many = evaluate(model, ids, streams=7, warmup=40, window=64)
    assert many.tokens == one.tokens == 1999  # every position scored exactly once
    assert many.bpc == pytest.approx(one.bpc, abs=1e-4)


def test_empty_and_single_token_texts_score_nothing():
    model = RNNLanguageModel(tiny_model_config("rnn")).eval()
    for ids in (torch.tensor([], dtype=torch.long), torch.tensor([3])):
        res = evaluate(model, ids)
        assert res.tokens == 0 and math.isnan(res.bpc)


def test_bpc_uses_the_given_character_count():
    r = EvalResult(nll=10 * math.log(2), tokens=5, chars=20, unknown=0)
    assert r.bpc == pytest.approx(0.5)
    assert r.as_dict()["perplexity"] == pytest.approx(math.exp(2 * math.log(2)))


# ----------------------------------------------------------------- bits per character of the input


def _subword_model(tok, seed=6):
    torch.manual_seed(seed)
    return RNNLanguageModel(tiny_model_config("lstm", vocab_size=tok.vocab_size, hidden_size=11)).eval()


def _whole_chars_of_piece(piece: str) -> int:
    """Characters a lone piece holds: a byte piece "<0xNN>" holds one only when ASCII."""
    m = re.fullmatch(r"<0x([0-9A-F]{2})>", piece)
    return (1 if int(m.group(1), 16) < 0x80 else 0) if m else len(piece)


@pytest.mark.parametrize("kind", ["bpe", "unigram", "word"])
@pytest.mark.parametrize("text", ["the cat sat on the mat.\nthe dog 😀 sat on a log", "😀 the cat sat"])
def test_subword_bpc_equals_total_nll_over_characters_by_hand(kind, text, tmp_path):
    from test_tokenizers import subword

    import charrnn
    from charrnn.checkpoint import save_checkpoint
    from charrnn.config import TrainConfig

    tok = subword(kind)
    model = _subword_model(tok)
    save_checkpoint(tmp_path / "ck.safetensors", model, TrainConfig(), tok)
    res = charrnn.load(tmp_path / "ck.safetensors", device="cpu").evaluate(text)
    ids = tok.encode(text)
    nll, count = _naive_nll(model, ids)
    # The characters after the first token: all but those whole inside it.
    first = _whole_chars_of_piece(tok.piece(int(ids[0])))
    if kind == "bpe":  # known answers: "the" is a bpe piece; the emoji starts with byte F0
        assert first == (0 if text.startswith("😀") else 3)
    chars = len(text) - first
    assert res.tokens == count == len(ids) - 1 and res.unknown == 0
    assert res.chars == chars
    assert res.nll == pytest.approx(nll, rel=1e-5)
    assert res.bpc == pytest.approx(nll / math.log(2) / chars, rel=1e-5)
    assert res.perplexity == pytest.approx(math.exp(nll / count), rel=1e-5)


def test_char_bpc_counts_scored_characters_only():
    from charrnn.tasks.perplexity import scored_chars
    from charrnn.text.tokenizers import CharTokenizer

    tok = CharTokenizer.train("abc ")
    text = "abc 😀 cab x"  # two unknown characters, read but not scored
    ids = tok.encode(text)
    assert scored_chars(tok, text, ids) == len(text) - 1 - 2
    torch.manual_seed(1)
    model = RNNLanguageModel(tiny_model_config(vocab_size=tok.vocab_size)).eval()
    res = evaluate(model, ids, unk_id=tok.unk_id, chars=scored_chars(tok, text, ids))
    assert res.chars == res.tokens == len(text) - 3 and res.unknown == 2
