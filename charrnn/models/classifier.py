"""The recurrent sequence classifier and its configuration, built from a ClassifierConfig alone.

    ids (N, T) -> Embedding (N, T, E) | one-hot (N, T, V) -> Dropout
               -> L layers of nn.LSTM | nn.GRU | nn.RNN(tanh), one module per direction
               -> outputs (N, T, D), D = H * directions
               -> pooling over the real positions: last | mean | max | attention -> (N, D)
               -> Dropout -> Linear -> logits (N, C), float32

Padding never changes a result: the recurrent layers are ``encoder.run_layers`` (exact
over padded batches, without packed sequences), and pooling reads the real positions
only (``last``: the forward output at the last real token and the backward output at the
first).

The ids in the
padding are replaced by ``pad_id`` first, so they may hold anything (even out-of-range
values); a sequence gets the same logits alone as inside a padded batch. Loading
pretrained word vectors into the embedding lives in ``embeddings.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..task_configs import ClassifierConfig
from .encoder import make_layers, padding_mask, run_layers


class SequenceClassifier(nn.Module):
    """Classifies whole sequences: ids (N, T) and lengths (N,) -> logits (N, C)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("ClassifierConfig.vocab_size must be set from the tokenizer")
        if config.num_labels < 2:
            raise ValueError("ClassifierConfig.num_labels must be set from the data (at least 2)")
        self.config = config
        self.directions = 2 if config.bidirectional else 1
        self.sentence_dim = config.hidden_size * self.directions  # D
        self.embedding = None if config.one_hot else nn.Embedding(config.vocab_size, config.embedding_dim)
        # layers[k][0] reads forwards, layers[k][1] (bidirectional) reads each sequence reversed.
        self.layers = make_layers(config.cell, config.vocab_size if config.one_hot else config.embedding_dim,
                                  config.hidden_size, config.layers, self.directions)
        d = self.sentence_dim
        # Attention pooling: score_t = v^T tanh(W o_t + b), softmax over the real positions.
        self.attn_proj = nn.Linear(d, d) if config.pool == "attention" else None
        self.attn_score = nn.Linear(d, 1, bias=False) if config.pool == "attention" else None
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(d, config.num_labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (N, T), lengths (N,) on the CPU or the device -> logits (N, C), float32."""
        pooled = self.encode(ids, lengths)  # (N, D)
        # Keep the small output layer in fp32 under autocast, as the language model does,
        # so that log-probabilities and losses keep full precision.
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            return self.head(self.drop(pooled).float())  # (N, C)

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The pooled sentence vectors (N, D), before the output dropout and layer."""
        lengths = self._checked_lengths(ids, lengths).to(ids.device)
        mask = padding_mask(lengths, ids.shape[1])  # (N, T)
        ids = ids.masked_fill(~mask, self.config.pad_id)  # whatever the padding held
        if self.embedding is None:
            x = F.one_hot(ids.long(), self.config.vocab_size).float()  # (N, T, V)
        else:
            x = self.embedding(ids)  # (N, T, E)
        x, _ = run_layers(self.layers, self.drop(x), mask, lengths, self.config.dropout, self.training)  # (N, T, D)
        return self._pool(x, mask, lengths)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _checked_lengths(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """lengths as int64 on the CPU, after checking them against ids."""
        if ids.dim() != 2 or ids.shape[0] == 0:
            raise ValueError(f"ids must be a non-empty (N, T) batch, got shape {tuple(ids.shape)}")
        if tuple(lengths.shape) != (ids.shape[0],):
            raise ValueError(f"lengths must have shape ({ids.shape[0]},), got {tuple(lengths.shape)}")
        lengths_cpu = lengths.detach().to("cpu", torch.int64)
        low, high = int(lengths_cpu.min()), int(lengths_cpu.max())
        if low < 1 or high > ids.shape[1]:
            raise ValueError(f"lengths must be between 1 and T={ids.shape[1]}, got {low}..{high}")
        return lengths_cpu

    def _pool(self, out: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """out (N, T, D), mask (N, T), lengths (N,) -> (N, D)."""
        pool = self.config.pool
        if pool == "last":
            # Forward: the output at the last real token; backward: the one at the first.
            last = out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[-1])).squeeze(1)  # (N, D)
            if self.directions == 2:
                h = self.config.hidden_size
                return torch.cat([last[:, :h], out[:, 0, h:]], dim=-1)  # (N, 2H)
            return last  # (N, H)
        m = mask.unsqueeze(-1)  # (N, T, 1)
        if pool == "mean":
            return (out * m).sum(dim=1) / m.sum(dim=1).to(out.dtype)  # (N, D)
        if pool == "max":
            return out.masked_fill(~m, float("-inf")).max(dim=1).values  # (N, D)
        scores = self.attn_score(torch.tanh(self.attn_proj(out))).squeeze(-1)  # (N, T)
        weights = torch.softmax(scores.float().masked_fill(~mask, float("-inf")), dim=1)  # (N, T)
        return (weights.unsqueeze(-1).to(out.dtype) * out).sum(dim=1)  # (N, D)

