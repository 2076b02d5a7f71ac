"""The recurrent language model, built from a ModelConfig alone.

    ids (N, T) -> Embedding -> (N, T, E) -> nn.LSTM | nn.GRU | nn.RNN(tanh), L layers
               -> (N, T, H) -> Dropout -> Linear -> logits (N, T, V)

Dropout is applied between recurrent layers (inside torch's module) and before the output
layer. With ``tie_weights`` the output layer shares the embedding matrix (E == H).
The recurrent state is a tensor (L, N, H) for GRU/RNN and a pair of them for LSTM; callers
treat it as opaque and use ``cells.detach_state``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .cells import State, make_rnn


class RNNLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set from the tokenizer")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.rnn = make_rnn(config.cell, config.embedding_dim, config.hidden_size, config.layers, config.dropout)
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

