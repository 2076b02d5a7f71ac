"""The label-conditioned generator (one-to-many), built from a ConditionalConfig alone.

    label (N,)  -> label Embedding -> l (N, D)
    ids (N, T)  -> Embedding -> (N, T, E); each step's input x_t = [e_t; l]   (N, T, E + D)
                -> L layers of nn.LSTM | nn.GRU | nn.RNN(tanh), starting from
                   h0 = tanh(W l + b), one H-slice per layer (label_init), or zeros;
                   an LSTM's cell state starts at zero
                -> (N, T, H) -> Dropout -> Linear -> logits (N, T, V), float32

A sequence is SOS y_1 .. y_m EOS (config: padding, SOS and EOS are the last three ids):
the model reads SOS y_1 .. y_m and predicts y_1 .. y_m EOS. The network reads left to
right and padding comes after each sequence's real tokens, so padding never changes a
logit at a real position. Dropout is applied between recurrent layers (inside torch's
module) and before the output layer, as in the language model.

``step`` is one time step for R rows with the same weights and arithmetic as ``rnn``
(through torch's cell functions), which decoding drives one token at a time.
"""

from __future__ import annotations

import torch
from torch import nn

from ..task_configs import ConditionalConfig
from .cells import State, cell_kind, make_rnn, step_layers

class ConditionalGenerator(nn.Module):
    """(ids (N, T), labels (N,)) -> logits (N, T, V) and the state after the last step."""

    def __init__(self, config: ConditionalConfig):
        super().__init__()
        if config.vocab_size < 4:
            raise ValueError("ConditionalConfig.vocab_size must be set from the tokenizer")
        if config.num_labels < 1:
            raise ValueError("ConditionalConfig.num_labels must be set from the data")
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim)
        self.label_embedding = nn.Embedding(c.num_labels, c.label_dim)
        self.rnn = make_rnn(c.cell, c.embedding_dim + c.label_dim, c.hidden_size, c.layers, c.dropout)
        self.init = nn.Linear(c.label_dim, c.layers * c.hidden_size) if c.label_init else None
        self.drop = nn.Dropout(c.dropout)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size)
        if c.tie_weights:
            self.decoder.weight = self.embedding.weight

    def initial_state(self, label_vec: torch.Tensor) -> State:
        """The state before SOS for label vectors (N, D): (L, N, H) h0 (and c0 = 0 for a paired cell)."""
        c = self.config
        n = label_vec.shape[0]
        if self.init is None:
            h = label_vec.new_zeros(c.layers, n, c.hidden_size)
        else:
            h = torch.tanh(self.init(label_vec)).view(n, c.layers, c.hidden_size).transpose(0, 1).contiguous()
        return cell_kind(c.cell).initial(h)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (N, T), labels (N,) -> logits (N, T, V) and the state after the last step.
        ``state`` None starts each row from its label's initial state."""
        lab = self.label_embedding(labels)  # (N, D)
        emb = self.embedding(ids)  # (N, T, E)
        x = torch.cat([emb, lab.unsqueeze(1).expand(-1, ids.shape[1], -1)], dim=-1)  # (N, T, E + D)
        if state is None:
            state = self.initial_state(lab)
        out, state = self.rnn(x, state)  # (N, T, H)
        return self.logits(out), state

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """Outputs (..., H) -> logits (..., V) in float32 (the output layer stays fp32 under
        autocast, so log-probabilities, losses and bpc keep full precision)."""
        with torch.autocast(device_type=out.device.type, enabled=False):
            return self.decoder(self.drop(out).float())

    def step(self, tokens: torch.Tensor, label_vec: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One token for each of R rows: tokens (R,), label vectors (R, D) -> logits (R, V)
        and the new state. The same weights and arithmetic as ``self.rnn`` over one step."""
        c = self.config
        x = torch.cat([self.embedding(tokens), label_vec.to(self.embedding.weight.dtype)], dim=-1)  # (R, E + D)
        out, state = step_layers(self.rnn, c.cell, x, state, c.dropout, self.training)
        return self.logits(out), state

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
