"""AWD-LSTM regularisation (models/regularize.py): weight drop, locked and embedding dropout,
activation regularisation, against torch's own modules run with the masks drawn by hand."""

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from charrnn.checkpoint import load_checkpoint, read_metrics
from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import ConfigError, TrainingInterrupted
from charrnn.models.cells import make_rnn
from charrnn.models.lm import RNNLanguageModel
from charrnn.models.regularize import embedding_dropout, locked_dropout, run_rnn
from conftest import CELLS, tiny_model_config

ALL_ON = dict(weight_drop=0.4, input_dropout=0.3, embedding_dropout=0.2, variational=True, dropout=0.25)


def _module(cell, layers=1, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    return make_rnn(cell, 4, 6, layers, dropout)


def _with_weights(rnn, dropped: dict[str, torch.Tensor]):
    """A copy of ``rnn`` whose named matrices are replaced by ``dropped`` (values, no grad)."""
    ref = copy.deepcopy(rnn)
    with torch.no_grad():
        for name, w in dropped.items():
            getattr(ref, name).copy_(w)
    return ref.eval()


@pytest.mark.parametrize("cell", CELLS)
def test_weight_drop_equals_the_module_with_the_dropped_matrix(cell):
    rnn, p = _module(cell, layers=2), 0.5
    x = torch.randn(3, 9, 4)
    torch.manual_seed(7)
    out, state = run_rnn(rnn, cell, x, None, weight_drop=p, training=True)
    # The same draws by hand: one mask per layer's hidden-to-hidden matrix, in layer order.
    torch.manual_seed(7)
    dropped = {f"weight_hh_l{k}": F.dropout(getattr(rnn, f"weight_hh_l{k}"), p, True) for k in range(2)}
    ref_out, ref_state = _with_weights(rnn, dropped)(x)
    torch.testing.assert_close(out, ref_out)
    for a, b in zip(state if cell == "lstm" else [state], ref_state if cell == "lstm" else [ref_state]):
        torch.testing.assert_close(a, b)
    # The mask drops whole entries (about p of them) and is the same at every time step:
    # the window run whole equals the same window run in two halves with the state carried.
    w = dropped["weight_hh_l0"]
    assert 0.3 < (w == 0).float().mean() < 0.7
    ref = _with_weights(rnn, dropped)
    first, s = ref(x[:, :4])
    second, _ = ref(x[:, 4:], s)
    torch.testing.assert_close(torch.cat([first, second], 1), ref_out)


@pytest.mark.parametrize("cell", CELLS)
def test_weight_drop_draws_a_fresh_mask_per_window_and_trains_the_raw_matrix(cell):
    rnn = _module(cell)
    x = torch.randn(2, 5, 4)
    torch.manual_seed(1)
    a, _ = run_rnn(rnn, cell, x, None, weight_drop=0.5, training=True)
    b, _ = run_rnn(rnn, cell, x, None, weight_drop=0.5, training=True)
    assert not torch.allclose(a, b)  # a new mask for the next window
    a.sum().backward()
    g = rnn.weight_hh_l0.grad
    assert g is not None and (g != 0).any() and (g == 0).any()  # dropped entries get no gradient
    assert list(dict(rnn.named_parameters())) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]


@pytest.mark.parametrize("cell", CELLS)
def test_variational_dropout_between_layers_equals_layers_run_by_hand(cell):
    rnn, p = _module(cell, layers=2, dropout=0.3), 0.3
    x = torch.randn(3, 7, 4)
    torch.manual_seed(3)
    out, state = run_rnn(rnn, cell, x, None, between=p, variational=True, training=True)
    torch.manual_seed(3)
    mask = torch.empty(3, 1, 6).bernoulli_(1 - p).div_(1 - p)
    layers = []
    for k in range(2):
        one = make_rnn(cell, 4 if k == 0 else 6, 6, 1, 0.0)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(one, f"{name}_l0").copy_(getattr(rnn, f"{name}_l{k}"))
        layers.append(one)
    h0, _ = layers[0](x)
    ref, _ = layers[1](h0 * mask)
    torch.testing.assert_close(out, ref)
    assert (state[0] if cell == "lstm" else state).shape == (2, 3, 6)


def test_locked_dropout_shares_the_mask_over_time_and_not_over_rows():
    torch.manual_seed(0)
    y = locked_dropout(torch.ones(4, 10, 8), 0.5, True)
    assert torch.equal(y, y[:, :1].expand_as(y))  # every time step alike
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert not torch.equal(y[0], y[1])
    assert torch.equal(locked_dropout(torch.ones(2, 3, 4), 0.5, False), torch.ones(2, 3, 4))


def test_embedding_dropout_drops_whole_token_types():
    torch.manual_seed(0)
    emb = nn.Embedding(20, 5)
    ids = torch.randint(0, 20, (3, 40))
    out = embedding_dropout(emb, ids, 0.5, True)
    ref = emb(ids)
    for v in ids.unique().tolist():
        rows = out[ids == v]
        scale = rows / ref[ids == v]
        assert torch.allclose(scale, torch.zeros_like(scale)) or torch.allclose(scale, torch.full_like(scale, 2.0))
    dropped = [(out[ids == v] == 0).all().item() for v in ids.unique().tolist()]
    assert any(dropped) and not all(dropped)


@pytest.mark.parametrize("cell", CELLS)
def test_in_eval_mode_the_regularised_model_equals_the_plain_one(cell):
    torch.manual_seed(0)
    reg = RNNLanguageModel(tiny_model_config(cell, **ALL_ON))
    plain = RNNLanguageModel(tiny_model_config(cell, dropout=0.25))
    plain.load_state_dict(reg.state_dict())
    ids = torch.randint(0, 7, (2, 12))
    a, sa = reg.eval()(ids)
    b, sb = plain.eval()(ids)
    assert torch.equal(a, b)
    reg.train()
    torch.manual_seed(1)
    c, _ = reg(ids)
    assert not torch.allclose(a, c)  # in training the regularisation is on


def test_options_are_checked_and_stored_in_the_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="weight_drop"):
        ModelConfig(weight_drop=1.0)
    with pytest.raises(ConfigError, match="embedding_dropout"):
        ModelConfig(embedding_dropout=-0.1)
    from test_resume import make

    make(tmp_path / "run", model=ALL_ON, max_steps=3, ar=1.0, tar=0.5).run()
    ck = load_checkpoint(tmp_path / "run")
    for k, v in ALL_ON.items():
        assert getattr(ck.model_config, k) == v
    assert (ck.train_config.ar, ck.train_config.tar) == (1.0, 0.5)


def test_older_checkpoints_without_the_keys_load_with_regularisation_off():
    from charrnn.config import from_dict

    old = {"vocab_size": 7, "cell": "gru", "layers": 1, "hidden_size": 5, "embedding_dim": 3, "dropout": 0.1,
           "tie_weights": False}
    cfg = from_dict(ModelConfig, old)
    assert (cfg.weight_drop, cfg.input_dropout, cfg.embedding_dropout, cfg.variational) == (0.0, 0.0, 0.0, False)
    train = from_dict(TrainConfig, {"batch_size": 4, "lr": 0.01})
    assert (train.ar, train.tar) == (0.0, 0.0) and (TrainConfig().ar, TrainConfig().tar) == (1.0, 1.0)


def test_activation_regularisation_is_trained_on_but_not_reported(tmp_path):
    from test_resume import make

    t = make(tmp_path / "run", max_steps=4, ar=2.0, tar=1.0, log_interval=1)
    task = t.task
    batch = task.batches.next()
    task.batches.position = 0
    t.model.train()
    torch.manual_seed(5)
    loss, items, shown = task.loss(t.model, batch, torch.device("cpu"), None)
    torch.manual_seed(5)
    logits, _, out, dropped = t.model(batch[0].long(), None, hidden=True)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[1].long().reshape(-1))
    reg = 2.0 * dropped.pow(2).mean() + 1.0 * (out[:, 1:] - out[:, :-1]).pow(2).mean()
    torch.testing.assert_close(shown, ce.detach())
    torch.testing.assert_close(loss, ce + reg)
    assert reg > 0
    task.reset()
    t.run()
    trains = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["event"] == "train"]
    assert trains and all(math.isfinite(r["train_loss"]) for r in trains)


@pytest.mark.parametrize("cell", CELLS)
def test_resume_with_every_regulariser_is_bitwise(tmp_path, cell):
    from test_resume import StopAfter, make, train_losses, windows_per_epoch

    total, stop = windows_per_epoch() + 4, 5
    whole = make(tmp_path / "whole", cell, model=ALL_ON, max_steps=total, ar=1.0, tar=1.0).run()
    StopAfter.stop_at = stop
    with pytest.raises(TrainingInterrupted):
        make(tmp_path / "parts", cell, model=ALL_ON, task_cls=StopAfter, max_steps=total, ar=1.0, tar=1.0).run()
    resumed = make(tmp_path / "parts", cell, model=ALL_ON, resume=True, max_steps=total, ar=1.0, tar=1.0).run()
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert train_losses(tmp_path / "whole") == train_losses(tmp_path / "parts")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("cell", CELLS)
def test_weight_drop_on_cuda_runs_cudnn_without_a_weight_warning(cell):
    rnn = _module(cell, layers=2).cuda()
    x = torch.randn(4, 16, 4, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = run_rnn(rnn, cell, x, None, weight_drop=0.5, training=True)
        out.sum().backward()
    assert rnn.weight_hh_l0.grad is not None
