"""Beam search, batched sampling and the generation controls of issue 3."""

import itertools

import pytest
import torch

from charrnn.config import SampleConfig
from charrnn.errors import ConfigError
from charrnn.generation import NgramBlocker, StepRunner, StopMatcher, beam_search, filter_logits, sample
from charrnn.model import RNNLanguageModel
from conftest import CELLS, tiny_model_config

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
    from charrnn.generation import penalize_repeats

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
    "kw", [dict(beam=-1), dict(repetition_penalty=-1.0), dict(repetition_penalty=0.0), dict(num_samples=0),
           dict(no_repeat_ngram=-2), dict(length_penalty=-0.5), dict(min_p=1.5), dict(max_time=0),
           dict(beam=2, num_return=3), dict(num_return=2), dict(beam=2, num_samples=2), dict(stop=("",))]
)
def test_bad_decoding_values_are_config_errors(kw):
    with pytest.raises(ConfigError):
        SampleConfig(**kw)
