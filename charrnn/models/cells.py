"""The table of recurrent cell kinds: one entry per cell, used by every model.

A new cell is one entry here (a torch module with the nn.RNN constructor and call
signature). The state a cell carries is a tensor (L*D, N, H) for GRU/RNN and a pair of
them for LSTM; callers treat it as opaque and use ``detach_state``.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]

CELLS: dict[str, type[nn.Module]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def make_rnn(cell: str, input_size: int, hidden_size: int, layers: int, dropout: float,
             bidirectional: bool = False) -> nn.Module:
    """A batch-first recurrent stack of ``cell`` (the plain RNN uses tanh); ``dropout``
    applies between layers only, so it is dropped for a single layer."""
    kwargs: dict = dict(input_size=input_size, hidden_size=hidden_size, num_layers=layers, batch_first=True,
                        dropout=dropout if layers > 1 else 0.0, bidirectional=bidirectional)
    if cell == "rnn":
        kwargs["nonlinearity"] = "tanh"
    return CELLS[cell](**kwargs)


def final_hidden(state: State) -> torch.Tensor:
    """h_n of a state: the tensor itself for GRU/RNN, the first of the pair for LSTM."""
    return state[0] if isinstance(state, tuple) else state


def detach_state(state: State | None) -> State | None:
    """Cut the graph at a window boundary (truncated BPTT) while keeping the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()
