import pytest
import torch
from torch import nn

from charrnn.config import ModelConfig
from charrnn.errors import ConfigError
from charrnn.models.cells import detach_state
from charrnn.models.lm import RNNLanguageModel
from conftest import CELLS, tiny_model_config


def _hand_run(model: RNNLanguageModel, ids: torch.Tensor) -> torch.Tensor:
    """Logits computed with torch's single-step cells, one time step at a time."""
    cfg = model.config
    cell_cls = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[cfg.cell]
    cells = []
    for layer in range(cfg.layers):
        in_size = cfg.embedding_dim if layer == 0 else cfg.hidden_size
        cell = cell_cls(in_size, cfg.hidden_size)
        with torch.no_grad():
            cell.weight_ih.copy_(getattr(model.rnn, f"weight_ih_l{layer}"))
            cell.weight_hh.copy_(getattr(model.rnn, f"weight_hh_l{layer}"))
            cell.bias_ih.copy_(getattr(model.rnn, f"bias_ih_l{layer}"))
            cell.bias_hh.copy_(getattr(model.rnn, f"bias_hh_l{layer}"))
        cells.append(cell)
    n, t = ids.shape
    h = [torch.zeros(n, cfg.hidden_size) for _ in cells]
    c = [torch.zeros(n, cfg.hidden_size) for _ in cells]
    outs = []
    for step in range(t):
        inp = model.embedding(ids[:, step])
        for i, cell in enumerate(cells):
            if cfg.cell == "lstm":
                h[i], c[i] = cell(inp, (h[i], c[i]))
            else:
                h[i] = cell(inp, h[i])
            inp = h[i]
        outs.append(model.decoder(inp))
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize("cell", CELLS)
def test_forward_equals_hand_run_of_torch_cells(cell):
    torch.manual_seed(0)
    model = RNNLanguageModel(tiny_model_config(cell)).eval()
    ids = torch.randint(0, 7, (2, 3))
    logits, _ = model(ids)
    assert logits.shape == (2, 3, 7)
    with torch.no_grad():
        assert torch.allclose(logits, _hand_run(model, ids), atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_chunks_with_carried_state_equal_the_whole_sequence(cell):
    torch.manual_seed(1)
    model = RNNLanguageModel(tiny_model_config(cell)).eval()
    ids = torch.randint(0, 7, (3, 11))
    whole, whole_state = model(ids)
    parts, state = [], None
    for a, b in [(0, 2), (2, 7), (7, 11)]:
        out, state = model(ids[:, a:b], state)
        state = detach_state(state)
        parts.append(out)
    assert torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-6)
    ws = whole_state if isinstance(whole_state, tuple) else (whole_state,)
    ss = state if isinstance(state, tuple) else (state,)
    for a, b in zip(ws, ss):
        assert a.shape == (2, 3, 5)
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_detached_state_cuts_the_graph(cell):
    model = RNNLanguageModel(tiny_model_config(cell))
    _, state = model(torch.randint(0, 7, (2, 3)))
    detached = detach_state(state)
    for s in detached if isinstance(detached, tuple) else (detached,):
        assert not s.requires_grad and s.grad_fn is None


def test_cell_types_and_sizes_come_from_the_config():
    for cell, cls in [("lstm", nn.LSTM), ("gru", nn.GRU), ("rnn", nn.RNN)]:
        m = RNNLanguageModel(tiny_model_config(cell, layers=3, hidden_size=7, embedding_dim=2, vocab_size=5))
        assert isinstance(m.rnn, cls) and m.rnn.num_layers == 3 and m.rnn.hidden_size == 7
        assert m.embedding.weight.shape == (5, 2) and m.decoder.weight.shape == (5, 7)
    assert RNNLanguageModel(tiny_model_config("rnn")).rnn.nonlinearity == "tanh"


def test_dropout_between_layers_and_before_output():
    m = RNNLanguageModel(tiny_model_config("gru", dropout=0.3))
    assert m.rnn.dropout == 0.3 and m.drop.p == 0.3
    one = RNNLanguageModel(tiny_model_config("gru", dropout=0.3, layers=1))
    assert one.rnn.dropout == 0.0  # torch warns for dropout on a single layer; none is used
    m.eval()
    ids = torch.randint(0, 7, (2, 4))
    assert torch.equal(m(ids)[0], m(ids)[0])  # no dropout in eval mode


def test_tied_weights_share_one_matrix():
    m = RNNLanguageModel(tiny_model_config("lstm", hidden_size=3, embedding_dim=3, tie_weights=True))
    assert m.decoder.weight is m.embedding.weight
    untied = RNNLanguageModel(tiny_model_config("lstm", hidden_size=3, embedding_dim=3))
    assert m.num_parameters() == untied.num_parameters() - 7 * 3
    with pytest.raises(ConfigError, match="tie_weights"):
        ModelConfig(hidden_size=4, embedding_dim=3, tie_weights=True)


@pytest.mark.parametrize(
    "kw", [dict(cell="lstmx"), dict(layers=0), dict(hidden_size=0), dict(dropout=1.0), dict(dropout=-0.1)]
)
def test_bad_model_config_is_a_config_error(kw):
    with pytest.raises(ConfigError):
        ModelConfig(**kw)
