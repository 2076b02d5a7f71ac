"""Generating from a label-conditioned model, through the shared engine.

``ConditionalStep`` is the generator as a ``DecoderStep``: R rows, each with its label
vector and state. Sampling and greedy decoding run ``sample.sample_steps`` over it, beam
search ``beam.batch_beam_steps`` (one "source": the label); every row starts after SOS
(and the prime, read in one forward pass) and ends at EOS or at its length limit.

``draw`` keeps drawing until it has N samples that pass a test (no two alike, none a
copy of a training text), at most ``max_draws`` in all; sample i of all the draws uses
seed + i, so a draw is reproducible with a seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from ..config import SampleConfig
from ..models.cells import State, select_rows
from ..models.conditional import ConditionalGenerator
from ..runtime import autocast
from .beam import batch_beam_steps
from .sample import sample_steps
from .text import Generation, MakeDetokenizer


class ConditionalStep:
    """R rows of a ConditionalGenerator: tokens (R,) -> logits (R, V)."""

    def __init__(self, model: ConditionalGenerator, label_vec: torch.Tensor, state: State,
                 dtype: torch.dtype | None = None):
        self.model, self.dtype = model, dtype
        self.device = label_vec.device
        self.label_vec, self.state = label_vec, state  # (R, D); (L, R, H) or a pair of them

    @property
    def vocab_size(self) -> int:
        return self.model.config.vocab_size

    def start(self, state, n: int) -> None:  # the state is set at construction
        pass

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.dtype):
            logits, self.state = self.model.step(tokens, self.label_vec, self.state)
        return logits

    def reorder(self, index: torch.Tensor) -> None:
        """Row i takes the state (and label) of row index[i]."""
        self.state = select_rows(self.state, index)
        self.label_vec = self.label_vec.index_select(0, index)

    def keep_sources(self, positions: torch.Tensor) -> None:
        """Nothing to do: a row's label travels with it in ``reorder``."""


def start(model: ConditionalGenerator, label: int, rows: int, prime: Sequence[int],
          dtype: torch.dtype | None = None) -> tuple[ConditionalStep, int]:
    """The step for ``rows`` rows of ``label`` after SOS and ``prime`` (read in one
    forward pass), and the token to feed first (the prime's last, or SOS)."""
    c = model.config
    device = model.embedding.weight.device
    labels = torch.tensor([label], device=device)
    with autocast(device, dtype):
        lab = model.label_embedding(labels)  # (1, D)
        state = model.initial_state(lab)
        first = c.sos_id
        if prime:
            _, state = model(torch.tensor([[c.sos_id, *prime[:-1]]], device=device), labels, state)
            first = int(prime[-1])
    if isinstance(state, tuple):
        state = tuple(s.expand(-1, rows, -1).contiguous() for s in state)
    else:
        state = state.expand(-1, rows, -1).contiguous()
    return ConditionalStep(model, lab.expand(rows, -1).contiguous(), state, dtype), first


@torch.inference_mode()
def generate(model: ConditionalGenerator, label: int, cfg: SampleConfig, make: MakeDetokenizer,
             banned: Iterable[int] = (), prime: Sequence[int] = (), limit: int | None = None,
             dtype: torch.dtype | None = None) -> list[Generation]:
    """``cfg.num_samples`` samples of ``label`` (greedy when ``cfg.greedy``), or the
    ``cfg.num_return`` best of a beam search (``cfg.beam``), each continuing ``prime``
    (token ids; its text is not in the output). ``limit``: the most tokens of an output,
    EOS not counted (default ``cfg.max_tokens``)."""
    c = model.config
    limit = cfg.max_tokens if limit is None else limit
    if limit <= 0:
        return [Generation("", [], 0.0, "length") for _ in range(cfg.num_return if cfg.beam else cfg.num_samples)]
    banned = sorted(set(banned) | {c.pad_id, c.sos_id})
    was_training = model.training
    model.eval()
    try:
        if cfg.beam:
            runner, first = start(model, label, cfg.beam, prime, dtype)
            return batch_beam_steps(runner, 1, first, cfg, make, banned, c.eos_id, [limit])[0]
        n = cfg.num_samples
        runner, first = start(model, label, n, prime, dtype)
        gen = sample_steps(runner, list(prime), first, cfg, make, banned, end_id=c.eos_id, limits=[limit] * n, rows=n)
        while True:
            try:
                next(gen)
            except StopIteration as end:
                return end.value
    finally:
        model.train(was_training)


@dataclass
class Draw:
    """What ``draw`` found: the generations, how many it drew, and whether it found all."""

    generations: list[Generation]
    draws: int
    complete: bool


def draw(model: ConditionalGenerator, label: int, cfg: SampleConfig, make: MakeDetokenizer, n: int,
         banned: Iterable[int] = (), prime: Sequence[int] = (), limit: int | None = None, unique: bool = False,
         accept: Callable[[str], bool] | None = None, max_draws: int | None = None,
         dtype: torch.dtype | None = None) -> Draw:
    """``n`` generations of ``label`` whose texts pass ``accept`` (and are all different
    with ``unique``), drawn in batches until found or ``max_draws`` (default: 20 n, at
    least 100) have been drawn. Beam search draws once: its ``cfg.beam`` hypotheses,
    best first, of which the first ``n`` that pass are kept."""
    if not unique and accept is None:
        cfg = dataclasses.replace(cfg, num_return=n) if cfg.beam else dataclasses.replace(cfg, num_samples=n)
        gens = generate(model, label, cfg, make, banned, prime, limit, dtype)
        return Draw(gens, len(gens), True)
    cap = max_draws if max_draws is not None else max(20 * n, 100)
    kept: list[Generation] = []
    seen: set[str] = set()

    def take(gens: list[Generation]) -> None:
        for g in gens:
            if len(kept) < n and (not unique or g.text not in seen) and (accept is None or accept(g.text)):
                kept.append(g)
                seen.add(g.text)

    if cfg.beam:
        take(generate(model, label, dataclasses.replace(cfg, num_return=cfg.beam), make, banned, prime, limit, dtype))
        return Draw(kept, cfg.beam, len(kept) == n)
    drawn = 0
    while len(kept) < n and drawn < cap:
        rows = min(cap - drawn, max(2 * (n - len(kept)), 16))
        seed = None if cfg.seed is None else cfg.seed + drawn
        take(generate(model, label, dataclasses.replace(cfg, num_samples=rows, seed=seed), make, banned, prime,
                      limit, dtype))
        drawn += rows
    return Draw(kept, drawn, len(kept) == n)
