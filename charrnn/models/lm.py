"""The recurrent language model, built from a ModelConfig alone.

    ids (N, T) -> Embedding -> (N, T, E) -> nn.LSTM | nn.GRU | nn.RNN(tanh), L layers
               -> (N, T, H) -> Dropout -> Linear -> logits (N, T, V)

Dropout is applied between recurrent layers (inside torch's module) and before the output
layer; the regularisation options of AWD-LSTM (weight drop, input, embedding and
variational dropout) are in models/regularize.py, all off by default. With ``tie_weights`` the output layer shares the embedding matrix (E == H).
The recurrent layers are those of the config's cell in models/cells.py's table. Their state
is a tensor (L, N, H) for GRU/RNN and a pair of them for LSTM; callers treat it as opaque
and use ``cells.detach_state``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .cells import State, make_rnn
from .regularize import embedding_dropout, locked_dropout, run_rnn


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

    def forward(self, ids: torch.Tensor, state: State | None = None, hidden: bool = False):
        """ids (N, T) -> logits (N, T, V) and the state after the last step; with ``hidden``
        also the top layer's outputs (N, T, H) before and after the output dropout (what
        activation regularisation reads)."""
        c, training = self.config, self.training
        emb = embedding_dropout(self.embedding, ids, c.embedding_dropout, training)  # (N, T, E)
        if c.input_dropout:
            emb = locked_dropout(emb, c.input_dropout, training) if c.variational else \
                nn.functional.dropout(emb, c.input_dropout, training)
        out, state = run_rnn(self.rnn, c.cell, emb, state, weight_drop=c.weight_drop, between=c.dropout,
                             variational=c.variational, training=training)  # (N, T, H)
        dropped = locked_dropout(out, c.dropout, training) if c.variational else self.drop(out)
        # The output layer is small next to the recurrent layers; keep it in fp32 under
        # autocast so that log-probabilities (and so losses and bpc) keep full precision.
        with torch.autocast(device_type=out.device.type, enabled=False):
            logits = self.decoder(dropped.float())  # (N, T, V)
        return (logits, state, out, dropped) if hidden else (logits, state)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights are counted once

