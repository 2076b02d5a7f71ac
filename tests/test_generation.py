import pytest
import torch
from conftest import CELLS, tiny_model_config

from charrnn.config import SampleConfig
from charrnn.errors import ConfigError
from charrnn.decoding import filter_logits, sample
from charrnn.models.lm import RNNLanguageModel


def _model(cell="lstm", seed=0):
    torch.manual_seed(seed)
    m = RNNLanguageModel(tiny_model_config(cell, hidden_size=13)).eval()
    with torch.no_grad():  # sharpen the output so sampling differs visibly from chance
        m.decoder.weight.mul_(4)
    return m


def _argmax_loop(model, prime, n):
    out, state = [], None
    with torch.no_grad():
        logits, state = model(prime.view(1, -1), state)
        for _ in range(n):
            nxt = int(logits[0, -1].argmax())
            out.append(nxt)
            logits, state = model(torch.tensor([[nxt]]), state)
    return out


def _gen(model, cfg, prime=(1, 2, 3), banned=()):
    return sample(model, torch.tensor(prime), cfg, token_text=chr, start_id=1, banned=banned)[0].tokens


@pytest.mark.parametrize("cell", CELLS)
def test_greedy_equals_an_argmax_loop(cell):
    m = _model(cell)
    assert _gen(m, SampleConfig(length=20, greedy=True)) == _argmax_loop(m, torch.tensor([1, 2, 3]), 20)


def test_tiny_temperature_and_top_k_one_equal_greedy():
    m = _model("gru", 1)
    greedy = _gen(m, SampleConfig(length=30, greedy=True))
    assert _gen(m, SampleConfig(length=30, temperature=1e-4, seed=7)) == greedy
    assert _gen(m, SampleConfig(length=30, top_k=1, seed=8)) == greedy


def test_same_seed_same_text_other_seed_other_text():
    m = _model("lstm", 2)
    a = _gen(m, SampleConfig(length=60, temperature=1.5, seed=11))
    assert a == _gen(m, SampleConfig(length=60, temperature=1.5, seed=11))
    assert a != _gen(m, SampleConfig(length=60, temperature=1.5, seed=12))


def test_empty_prime_starts_from_start_id():
    m = _model("rnn", 3)
    cfg = SampleConfig(length=10, greedy=True)
    out = sample(m, torch.tensor([], dtype=torch.long), cfg, token_text=chr, start_id=4)[0].tokens
    assert out == _argmax_loop(m, torch.tensor([4]), 10)


def test_banned_ids_are_never_generated():
    m = _model("lstm", 4)
    out = _gen(m, SampleConfig(length=300, temperature=3.0, seed=1), banned=[0, 5])
    assert 0 not in out and 5 not in out and len(out) == 300


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    logits = probs.log()
    kept = lambda p: (filter_logits(logits, top_p=p) > float("-inf")).nonzero()[:, 1].tolist()
    assert kept(0.5) == [0]  # 0.5 alone reaches 0.5
    assert sorted(kept(0.6)) == [0, 2]  # 0.5 < 0.6 <= 0.8
    assert sorted(kept(0.8)) == [0, 2]
    assert sorted(kept(0.81)) == [0, 2, 3]
    assert sorted(kept(1.0)) == [0, 1, 2, 3]
    assert kept(0.01) == [0]  # the most likely token always stays


def test_top_k_and_temperature():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    out = filter_logits(logits, temperature=2.0, top_k=2)
    assert torch.isinf(out[0, [0, 3]]).all()
    assert torch.allclose(out[0, [1, 2]], torch.tensor([1.5, 1.0]))


def test_sampled_frequencies_follow_the_filtered_distribution():
    # With top-p 0.6 on these probabilities only ids 0 and 2 can appear, in ratio 5:3.
    from charrnn.decoding import make_generator

    logits = torch.tensor([[0.5, 0.05, 0.3, 0.15]]).log()
    probs = torch.softmax(filter_logits(logits, top_p=0.6), -1)
    draws = torch.multinomial(probs.expand(4000, 4), 1, generator=make_generator(0, torch.device("cpu"))).view(-1)
    counts = torch.bincount(draws, minlength=4).tolist()
    assert counts[1] == counts[3] == 0
    assert counts[0] / 4000 == pytest.approx(0.625, abs=0.03)


@pytest.mark.parametrize(
    "kw", [{"temperature": 0.0}, {"temperature": -1.0}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": 0}, {"length": -1}]
)
def test_bad_sample_options_are_config_errors(kw):
    with pytest.raises(ConfigError):
        SampleConfig(**kw)
