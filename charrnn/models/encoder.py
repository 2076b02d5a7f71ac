"""A stack of recurrent layers over padded batches, exact for every sequence in them.

Shared by the classifier and the sequence-to-sequence encoder. Each layer has one
single-layer module per direction (``layers[k][0]`` reads forwards, ``layers[k][1]``
reads each sequence reversed), and a layer's input is the previous layer's outputs of
both directions, as in ``nn.LSTM(bidirectional=True)``.

Padding never changes a result, without packed sequences (on the CPU a packed LSTM call
measured 4x slower than a padded one on length-bucketed batches):

- the forward direction runs over the padded batch: padding comes after each
  sequence's real tokens, so the outputs at the real positions never see it;
- the backward direction runs over each sequence reversed within its own length
  (real tokens reversed first, padding after), and its outputs are put back in order.

The final hidden state of each layer and direction is read from the outputs at the
real positions (forward: the last real token; backward: the first), so it is exact too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cells import make_rnn


def make_layers(cell: str, input_size: int, hidden_size: int, layers: int, directions: int) -> nn.ModuleList:
    """``layers`` x ``directions`` single-layer modules of ``cell``."""
    sizes = [input_size] + [hidden_size * directions] * (layers - 1)
    return nn.ModuleList(
        nn.ModuleList(make_rnn(cell, size, hidden_size, 1, 0.0) for _ in range(directions)) for size in sizes)


def padding_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """(N, T) True at the real positions of sequences of ``lengths`` (N,)."""
    return torch.arange(t, device=lengths.device) < lengths[:, None]


def run_layers(layers: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor,
               dropout: float, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, T, C), mask (N, T), lengths (N,) on x's device -> the top layer's outputs
    (N, T, D) and every layer's final hidden state (L, N, D), D = H * directions (the
    forward direction's h at the last real token, the backward one's at the first).

    ``dropout`` applies between layers (as ``nn.LSTM``'s does), not to x or the outputs.
    """
    t = x.shape[1]
    steps = torch.arange(t, device=x.device)
    # Position t of row i reversed within its length: L_i - 1 - t for the real tokens,
    # the padding left where it is. Applying it twice gives the original order.
    flip = torch.where(mask, lengths[:, None] - 1 - steps, steps)  # (N, T)
    last = (lengths - 1).view(-1, 1, 1)  # (N, 1, 1)
    finals = []
    for k, directions in enumerate(layers):
        if k:
            x = F.dropout(x, dropout, training)
        forward = directions[0](x)[0]  # (N, T, H)
        outs = [forward]
        ends = [forward.gather(1, last.expand(-1, 1, forward.shape[-1])).squeeze(1)]  # (N, H)
        if len(directions) == 2:
            backward = take(directions[1](take(x, flip))[0], flip)  # (N, T, H), back in order
            outs.append(backward)
            ends.append(backward[:, 0])
        x = torch.cat(outs, dim=-1) if len(outs) == 2 else forward  # (N, T, D)
        finals.append(torch.cat(ends, dim=-1) if len(ends) == 2 else ends[0])  # (N, D)
    return x, torch.stack(finals)


def take(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x (N, T, C) with row i's time steps taken at positions[i] (N, T)."""
    return x.gather(1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
