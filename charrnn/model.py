"""The recurrent language model, built from a ModelConfig alone.

    ids (N, T) -> Embedding -> (N, T, E) -> nn.LSTM | nn.GRU | nn.RNN(tanh), L layers
               -> (N, T, H) -> Dropout -> Linear -> logits (N, T, V)

Dropout is applied between recurrent layers (inside torch's module) and before the output
layer. With ``tie_weights`` the output layer shares the embedding matrix (E == H).
The recurrent state is a tensor (L, N, H) for GRU/RNN and a pair of them for LSTM; callers
treat it as opaque and use ``detach_state``.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from .config import ModelConfig

State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class RNNLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set from the tokenizer")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        kwargs = dict(
            input_size=config.embedding_dim,
            hidden_size=config.hidden_size,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        if config.cell == "rnn":
            kwargs["nonlinearity"] = "tanh"
        self.rnn = _CELLS[config.cell](**kwargs)
        self.drop = nn.Dropout(config.dropout)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (N, T) -> logits (N, T, V) and the state after the last step."""
        emb = self.embedding(ids)  # (N, T, E)
        out, state = self.rnn(emb, state)  # (N, T, H)
        # The output layer is small next to the recurrent layers; keep it in fp32 under
        # autocast so that log-probabilities (and so losses and bpc) keep full precision.
        with torch.autocast(device_type=out.device.type, enabled=False):
            logits = self.decoder(self.drop(out).float())  # (N, T, V)
        return logits, state

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights are counted once


def detach_state(state: State | None) -> State | None:
    """Cut the graph at a window boundary (truncated BPTT) while keeping the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()
