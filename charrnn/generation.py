"""Text generation on token ids: greedy decoding and temperature / top-k / top-p sampling.

Generation runs the model one token at a time with the recurrent state carried, under
``torch.inference_mode``; the prime is read in one forward call. Tokens are yielded as
they are chosen so that a caller can stream them.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import torch

from .config import SampleConfig
from .model import RNNLanguageModel, State


def filter_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Scale by temperature and mask (to -inf) what top-k and top-p exclude. logits: (N, V).

    top-p keeps the smallest set of most likely tokens whose probability mass reaches p
    (a token is kept when the mass of the tokens ranked above it is still below p).
    """
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = mass_before >= top_p
        drop_sorted[..., 0] = False  # the most likely token always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator seeded with ``seed``, or from the OS when no seed is given."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    return gen


@torch.inference_mode()
def generate(
    model: RNNLanguageModel,
    prime: torch.Tensor,
    config: SampleConfig,
    *,
    start_id: int,
    banned: Iterable[int] = (),
) -> Iterator[int]:
    """Yield ``config.length`` token ids that follow ``prime`` (1-D ids, may be empty).

    With an empty prime the model starts from ``start_id`` (which is not yielded).
    ``banned`` ids (e.g. the unknown token) are never produced.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        prime = prime.to(device=device, dtype=torch.long).view(-1)
        if prime.numel() == 0:
            prime = torch.tensor([start_id], device=device)
        state: State | None = None
        if prime.numel() > 1:
            _, state = model(prime[:-1].view(1, -1))
        token = prime[-1:].view(1, 1).clone()  # reused every step: (N=1, T=1)
        ban = torch.tensor(sorted(set(banned)), dtype=torch.long, device=device)
        gen = make_generator(config.seed, device)
        for _ in range(config.length):
            logits, state = model(token, state)
            logits = logits[:, -1, :]  # (1, V)
            if ban.numel():
                logits.index_fill_(1, ban, float("-inf"))
            if config.greedy:
                nxt = torch.argmax(logits, dim=-1, keepdim=True)
            else:
                logits = filter_logits(logits, config.temperature, config.top_k, config.top_p)
                probs = torch.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=gen)
            token.copy_(nxt)
            yield int(nxt)
    finally:
        model.train(was_training)
