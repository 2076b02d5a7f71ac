"""The one-row CPU decoding path (issue 35): matrix-vector products, the first layer's
input table, the numpy draw, and the step weights kept with the model.

Each is checked against what it replaces: the batched step (the same arithmetic summed in
another order), the model's own forward pass, a naive greedy loop, and the torch draw.
"""

import importlib

import numpy as np
import pytest
import torch
from conftest import CELLS, tiny_model_config

from charrnn.config import SampleConfig
from charrnn.decoding import StepRunner, sample
from charrnn.decoding import step as step_module
from charrnn.decoding.controls import Controls
from charrnn.decoding.sample import Uniforms, _draw, draw_one, draw_plain
from charrnn.models.lm import RNNLanguageModel

VOCAB = 11
# The module (the package exports a function of the same name).
sample_module = importlib.import_module("charrnn.decoding.sample")


def _model(cell: str, layers: int, seed: int = 0, sharpen: float = 3.0) -> RNNLanguageModel:
    torch.manual_seed(seed)
    m = RNNLanguageModel(tiny_model_config(cell, vocab_size=VOCAB, hidden_size=24, layers=layers)).eval()
    with torch.no_grad():
        m.decoder.weight.mul_(sharpen)
    return m


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("table", [True, False])
def test_one_row_path_equals_the_batched_step_and_the_forward(cell, layers, table, monkeypatch):
    if not table:
        monkeypatch.setattr(step_module, "TABLE_MAX", 0)
    model = _model(cell, layers, seed=layers)
    ids = torch.randint(0, VOCAB, (1, 100), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref, _ = model(ids)
    model.__dict__.pop("_charrnn_step_weights", None)
    fast, batched = StepRunner(model), StepRunner(model, vector=False)  # the general path, as before
    fast.start(None, 1)
    batched.start(None, 1)
    assert fast.vector and (fast.table is not None) == table
    with torch.inference_mode():
        for t in range(100):
            a = fast.step(ids[:, t]).clone()
            b = batched.step(ids[:, t])
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
            assert torch.allclose(a, ref[:, t], atol=1e-5, rtol=1e-5)
            assert torch.allclose(fast.hc, batched.hc, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_greedy_text_equals_a_naive_loop_over_1000_tokens(cell):
    model = _model(cell, 2, seed=3)
    banned = [0]
    gen = sample(model, torch.tensor([1, 2]), SampleConfig(length=1000, greedy=True), token_text=str, start_id=0,
                 banned=banned)[0]
    made = []
    with torch.no_grad():  # the model's forward pass one token at a time, argmax of the allowed ids
        logits, state = model(torch.tensor([[1, 2]]))
        for _ in range(1000):
            scores = logits[0, -1].clone()
            scores[banned] = -float("inf")
            made.append(int(scores.argmax()))
            logits, state = model(torch.tensor([[made[-1]]]), state)
    assert gen.tokens == made


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.6])
def test_numpy_draw_makes_the_torch_draws_choices(temperature):
    """The same uniform numbers give the same tokens (3,000 draws of 1 and 3 rows) and the
    same log-probabilities to float32 rounding, with and without banned ids."""
    gen = torch.Generator().manual_seed(1)
    for ban_ids in ([], [0, 4]):
        for rows in (1, 3):
            cfg = SampleConfig(temperature=temperature, seed=5, num_samples=rows)
            controls = Controls(cfg, [], ban_ids, rows, VOCAB, torch.device("cpu"))
            ban = np.zeros(VOCAB)
            ban[ban_ids] = -np.inf
            allowed = (ban == 0).astype(np.float64) if ban_ids else None
            u_torch, u_numpy = Uniforms(5, rows, 64, torch.device("cpu")), Uniforms(5, rows, 64, torch.device("cpu"))
            for _ in range(1000 // rows):
                logits = torch.randn(rows, VOCAB, generator=gen) * 3
                want, want_lp, _ = _draw(controls.scores(logits), torch.log_softmax(logits, -1), controls, False,
                                         u_torch, VOCAB)
                u = u_numpy.next_np()
                got, got_lp = draw_plain(logits, ban, allowed, cfg, u, VOCAB)
                assert got == want and not set(got) & set(ban_ids)
                assert got_lp == pytest.approx(want_lp, abs=1e-5)
                if rows == 1:  # the one-row form: the same choice, or None at a float boundary
                    one = draw_one(logits.numpy()[0], ban, allowed, 1 / temperature, u[0], VOCAB)
                    assert one is not None and one[0] == want[0] and one[1] == pytest.approx(want_lp[0], abs=1e-5)
            greedy_cfg = SampleConfig(greedy=True)
            want, _, _ = _draw(controls.scores(logits), torch.log_softmax(logits, -1), controls, True, u_torch, VOCAB)
            assert draw_plain(logits, ban, allowed, greedy_cfg, None, VOCAB)[0] == want
            if rows == 1:
                assert draw_one(logits.numpy()[0], ban, allowed, 1.0, None, VOCAB)[0] == want[0]


@pytest.mark.parametrize("cell", CELLS)
def test_seeded_samples_are_those_of_the_torch_path(cell, monkeypatch):
    model = _model(cell, 2, seed=4, sharpen=1.0)
    cfgs = [SampleConfig(length=1000, seed=11, temperature=0.9, num_samples=2),  # the general loop
            SampleConfig(length=1000, seed=12, temperature=1.0),  # the one-row loop
            SampleConfig(length=1000, seed=13, temperature=0.7, stop=("ab",))]
    fast = [sample(model, torch.tensor([3]), cfg, token_text=str, start_id=0, banned=[0]) for cfg in cfgs]
    monkeypatch.setattr(sample_module, "plain_controls", lambda *a: False)
    slow = [sample(model, torch.tensor([3]), cfg, token_text=str, start_id=0, banned=[0]) for cfg in cfgs]
    for a, b in zip(sum(fast, []), sum(slow, [])):
        assert a.tokens == b.tokens and a.text == b.text and a.finish_reason == b.finish_reason
        assert a.logprob == pytest.approx(b.logprob, rel=1e-5)


def test_step_weights_are_made_again_when_the_parameters_change():
    model = _model("lstm", 2, seed=5)
    first = StepRunner(model)
    assert StepRunner(model).vw[0] is first.vw[0]  # kept with the model
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(0.5)  # what an optimiser step or a load does: in place
        ref, _ = model(torch.tensor([[2, 5, 1]]))
    again = StepRunner(model)
    assert again.vw[0] is not first.vw[0]
    again.start(None, 1)
    with torch.inference_mode():
        for t, tok in enumerate([2, 5, 1]):
            assert torch.allclose(again.step(torch.tensor([tok])), ref[:, t], atol=1e-5)
