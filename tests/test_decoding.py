"""Beam search, batched sampling and the generation controls of issue 3."""

import dataclasses
import itertools

import pytest
import torch
from conftest import CELLS, tiny_model_config

from charrnn.config import SampleConfig
from charrnn.errors import ConfigError
from charrnn.decoding import (
    NgramBlocker,
    StepRunner,
    StopMatcher,
    beam_search,
    filter_logits,
    sample,
)
from charrnn.decoding.text import kept_tokens
from charrnn.models.lm import RNNLanguageModel
from charrnn.text.tokenizers import SUBWORD_KINDS

LETTERS = "abcdefg"


def text_of(t: int) -> str:
    return LETTERS[t]


def _model(cell="lstm", seed=0, vocab=7, sharpen=3.0):
    torch.manual_seed(seed)
    m = RNNLanguageModel(tiny_model_config(cell, vocab_size=vocab, hidden_size=13)).eval()
    with torch.no_grad():
        m.decoder.weight.mul_(sharpen)
    return m


def _score(model, prime, tokens):
    """log p(tokens | prime) by one forward pass of the model."""
    seq = torch.tensor(list(prime) + list(tokens)).view(1, -1)
    with torch.no_grad():
        logits, _ = model(seq[:, :-1])
    lp = torch.log_softmax(logits[0].double(), -1)
    pos = range(len(prime) - 1, seq.shape[1] - 1)
    return sum(float(lp[p, seq[0, p + 1]]) for p in pos)


@pytest.mark.parametrize("cell", CELLS)
def test_step_runner_equals_the_model_forward(cell):
    model = _model(cell, 1)
    ids = torch.randint(0, 7, (3, 9))
    with torch.no_grad():
        ref, _ = model(ids)
        _, state = model(ids[:1, :4])
    runner = StepRunner(model)
    runner.start(None, 3)
    for t in range(9):
        assert torch.allclose(runner.step(ids[:, t]), ref[:, t], atol=1e-5)
    # Starting from a model state (the prime read by the model) continues it exactly.
    runner.start(state, 2)
    for t in range(4, 9):
        assert torch.allclose(runner.step(ids[:1, t].expand(2)), ref[:1, t].expand(2, -1), atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_packed_products_equal_the_plain_step(cell):
    """With pack=True (sampling many rows, beam search) the step uses MKL's packed product
    from PACK_MIN_ROWS rows on: the same logits and states as the plain step and the
    model's own forward pass, to float32 rounding; with fewer rows nothing is packed."""
    from charrnn.decoding.step import PACK_MIN_ROWS, _mkl_packing

    model = _model(cell, 3)
    ids = torch.randint(0, 7, (8, 6))
    with torch.no_grad():
        ref, _ = model(ids)
    plain, packed = StepRunner(model), StepRunner(model, pack=True)
    plain.start(None, 8)
    packed.start(None, 8)
    assert (packed.packed is not None) == _mkl_packing()
    for t in range(6):
        a, b = plain.step(ids[:, t]).clone(), packed.step(ids[:, t])
        assert torch.allclose(a, b, atol=1e-5) and torch.allclose(b, ref[:, t], atol=1e-5)
        assert torch.allclose(plain.hc, packed.hc, atol=1e-5)
    index = torch.tensor([3, 3, 0, 7, 1, 1, 1, 5])  # a beam reorder keeps the rows' states
    before = packed.hc.clone()
    packed.reorder(index)
    assert torch.equal(packed.hc, before[:, :, index])
    packed.start(None, PACK_MIN_ROWS - 1)
    assert packed.packed is None


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("vocab, length", [(3, 4), (4, 3)])
def test_wide_beam_finds_the_exhaustive_argmax(cell, vocab, length):
    model = _model(cell, 2, vocab=vocab, sharpen=1.5)
    prime = [1, 0]
    every = list(itertools.product(range(vocab), repeat=length))
    scores = {seq: _score(model, prime, seq) for seq in every}
    ranked = sorted(every, key=scores.get, reverse=True)
    cfg = SampleConfig(length=length, beam=len(every), num_return=5, length_penalty=0.0)
    res = beam_search(model, torch.tensor(prime), cfg, token_text=text_of, start_id=0)
    assert [tuple(g.tokens) for g in res] == ranked[:5]
    for g in res:
        assert g.logprob == pytest.approx(scores[tuple(g.tokens)], abs=1e-6)
        assert g.score == pytest.approx(g.logprob, abs=1e-9)
        assert g.text == "".join(LETTERS[t] for t in g.tokens) and g.finish_reason == "length"


@pytest.mark.parametrize("cell", CELLS)
def test_beam_one_is_greedy(cell):
    for seed in range(3):
        model = _model(cell, 10 + seed)
        greedy = sample(model, torch.tensor([3, 1]), SampleConfig(length=25, greedy=True), token_text=text_of, start_id=0)
        beam = beam_search(model, torch.tensor([3, 1]), SampleConfig(length=25, beam=1), token_text=text_of, start_id=0)
        assert beam[0].tokens == greedy[0].tokens
        assert beam[0].logprob == pytest.approx(greedy[0].logprob, abs=1e-6)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("penalty, banned", [(0.0, ()), (1.0, (2,)), (0.6, (0, 5))])
def test_fixed_length_beam_equals_the_general_loop(cell, penalty, banned):
    """Without stop strings or a character limit, beam search keeps its hypotheses on the
    device and traces them back at the end; a character limit no output reaches sends the
    same search through the general, step-by-step loop: the same hypotheses, exactly."""
    model = _model(cell, 20, sharpen=1.0)
    for beam in (3, 8):
        cfg = SampleConfig(length=15, beam=beam, num_return=beam, length_penalty=penalty)
        fast = beam_search(model, torch.tensor([3, 1]), cfg, token_text=text_of, start_id=0, banned=banned)
        general = beam_search(model, torch.tensor([3, 1]), dataclasses.replace(cfg, max_chars=10**6),
                              token_text=text_of, start_id=0, banned=banned)
        assert len(fast) == beam
        assert [(g.tokens, g.text, g.logprob, g.score, g.finish_reason) for g in fast] == [
            (g.tokens, g.text, g.logprob, g.score, g.finish_reason) for g in general]
        assert not any(t in banned for g in fast for t in g.tokens)
    # Out of time: every live hypothesis ends where it is, as in the general loop.
    timed = beam_search(model, torch.tensor([1]), SampleConfig(length=10_000_000, beam=4, max_time=0.2),
                        token_text=text_of, start_id=0)
    assert timed[0].finish_reason == "time" and 0 < len(timed[0].tokens) < 10_000_000


@pytest.mark.parametrize("cell", CELLS)
def test_reported_logprobs_equal_a_forward_pass(cell):
    model = _model(cell, 5)
    prime = [2, 4, 1]
    for cfg in (SampleConfig(length=30, temperature=1.3, seed=3, num_samples=3),
                SampleConfig(length=30, top_p=0.8, repetition_penalty=1.5, seed=4),
                SampleConfig(length=30, stop=("ab",), temperature=2.0, seed=5, num_samples=4)):
        for g in sample(model, torch.tensor(prime), cfg, token_text=text_of, start_id=0):
            assert g.logprob == pytest.approx(_score(model, prime, g.tokens), abs=1e-5)
    res = beam_search(model, torch.tensor(prime), SampleConfig(length=20, beam=4, num_return=4), token_text=text_of, start_id=0)
    for g in res:
        assert g.logprob == pytest.approx(_score(model, prime, g.tokens), abs=1e-5)


def test_a_batch_of_n_equals_n_single_samples_with_seed_plus_i():
    model = _model("lstm", 6)
    prime = torch.tensor([1, 2])
    batch = sample(model, prime, SampleConfig(length=40, temperature=1.5, seed=100, num_samples=5), token_text=text_of, start_id=0)
    singles = [sample(model, prime, SampleConfig(length=40, temperature=1.5, seed=100 + i), token_text=text_of, start_id=0)[0]
               for i in range(5)]
    assert [g.tokens for g in batch] == [g.tokens for g in singles]
    assert len({tuple(g.tokens) for g in batch}) > 1  # the samples differ from each other


def test_stop_strings_end_the_output_before_their_first_occurrence():
    model = _model("rnn", 7, sharpen=1.0)
    stops = ("ab", "gg")
    for seed in range(20):
        cfg = SampleConfig(length=200, temperature=2.0, seed=seed, stop=stops, num_samples=2)
        for row, g in enumerate(sample(model, torch.tensor([0]), cfg, token_text=text_of, start_id=0)):
            assert not any(s in g.text for s in stops)
            if g.finish_reason == "stop":
                # Ends exactly where the unconstrained sample first shows a stop string.
                free = sample(model, torch.tensor([0]), SampleConfig(length=200, temperature=2.0, seed=seed + row),
                              token_text=text_of, start_id=0)[0].text
                first = min(i for i in (free.find(s) for s in stops) if i >= 0)
                assert g.text == free[:first]
    # A hand-made stream: the text is cut at the first match, across piece boundaries.
    m = StopMatcher(["<end>", "xyz"])
    pieces = [m.feed(p) for p in ["ab", "c<", "en", "d>more"]]
    assert "".join(pieces) == "abc" and m.stopped and m.text == "abc"
    m = StopMatcher(["xyz"])
    assert m.feed("axy") == "a" and m.feed("q") == "xyq" and m.flush() == ""


def test_stop_string_with_beam_search():
    model = _model("lstm", 8, sharpen=1.0)
    res = beam_search(model, torch.tensor([1]), SampleConfig(length=40, beam=5, num_return=5, stop=("c",)),
                      token_text=text_of, start_id=0)
    for g in res:
        assert "c" not in g.text and g.text == "".join(LETTERS[t] for t in g.tokens)


def test_repetition_penalty_changes_the_distribution():
    model = _model("gru", 9, vocab=50, sharpen=6.0)

    def distinct(penalty):
        cfg = SampleConfig(length=40, temperature=1.0, seed=1, num_samples=30, repetition_penalty=penalty)
        res = sample(model, torch.tensor([0]), cfg, token_text=lambda t: chr(0x4E00 + t), start_id=0)
        return sum(len(set(g.tokens)) for g in res) / len(res)

    assert distinct(3.0) > distinct(1.0) + 2  # measured: 28.2 against 25.0
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    from charrnn.decoding import penalize_repeats

    out = penalize_repeats(logits, torch.tensor([[True, True, False]]), 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5]]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_leaves_no_repeated_ngram(n):
    model = _model("lstm", 11, sharpen=4.0)
    prime = [0, 1]
    length = 5 if n == 1 else 30  # with 7 tokens, unigrams run out after 5 new ones
    for strategy in (SampleConfig(length=length, greedy=True, no_repeat_ngram=n),
                     SampleConfig(length=length, seed=2, no_repeat_ngram=n, num_samples=3),
                     SampleConfig(length=length, beam=3, num_return=3, no_repeat_ngram=n)):
        run = beam_search if strategy.beam else sample
        for g in run(model, torch.tensor(prime), strategy, token_text=text_of, start_id=0):
            seq = prime + g.tokens
            grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
            assert len(grams) == len(set(grams)), (n, seq)
            assert g.finish_reason in ("length", "blocked")
    # Without the ban the sharpened greedy text does repeat itself.
    free = sample(model, torch.tensor(prime), SampleConfig(length=30, greedy=True), token_text=text_of, start_id=0)[0]
    seq = prime + free.tokens
    assert len({tuple(seq[i : i + 3]) for i in range(len(seq) - 2)}) < len(seq) - 2


def test_ngram_blocker_bans_completions():
    b = NgramBlocker(2, [[1, 2, 1]])
    logits = torch.zeros(1, 4)
    b.ban(logits)  # last token 1 was followed by 2 before
    assert torch.isinf(logits[0, 2]) and not torch.isinf(logits[0, [0, 1, 3]]).any()


def test_min_p_keeps_tokens_near_the_top():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = (filter_logits(probs.log(), min_p=0.3) > float("-inf"))[0].tolist()
    assert kept == [True, True, True, False]  # 0.15 >= 0.3 * 0.5, 0.05 is not


def test_max_time_stops_early():
    model = _model("lstm", 12)
    g = sample(model, torch.tensor([1]), SampleConfig(length=10_000_000, max_time=0.2, seed=1), token_text=text_of, start_id=0)[0]
    assert g.finish_reason == "time" and 0 < len(g.tokens) < 10_000_000


@pytest.mark.parametrize(
    "kw", [{"beam": -1}, {"repetition_penalty": -1.0}, {"repetition_penalty": 0.0}, {"num_samples": 0},
           {"no_repeat_ngram": -2}, {"length_penalty": -0.5}, {"min_p": 1.5}, {"max_time": 0},
           {"beam": 2, "num_return": 3}, {"num_return": 2}, {"beam": 2, "num_samples": 2}, {"stop": ("",)}]
)
def test_bad_decoding_values_are_config_errors(kw):
    with pytest.raises(ConfigError):
        SampleConfig(**kw)


# ----------------------------------------------------------------- subword tokens (issue 4)



def _subword(kind="bpe"):
    from test_tokenizers import subword

    return subword(kind)


def _sub_model(tok, seed=0, sharpen=2.0, cell="lstm"):
    torch.manual_seed(seed)
    m = RNNLanguageModel(tiny_model_config(cell, vocab_size=tok.vocab_size, hidden_size=13)).eval()
    with torch.no_grad():
        m.decoder.weight.mul_(sharpen)
    return m


def _kw(tok):
    return {"detokenizer": tok.detokenizer, "start_id": tok.start_id, "banned": tok.banned_ids}


def _streamed(model, prime, cfg, tok):
    """Generations and, per row, the pieces streamed through on_text."""
    pieces: dict[int, list[str]] = {}
    res = sample(model, prime, cfg, on_text=lambda r, p: pieces.setdefault(r, []).append(p), **_kw(tok))
    return res, ["".join(pieces.get(r, [])) for r in range(len(res))]


@pytest.mark.parametrize("kind", SUBWORD_KINDS)
def test_subword_samples_are_text_of_their_tokens(kind):
    tok = _subword(kind)
    model = _sub_model(tok, 1)
    prime = tok.encode("the cat ")
    res, streamed = _streamed(model, prime, SampleConfig(length=60, temperature=1.5, seed=3, num_samples=4), tok)
    for g, s in zip(res, streamed):
        g.text.encode("utf-8")  # valid UTF-8
        assert g.text == s == tok.decode(g.tokens) and len(g.tokens) == 60
        assert not set(g.tokens) & set(tok.banned_ids)
        assert g.logprob == pytest.approx(_score(model, prime.tolist(), g.tokens), abs=1e-5)
    beams = beam_search(model, prime, SampleConfig(length=12, beam=4, num_return=4), **_kw(tok))
    for g in beams:
        assert g.text == tok.decode(g.tokens)
        assert g.logprob == pytest.approx(_score(model, prime.tolist(), g.tokens), abs=1e-5)


def _byte_model(tok, seed=2):
    """A model that only ever emits byte tokens, mostly of multi-byte characters and
    often in an order that is not UTF-8."""
    m = _sub_model(tok, seed, sharpen=0.0)
    with torch.no_grad():
        m.decoder.bias.fill_(-30.0)
        m.decoder.bias[4 + 0x80 : 4 + 0x100] = torch.linspace(0.0, 2.0, 128)
        m.decoder.bias[4 + 0x61] = 1.0  # and some "a"
    return m


@pytest.mark.parametrize("kind", SUBWORD_KINDS)
def test_bytes_in_an_invalid_order_give_valid_text_not_a_crash(kind):
    tok = _subword(kind)
    model = _byte_model(tok)
    res, streamed = _streamed(model, tok.encode("a"), SampleConfig(length=200, temperature=1.0, seed=4, num_samples=3), tok)
    for g, s in zip(res, streamed):
        assert all(4 <= t < 260 for t in g.tokens)
        assert "\ufffd" in g.text and g.text == s == tok.decode(g.tokens)
        g.text.encode("utf-8")
    res = sample(model, tok.encode("a"), SampleConfig(length=100, seed=5, stop=("\ufffd\ufffd", "a")), **_kw(tok))
    assert "a" not in res[0].text and "\ufffd\ufffd" not in res[0].text
    for g in beam_search(model, tok.encode("a"), SampleConfig(length=9, beam=3, num_return=3, stop=("a",)), **_kw(tok)):
        g.text.encode("utf-8")
        assert "a" not in g.text and g.text.startswith(tok.decode(g.tokens))


def _boundaries(tok, tokens):
    """Character offsets in the text where one token ends and the next begins."""
    det, at, out = tok.detokenizer(), 0, []
    for t in tokens:
        at += len(det.feed(t))
        if not det.pending:
            out.append(at)
    return out


@pytest.mark.parametrize("kind", SUBWORD_KINDS)
def test_stop_strings_match_across_subword_token_boundaries(kind):
    tok = _subword(kind)
    model = _sub_model(tok, 3, sharpen=1.5)
    prime = tok.encode("the ")
    checked = 0
    for seed in range(6):
        free = sample(model, prime, SampleConfig(length=40, temperature=1.2, seed=seed), **_kw(tok))[0]
        cuts = [b for b in _boundaries(tok, free.tokens) if 2 <= b <= len(free.text) - 2]
        if not cuts:
            continue
        b = cuts[len(cuts) // 2]
        stop = free.text[b - 2 : b + 2]  # two characters on each side of a token boundary
        g = sample(model, prime, SampleConfig(length=40, temperature=1.2, seed=seed, stop=(stop,)), **_kw(tok))[0]
        assert g.finish_reason == "stop" and g.text == free.text[: free.text.index(stop)]
        assert g.text.startswith(tok.decode(g.tokens))  # kept tokens lie within the text
        assert g.logprob == pytest.approx(_score(model, prime.tolist(), g.tokens), abs=1e-5)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_max_chars_cuts_the_text_at_a_character_count(kind):
    tok = _subword(kind)
    model = _sub_model(tok, 4)
    prime = tok.encode("a dog ")
    free = sample(model, prime, SampleConfig(length=200, temperature=1.0, seed=9), **_kw(tok))[0]
    assert len(free.text) > 40
    for n in (0, 1, 17, 40):
        g = sample(model, prime, SampleConfig(max_chars=n, temperature=1.0, seed=9), **_kw(tok))[0]
        assert g.text == free.text[:n] and g.finish_reason == "length"
        assert g.text.startswith(tok.decode(g.tokens))
        assert g.logprob == pytest.approx(_score(model, prime.tolist(), g.tokens), abs=1e-5)
    for g in beam_search(model, prime, SampleConfig(max_chars=11, beam=3, num_return=3), **_kw(tok)):
        assert len(g.text) == 11 and g.text.startswith(tok.decode(g.tokens))
    assert SampleConfig(max_chars=10).max_tokens == 43 and SampleConfig().max_tokens == 500
    assert SampleConfig(length=7, max_chars=10).max_tokens == 7


def test_max_chars_of_a_char_model_is_its_length():
    model = _model("gru", 13)
    a = sample(model, torch.tensor([1]), SampleConfig(length=25, seed=2), token_text=text_of, start_id=0)[0]
    b = sample(model, torch.tensor([1]), SampleConfig(max_chars=25, seed=2), token_text=text_of, start_id=0)[0]
    assert a.tokens == b.tokens and a.text == b.text and len(b.text) == 25


def test_stop_matcher_limit_andkept_tokens():
    m = StopMatcher(["xyz"], limit=5)
    assert m.feed("ab") == "ab" and m.feed("cx") == "c" and m.feed("yq") == "xy"
    assert m.stopped and m.reason == "length" and m.text == "abcxy"
    m = StopMatcher(["xyz"], limit=5)
    assert m.feed("axyz") == "a" and m.reason == "stop"
    tok = _subword("bpe")
    b = lambda x: 4 + x
    the = tok.encode("the").tolist()  # one token of three characters
    emoji = [b(0xF0), b(0x9F), b(0x98), b(0x80)]  # one character, four tokens
    make = tok.detokenizer
    assert kept_tokens(the + emoji + the, make, 3) == 1
    assert kept_tokens(the + emoji + the, make, 4) == 5  # the emoji's bytes count once it is whole
    assert kept_tokens(the + emoji[:2], make, 3) == 1
    assert kept_tokens(the + emoji[:2], make, 4) == 3  # an unfinished end flushes to one U+FFFD
