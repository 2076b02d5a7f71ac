"""What sampling and beam search drive, and how a language model's prime is read.

A ``DecoderStep`` is anything with ``start`` (set up N rows from a model state),
``step`` (feed N tokens, get the logits of the next ones) and ``reorder`` (row i takes
the state of row index[i], for beam search), plus its ``device`` and ``vocab_size``.
``step.StepRunner`` is the language model's (and ``charrnn.export.engine.OnnxStep`` its
ONNX Runtime form); the sequence-to-sequence decoder and the conditioned generator supply
their own, and the same sampling and beam search drive them all.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..models.cells import State
from ..models.lm import RNNLanguageModel


class DecoderStep(Protocol):
    device: torch.device

    @property
    def vocab_size(self) -> int: ...

    def start(self, state, n: int) -> None: ...

    def step(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def reorder(self, index: torch.Tensor) -> None: ...


def read_prime(model: RNNLanguageModel, prime: torch.Tensor, start_id: int) -> tuple[torch.Tensor, State | None, int]:
    """Read the prime (all but its last token) with the model's own forward pass, in one
    call; return the prime ids, the state and the token the step loop is fed first."""
    device = next(model.parameters()).device
    prime = prime.to(device=device, dtype=torch.long).view(-1)
    if prime.numel() == 0:
        prime = torch.tensor([start_id], device=device)
    state = None
    if prime.numel() > 1:
        _, state = model(prime[:-1].view(1, -1))
    return prime, state, int(prime[-1])
