"""Regularisation of a recurrent stack from AWD-LSTM (Merity et al. 2017), for every cell kind.

- Weight drop (DropConnect on the hidden-to-hidden matrices): each ``weight_hh_l{k}`` is
  dropped element-wise (kept entries scaled by 1/(1-p)) once per forward call, so one
  mask holds for every time step of a window and a fresh one is drawn for the next
  window. The module's own parameters are never replaced (no re-parameterisation hack:
  the optimizer, the checkpoint and ``flatten_parameters`` see the plain nn.LSTM); the
  dropped weights go to the same fused kernel nn.LSTM calls. On CUDA they are packed into
  one contiguous buffer in the module's weight order, the layout cuDNN takes without
  copying or warning.
- Variational (locked) dropout: one mask per sequence and feature, the same at every time
  step of the window (Gal and Ghahramani 2016), for the input, between layers and the output.
- Embedding dropout: whole vocabulary rows dropped for the window (every occurrence of a
  dropped token reads zeros), the rest scaled by 1/(1-p).

In eval mode all of it is the identity: the model equals the undropped one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cells import State

# torch's fused recurrent kernels (what nn.LSTM/GRU/RNN.forward call), by cell kind.
_KERNELS = {"lstm": torch._VF.lstm, "gru": torch._VF.gru, "rnn": torch._VF.rnn_tanh}


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """x (N, T, D) with one dropout mask per row and feature, shared by all T steps."""
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1.0 - p).div_(1.0 - p)
    return x * mask


def embedding_dropout(embedding: nn.Embedding, ids: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Look ``ids`` up in ``embedding`` with whole rows (token types) dropped with prob ``p``."""
    if not training or p == 0.0:
        return embedding(ids)
    w = embedding.weight
    mask = w.new_empty(w.shape[0], 1).bernoulli_(1.0 - p).div_(1.0 - p)
    return F.embedding(ids, w * mask, embedding.padding_idx)


def _layer_weights(rnn: nn.RNNBase, k: int, weight_drop: float, training: bool) -> list[torch.Tensor]:
    w_hh = getattr(rnn, f"weight_hh_l{k}")
    if training and weight_drop > 0.0:
        w_hh = F.dropout(w_hh, weight_drop, True)
    return [getattr(rnn, f"weight_ih_l{k}"), w_hh, getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}")]


def _contiguous(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """The same tensors as views into one buffer, in order (cuDNN's layout for them)."""
    flat = torch.cat([w.reshape(-1) for w in weights])
    out, at = [], 0
    for w in weights:
        out.append(flat[at : at + w.numel()].view_as(w))
        at += w.numel()
    return out


def _zero_state(rnn: nn.RNNBase, cell: str, x: torch.Tensor, layers: int) -> State:
    h = x.new_zeros(layers, x.shape[0], rnn.hidden_size)
    return (h, h.clone()) if cell == "lstm" else h


def _kernel(cell: str, x: torch.Tensor, state: State, weights: list[torch.Tensor], layers: int, dropout: float,
            training: bool) -> tuple[torch.Tensor, State]:
    if x.is_cuda:
        weights = _contiguous(weights)
    hx = list(state) if cell == "lstm" else state
    result = _KERNELS[cell](x, hx, weights, True, layers, dropout, training, False, True)
    return result[0], ((result[1], result[2]) if cell == "lstm" else result[1])


def run_rnn(rnn: nn.RNNBase, cell: str, x: torch.Tensor, state: State | None, *, weight_drop: float = 0.0,
            between: float = 0.0, variational: bool = False, training: bool = False) -> tuple[torch.Tensor, State]:
    """x (N, T, I) through the batch-first, unidirectional ``rnn`` made by ``cells.make_rnn``
    -> (outputs (N, T, H), final state), with weight drop on its recurrent matrices and
    dropout ``between`` layers, locked over time when ``variational``.

    With neither weight drop nor locked dropout in force this is ``rnn(x, state)`` itself
    (``between`` is then the module's own dropout and is not used here)."""
    layers = rnn.num_layers
    locked = variational and between > 0.0 and layers > 1
    if not training or (weight_drop == 0.0 and not locked):
        return rnn(x, state)
    if state is None:
        state = _zero_state(rnn, cell, x, layers)
    weights = [_layer_weights(rnn, k, weight_drop, training) for k in range(layers)]
    if not locked:  # one fused call over all layers, the module's own dropout between them
        return _kernel(cell, x, state, [w for ws in weights for w in ws], layers, rnn.dropout, training)
    hs, cs = [], []
    for k in range(layers):
        if k:
            x = locked_dropout(x, between, training)
        layer_state = (state[0][k : k + 1], state[1][k : k + 1]) if cell == "lstm" else state[k : k + 1]
        x, s = _kernel(cell, x, layer_state, weights[k], 1, 0.0, training)
        if cell == "lstm":
            hs.append(s[0])
            cs.append(s[1])
        else:
            hs.append(s)
    return x, ((torch.cat(hs), torch.cat(cs)) if cell == "lstm" else torch.cat(hs))
