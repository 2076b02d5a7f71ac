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

from .cells import CellKind, State, cell_kind, layer_weights


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
    weights = layer_weights(rnn, k)  # w_ih, w_hh[, b_ih, b_hh]
    if training and weight_drop > 0.0:
        weights[1] = F.dropout(weights[1], weight_drop, True)
    return weights


def _contiguous(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """The same tensors as views into one buffer, in order (cuDNN's layout for them)."""
    flat = torch.cat([w.reshape(-1) for w in weights])
    out, at = [], 0
    for w in weights:
        out.append(flat[at : at + w.numel()].view_as(w))
        at += w.numel()
    return out


def _kernel(kind: CellKind, x: torch.Tensor, state: State, weights: list[torch.Tensor], has_biases: bool,
            layers: int, dropout: float, training: bool) -> tuple[torch.Tensor, State]:
    """The entry's fused kernel (what the module's forward calls) over ``layers`` layers."""
    if x.is_cuda:
        weights = _contiguous(weights)
    hx = list(kind.flatten(state)) if kind.paired else state  # the kernels take a pair as a list
    result = kind.kernel(x, hx, weights, has_biases, layers, dropout, training, False, True)
    return result[0], kind.pack(result[1:])


def run_rnn(rnn: nn.RNNBase, cell: str, x: torch.Tensor, state: State | None, *, weight_drop: float = 0.0,
            between: float = 0.0, variational: bool = False, training: bool = False) -> tuple[torch.Tensor, State]:
    """x (N, T, I) through the batch-first, unidirectional ``rnn`` made by ``cells.make_rnn``
    -> (outputs (N, T, H), final state), with weight drop on its recurrent matrices and
    dropout ``between`` layers, locked over time when ``variational``.

    With neither weight drop nor locked dropout in force this is ``rnn(x, state)`` itself
    (``between`` is then the module's own dropout and is not used here)."""
    if cell_kind(cell).parallel:  # no recurrent matrix; its blocks drop their residual branches
        return rnn(x, state)
    layers = rnn.num_layers
    locked = variational and between > 0.0 and layers > 1
    if not training or (weight_drop == 0.0 and not locked):
        return rnn(x, state)
    kind = cell_kind(cell)
    if state is None:
        state = kind.initial(x.new_zeros(layers, x.shape[0], rnn.hidden_size))
    weights = [_layer_weights(rnn, k, weight_drop, training) for k in range(layers)]
    if not locked:  # one fused call over all layers, the module's own dropout between them
        return _kernel(kind, x, state, [w for ws in weights for w in ws], rnn.bias, layers, rnn.dropout, training)
    parts = kind.flatten(state)  # each (L, N, H)
    finals = []
    for k in range(layers):
        if k:
            x = locked_dropout(x, between, training)
        x, s = _kernel(kind, x, kind.pack([p[k : k + 1] for p in parts]), weights[k], rnn.bias, 1, 0.0, training)
        finals.append(kind.flatten(s))
    return x, kind.pack([torch.cat(layer) for layer in zip(*finals)])
