"""The sequence tagger (many-to-many, aligned), built from a TaggerConfig alone.

    words (N, T) -> word Embedding (N, T, E)  ---------------------------------+
    spellings (M, C) -> char Embedding -> BiRNN -> final states (M, 2Hc)        |
                     -> gathered per position by spelling (N, T) -> (N, T, 2Hc) +--> concat
             -> Dropout -> L layers of LSTM | GRU | RNN, one module per direction (N, T, D)
             -> Dropout -> Linear -> emissions (N, T, K), float32
             -> per-token softmax, or a linear-chain CRF over them (``crf``)

The word embedding knows the training words (lower-cased: see tasks/tag.py); the
character encoder reads each word's exact spelling, so a word never seen in training
still has its suffix, capitals and digits to go on (Lample et al. 2016, Plank et al.
2016). A batch lists each distinct spelling once (M rows) and ``spelling`` points every
position at its row, so a word's character features are computed once per batch and
are the same wherever the word occurs.

Padding never changes a result: the sentence layers and the character encoder are
``encoder.run_layers`` (exact over padded batches), and the ids at padding positions are
replaced before they are read, so they may hold anything.
"""

from __future__ import annotations

import torch
from torch import nn

from ..task_configs import TaggerConfig
from .crf import CRF
from .encoder import make_layers, padding_mask, run_layers


class Tagger(nn.Module):
    """Tags every token: words (N, T), lengths (N,), spellings (M, C), spelling lengths
    (M,), spelling index (N, T) -> emissions (N, T, K)."""

    def __init__(self, config: TaggerConfig):
        super().__init__()
        for name in ("word_vocab_size", "char_vocab_size", "num_tags"):
            if getattr(config, name) < 1:
                raise ValueError(f"TaggerConfig.{name} must be set from the data")
        self.config = config
        self.directions = 2 if config.bidirectional else 1
        self.word_embedding = nn.Embedding(config.word_vocab_size, config.embedding_dim)
        chars = config.char_hidden_size
        self.char_embedding = nn.Embedding(config.char_vocab_size, config.char_embedding_dim) if chars else None
        # The character encoder always reads both ways: the final state of the forward
        # direction ends on the suffix, the backward one on the prefix.
        self.char_layers = make_layers(config.cell, config.char_embedding_dim, chars, 1, 2) if chars else None
        self.layers = make_layers(config.cell, config.embedding_dim + 2 * chars, config.hidden_size, config.layers,
                                  self.directions)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size * self.directions, config.num_tags)
        self.crf = CRF(config.num_tags) if config.crf else None

    def forward(self, words: torch.Tensor, lengths: torch.Tensor, chars: torch.Tensor, char_lengths: torch.Tensor,
                spelling: torch.Tensor) -> torch.Tensor:
        """-> emissions (N, T, K), float32 (the per-token logits, or the CRF's unary scores)."""
        c = self.config
        lengths = lengths.to(words.device)
        mask = padding_mask(lengths, words.shape[1])  # (N, T)
        x = self.word_embedding(words.masked_fill(~mask, c.word_pad_id))  # (N, T, E)
        if self.char_layers is not None:
            spelled = self.spell(chars, char_lengths)  # (M, 2Hc)
            index = spelling.masked_fill(~mask, 0)  # (N, T): padding reads row 0, whatever it held
            x = torch.cat([x, spelled[index].to(x.dtype)], dim=-1)  # (N, T, E + 2Hc)
        x, _ = run_layers(self.layers, self.drop(x), mask, lengths, c.dropout, self.training)  # (N, T, D)
        # The small output layer stays in fp32 under autocast (as in the other models).
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.head(self.drop(x).float())  # (N, T, K)

    def spell(self, chars: torch.Tensor, char_lengths: torch.Tensor) -> torch.Tensor:
        """Character features of M spellings: chars (M, C), char_lengths (M,) -> (M, 2Hc),
        the forward state after the last character and the backward one after the first."""
        char_lengths = char_lengths.to(chars.device)
        mask = padding_mask(char_lengths, chars.shape[1])  # (M, C)
        e = self.char_embedding(chars.masked_fill(~mask, self.config.char_pad_id))  # (M, C, Ec)
        _, finals = run_layers(self.char_layers, self.drop(e), mask, char_lengths, 0.0, self.training)
        return finals[-1]  # (M, 2Hc)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
