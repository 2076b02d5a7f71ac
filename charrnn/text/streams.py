"""The train/validation split and the truncated-BPTT stream layout of the language model.

Token ids live in one compact integer tensor. Training views it as B parallel,
contiguous streams and walks them in consecutive windows of T steps, so the hidden state
left by one window is the right starting state for the next:

    ids      a b c d e f g h i j k l m      13 tokens, B = 3 streams -> S = 4 steps each
    stream 0 a b c d                        (the tail "m" that does not fill a stream
    stream 1 e f g h                         is dropped)
    stream 2 i j k l

    T = 2:   window 0  x = [a b | e f | i j]   y = [b c | f g | j k]
             window 1  x = [c   | g   | k  ]   y = [d   | h   | l  ]

Windows are views into the (B, S) tensor; nothing is copied until the step moves them to
the model's device and integer type.
"""


from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import CorpusError, CorpusTooSmallError

def split_point(chars: int, val_fraction: float, val_max_chars: int | None = None) -> int:
    """How many of ``chars`` characters are training text: all but the last
    ``val_fraction`` of them, at most ``val_max_chars`` (and at least 2 on each side)."""
    n_val = max(int(round(chars * val_fraction)), 2)
    if val_max_chars is not None:
        n_val = max(min(n_val, val_max_chars), 2)
    if chars - n_val < 2:
        raise CorpusError(
            f"the corpus has only {chars} character(s): too few to split into training "
            f"and validation text"
        )
    return chars - n_val


def split_text(text: str, val_fraction: float, val_max_chars: int | None = None) -> tuple[str, str]:
    """Split off the last ``val_fraction`` of the characters (at most ``val_max_chars``)
    as validation text."""
    n = split_point(len(text), val_fraction, val_max_chars)
    return text[:n], text[n:]


def compact(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Store ids in the smallest signed integer type that holds the vocabulary."""
    dtype = torch.int16 if vocab_size <= 2**15 else torch.int32
    return ids.to(dtype)


def stream_layout(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """View a 1-D id tensor as (B, S): B contiguous streams, the ragged tail dropped."""
    steps = ids.numel() // batch_size
    return ids[: batch_size * steps].view(batch_size, steps)


@dataclass
class StreamBatches:
    """Consecutive (x, y) windows over the stream layout of a training split.

    ``data`` is (B, S); an epoch is ceil((S - 1) / T) windows, the last one possibly
    shorter than T. ``position`` is the index of the next window, so a run can stop and
    resume mid-epoch.
    """

    data: torch.Tensor
    bptt: int
    epoch: int = 0
    position: int = 0

    @classmethod
    def build(cls, ids: torch.Tensor, batch_size: int, bptt: int, split: str = "training") -> "StreamBatches":
        needed = batch_size * (bptt + 1)
        if ids.numel() < needed:
            raise CorpusTooSmallError(split, ids.numel(), needed, batch_size, bptt)
        return cls(stream_layout(ids, batch_size), bptt)

    @property
    def batch_size(self) -> int:
        return self.data.shape[0]

    @property
    def windows_per_epoch(self) -> int:
        return math.ceil((self.data.shape[1] - 1) / self.bptt)

    def window(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window ``index`` of an epoch: x is (N, T) and y is x shifted one step left."""
        t = index * self.bptt
        end = min(t + self.bptt, self.data.shape[1] - 1)
        return self.data[:, t:end], self.data[:, t + 1 : end + 1]

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The next window and whether it starts an epoch (the carried state must reset)."""
        if self.position >= self.windows_per_epoch:
            self.epoch += 1
            self.position = 0
        starts_epoch = self.position == 0
        x, y = self.window(self.position)
        self.position += 1
        return x, y, starts_epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of windows (for tests and evaluation; training uses ``next``)."""
        for i in range(self.windows_per_epoch):
            yield self.window(i)
