"""charrnn.diagnostics: the gradient picture against autograd on a hand-built loop, the decay
fit, the clipping runs, and the memory tasks' data and tables."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from charrnn.diagnostics.gradients import (ClipRun, GradientProfile, clipping_runs, fit_decay, fresh_profile,
                                           hidden_gradient_norms, lm_profile, record_training, windows)
from charrnn.diagnostics.memory import MemoryConfig, MemoryNet, adding_batch, copy_batch, memory_table, train_memory
from charrnn.errors import ConfigError, CorpusError
from charrnn.models.cells import make_rnn
from charrnn.models.lm import RNNLanguageModel
from charrnn.text.streams import StreamBatches
from conftest import CELLS, tiny_model_config


def reference_norms(rnn: nn.RNNBase, inputs: torch.Tensor, state, loss_of_last) -> torch.Tensor:
    """||d loss_i / dh_t[i]|| (N, T), independently: the nn module itself called on one time
    step at a time, the top layer's h taken out of its state and put back as the state
    the next call reads; then one torch.autograd.grad per row's loss."""
    n, t_len, _ = inputs.shape
    lstm = isinstance(rnn, nn.LSTM)
    hs = []
    for t in range(t_len):
        _, new = rnn(inputs[:, t : t + 1], state)
        h_all = new[0] if lstm else new  # (L, N, H)
        h = h_all[-1]  # the top layer's h_t: the node every later step depends on
        hs.append(h)
        h_all = torch.cat([h_all[:-1], h.unsqueeze(0)])
        state = (h_all, new[1]) if lstm else h_all
    losses = loss_of_last(hs[-1])
    out = torch.zeros(n, t_len, dtype=torch.float64)
    for i in range(n):
        grads = torch.autograd.grad(losses[i], hs, retain_graph=True)
        for t, g in enumerate(grads):
            out[i, t] = g[i].double().norm()
    return out


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_hidden_gradient_norms_equal_autograd_of_the_last_loss(cell, layers):
    torch.manual_seed(3)
    rnn = make_rnn(cell, 3, 5, layers, 0.0)
    readout = nn.Linear(5, 7)
    inputs = torch.randn(2, 11, 3)
    target = torch.tensor([4, 1])
    h0 = torch.randn(layers, 2, 5)
    state = (h0, torch.randn(layers, 2, 5)) if cell == "lstm" else h0

    def loss_of_last(h):
        return nn.functional.cross_entropy(readout(h), target, reduction="none")

    norms, losses = hidden_gradient_norms(rnn, cell, inputs, loss_of_last, state)
    ref = reference_norms(rnn, inputs, state, loss_of_last)
    assert norms.shape == (2, 11) and losses.shape == (2,)
    torch.testing.assert_close(norms, ref, rtol=1e-5, atol=1e-9)
    assert (ref[:, :-1] > 0).all()  # every earlier state reaches the loss


@pytest.mark.parametrize("cell", CELLS)
def test_lm_profile_is_the_mean_norm_by_distance_from_the_last_position(cell):
    """The whole path for a checkpoint's model: windows of the text, a warmed-up state, the
    model's own output layer and the next token; index d of the profile is distance T - t."""
    torch.manual_seed(5)
    model = RNNLanguageModel(tiny_model_config(cell))  # 2 layers, hidden 5, embedding 3, vocab 7
    ids = torch.randint(0, 7, (60,))
    prof = lm_profile(model, ids, length=6, sequences=3, warmup=4, seed=2, label="x")
    win = windows(ids, 3, 4 + 6 + 1, torch.Generator().manual_seed(2))
    emb = model.embedding(win[:, :-1])
    with torch.no_grad():
        _, state = model.rnn(emb[:, :4])

    def loss_of_last(h):
        return nn.functional.cross_entropy(model.decoder(h), win[:, -1], reduction="none")

    ref = reference_norms(model.rnn, emb[:, 4:], state, loss_of_last)  # (N, T) by position
    assert prof.length == 6 and prof.sequences == 3 and prof.cell == cell and prof.layers == 2
    for d in range(6):
        assert prof.norms[d] == pytest.approx(float(ref[:, 5 - d].mean()), rel=1e-5)
        assert prof.medians[d] == pytest.approx(float(ref[:, 5 - d].median()), rel=1e-5)
    assert prof.loss == pytest.approx(float(loss_of_last(model.rnn(emb)[0][:, -1]).mean().detach()), rel=1e-5)


def test_fresh_profile_is_reproducible_and_reports_every_distance():
    a = fresh_profile("gru", hidden_size=6, length=9, sequences=2, warmup=3, seed=4)
    b = fresh_profile("gru", hidden_size=6, length=9, sequences=2, warmup=3, seed=4)
    assert a.norms == b.norms and len(a.norms) == 9
    assert [d for d, _ in a.at()] == [0, 1, 2, 5, 8]
    assert a.as_dict()["fit"]["per_step"] == a.fit.per_step
    with pytest.raises(ConfigError):
        fresh_profile("transformer")


def test_windows_refuse_a_text_too_short():
    with pytest.raises(CorpusError, match="needs at least"):
        windows(torch.arange(5), 2, 6, torch.Generator())


def test_fit_decay_returns_the_ratio_of_a_geometric_sequence():
    norms = [3.0 * 0.7**d for d in range(40)]
    fit = fit_decay(norms)
    assert fit.per_step == pytest.approx(0.7, rel=1e-9) and fit.scale == pytest.approx(3.0, rel=1e-9)
    assert (fit.first, fit.last, fit.points) == (1, 39, 39)
    assert fit.steps_per_decade == pytest.approx(-1 / math.log10(0.7))
    # Underflow ends the fit: it stops before the first norm under the floor.
    cut = fit_decay([1.0, 0.5, 0.25, 0.125, 1e-40, 0.0, 1.0])
    assert cut.per_step == pytest.approx(0.5) and cut.last == 3
    assert math.isnan(fit_decay([1.0, 0.5, 0.0]).per_step)


def test_profile_fits_its_own_norms():
    prof = GradientProfile("x", "rnn", 5, 1, 5, 1, 0, 1.0, [2.0, 1.0, 0.5, 0.25, 0.125], [1.0, 0.3, 0.09, 0.027, 0.0081])
    assert prof.fit.per_step == pytest.approx(0.5) and prof.median_fit.per_step == pytest.approx(0.3)


# ---------------------------------------------------------------- clipping


def _tiny_lm(cell="rnn", seed=0):
    torch.manual_seed(seed)
    return RNNLanguageModel(tiny_model_config(cell, layers=1))


def test_recorded_norm_is_the_total_gradient_norm_before_clipping():
    ids = torch.randint(0, 7, (200,), generator=torch.Generator().manual_seed(1))
    model = _tiny_lm()
    ref = copy.deepcopy(model)
    run = record_training(model, StreamBatches.build(ids, 3, 5), steps=2, lr=0.5, clip=1e-3)
    x, y, _ = StreamBatches.build(ids, 3, 5).next()
    logits, _ = ref(x.long())
    loss = nn.functional.cross_entropy(logits.reshape(-1, 7), y.long().reshape(-1))
    loss.backward()
    by_hand = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in ref.parameters()))
    returned = float(torch.nn.utils.clip_grad_norm_(list(ref.parameters()), 1e-3))
    assert run.norms[0] == pytest.approx(by_hand, rel=1e-5) and run.norms[0] == pytest.approx(returned, rel=1e-6)
    assert run.losses[0] == pytest.approx(float(loss.detach()), rel=1e-6)
    assert len(run.norms) == len(run.losses) == 2 and run.diverged_at is None


def test_clipping_changes_the_weights_only_when_a_norm_exceeds_the_threshold():
    ids = torch.randint(0, 7, (200,), generator=torch.Generator().manual_seed(1))
    start = _tiny_lm("gru")
    runs = {}
    for name, clip in (("none", None), ("tight", 1e-3), ("loose", 1e6)):
        model = copy.deepcopy(start)
        runs[name] = (record_training(model, StreamBatches.build(ids, 3, 5), 3, 0.5, clip), model)
    weights = {k: torch.cat([p.detach().flatten() for p in m.parameters()]) for k, (_, m) in runs.items()}
    assert max(runs["tight"][0].norms) > 1e-3
    assert not torch.allclose(weights["tight"], weights["none"])
    assert max(runs["loose"][0].norms) < 1e6
    assert torch.equal(weights["loose"], weights["none"])


def test_clipping_runs_start_from_the_same_initialisation():
    ids = torch.randint(0, 7, (300,), generator=torch.Generator().manual_seed(2))
    clipped, free = clipping_runs(ids, 7, "rnn", hidden_size=4, embedding_dim=3, steps=3, batch_size=2, bptt=6,
                                  lr=1.0, clip=0.01, seed=3)
    assert clipped.clip == 0.01 and free.clip is None
    assert clipped.norms[0] == free.norms[0] and clipped.losses[0] == free.losses[0]
    assert clipped.norms[1] != free.norms[1]
    s = clipped.summary(0.01)
    assert s["steps"] == 3 and s["above_threshold"] == sum(n > 0.01 for n in clipped.norms)
    assert s["max_norm"] == max(clipped.norms)
    with pytest.raises(ConfigError):
        clipping_runs(ids, 7, clip=0)


def test_a_diverged_run_stops_and_says_where():
    run = ClipRun(1.0, [0.5, float("inf")], [2.0, float("nan")], diverged_at=1)
    s = run.summary(1.0)
    assert s["max_norm"] == 0.5 and s["diverged_at"] == 1 and s["final_loss"] == 2.0


# ---------------------------------------------------------------- memory


def test_copy_batch_matches_a_hand_drawn_example():
    inputs, targets = copy_batch(2, lag=5, remember=2, alphabet=4, generator=torch.Generator().manual_seed(0))
    assert inputs.shape == (2, 7) and targets.shape == (2, 2)
    for row, (a, b) in zip(inputs.tolist(), targets.tolist()):
        #            s1 s2 _  _  _  >  _      each symbol is recalled 5 steps after it was seen
        assert row == [a, b, 4, 4, 4, 5, 4]
        assert 0 <= a < 4 and 0 <= b < 4
    with pytest.raises(ConfigError):
        copy_batch(1, lag=1, remember=2, alphabet=4, generator=torch.Generator())


def test_adding_batch_marks_one_value_in_each_half_and_sums_them():
    inputs, targets = adding_batch(5, lag=6, generator=torch.Generator().manual_seed(1))
    assert inputs.shape == (5, 6, 2) and targets.shape == (5,)
    for x, y in zip(inputs, targets):
        marked = x[:, 1].nonzero().flatten().tolist()
        assert len(marked) == 2 and marked[0] < 3 <= marked[1]
        assert float(y) == pytest.approx(float(x[marked[0], 0] + x[marked[1], 0]))


@pytest.mark.parametrize("task", ["copy", "adding"])
def test_memory_net_scores_the_recall_steps(task):
    cfg = MemoryConfig(task=task, remember=2, alphabet=3, hidden_size=4)
    net = MemoryNet("lstm", cfg)
    gen = torch.Generator().manual_seed(0)
    inputs, _ = copy_batch(3, 4, 2, 3, gen) if task == "copy" else adding_batch(3, 4, gen)
    out = net(inputs)
    assert out.shape == ((3, 2, 3) if task == "copy" else (3,))


def test_a_tiny_memory_table_has_one_result_per_cell_and_lag_and_is_reproducible():
    cfg = MemoryConfig(task="copy", remember=1, alphabet=3, hidden_size=4, steps=4, eval_every=2, eval_size=8,
                       test_size=16, seed=1)
    heard = []
    table = memory_table(["gru"], [3], cfg, on_result=heard.append)
    assert [(r.cell, r.lag) for r in table.results] == [("gru", 3)] and heard == table.results
    r = table.results[0]
    assert 0.0 <= r.score <= 1.0 and r.learned == (r.score >= 0.9) and 1 <= r.steps <= 4
    d = table.as_dict()
    assert d["chance"] == pytest.approx(1 / 3) and d["lags"] == [3] and len(d["results"]) == 1
    assert set(d["longest_learned"]) == {"gru"}
    assert train_memory("gru", 3, cfg).score == r.score  # the same seed, the same number


def test_memory_table_refuses_bad_cells_and_lags():
    cfg = MemoryConfig(steps=1)
    with pytest.raises(ConfigError, match="unknown cell"):
        memory_table(["tcn"], [10], cfg)
    with pytest.raises(ConfigError, match="too short"):
        memory_table(["rnn"], [1], cfg)
    with pytest.raises(ConfigError):
        MemoryConfig(task="parity")
