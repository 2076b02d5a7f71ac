"""Decoding an encoder-decoder: many sources at once, through the shared engine.

``Seq2SeqStep`` is the decoder as a ``DecoderStep``: the rows are ``group`` rows per
source (the beams, or the samples), laid out source by source, so that attention reads
each source's memory once for all its rows (see ``models.seq2seq.Seq2Seq.attend``).
Greedy decoding and sampling run ``sample.sample_steps`` over it, beam search
``beam.batch_beam_steps``; every row starts from SOS and ends at EOS or at its source's
length limit.

``EnsembleStep`` decodes with several models at once (the mean of their probabilities).
``translate`` is the entry point: sources as id lists in, for each source its outputs
(the n best, or the samples) as ``Generation``s, in input order. Sources are decoded in
batches of similar length (sorted), so little is padded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch

from ..config import SampleConfig
from ..models.cells import State, select_rows
from ..models.seq2seq import Memory, Seq2Seq
from ..runtime import autocast
from .beam import batch_beam_steps
from .sample import sample_steps
from .text import Generation, MakeDetokenizer

EVAL_BATCH = 256  # sources per decoding batch


class Seq2SeqStep:
    """The decoder of a Seq2Seq model, ``group`` rows per source; tokens (R,) -> logits (R, V)."""

    def __init__(self, model: Seq2Seq, memory: Memory, state: State, group: int, dtype: torch.dtype | None = None):
        self.model, self.group, self.dtype = model, group, dtype
        self.device = memory.values.device
        self.memory = memory
        self.state: State = _repeat(state, group)
        rows = memory.values.shape[0] * group
        self.feed = model.initial_feed(rows, memory.values)

    @property
    def vocab_size(self) -> int:
        return self.model.config.tgt_vocab_size

    def start(self, state, n: int) -> None:  # the state is set at construction
        pass

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.dtype):
            logits, self.state, self.feed, _ = self.model.step(self.memory, self.state, self.feed, tokens, self.group)
        return logits

    def reorder(self, index: torch.Tensor) -> None:
        """Row i takes the state of row index[i]; the rows of a source stay its own."""
        self.state = select_rows(self.state, index)
        if self.feed is not None:
            self.feed = self.feed.index_select(0, index)

    def keep_sources(self, positions: torch.Tensor) -> None:
        """Keep the memory of the sources at ``positions`` (after ``reorder`` kept their rows)."""
        self.memory = self.memory.select(positions)


class EnsembleStep:
    """Several models' decoders over the same sources as one step: the log of the mean of
    their next-token probabilities (ensemble decoding, as OpenNMT and fairseq average)."""

    def __init__(self, steps: list[Seq2SeqStep]):
        self.steps = steps
        self.device = steps[0].device
        self.log_n = math.log(len(steps))

    @property
    def vocab_size(self) -> int:
        return self.steps[0].vocab_size

    def start(self, state, n: int) -> None:
        pass

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        logps = [torch.log_softmax(s.step(tokens).float(), dim=-1) for s in self.steps]  # each (R, V)
        return torch.logsumexp(torch.stack(logps), dim=0) - self.log_n

    def reorder(self, index: torch.Tensor) -> None:
        for s in self.steps:
            s.reorder(index)

    def keep_sources(self, positions: torch.Tensor) -> None:
        for s in self.steps:
            s.keep_sources(positions)


def _repeat(state: State, group: int) -> State:
    if group == 1:
        return state
    if isinstance(state, tuple):
        return tuple(s.repeat_interleave(group, dim=1) for s in state)
    return state.repeat_interleave(group, dim=1)


def length_limit(source_len: int, ratio: float, extra: int) -> int:
    """The most output tokens (EOS not counted) for a source of ``source_len`` tokens."""
    return max(1, int(source_len * ratio) + extra)


@torch.inference_mode()
def translate(model: Seq2Seq | Sequence[Seq2Seq], sources: list[list[int]], cfg: SampleConfig, make: MakeDetokenizer,
              banned: Iterable[int] = (), limit: Callable[[int], int] | None = None,
              batch_size: int = EVAL_BATCH, dtype: torch.dtype | None = None) -> list[list[Generation]]:
    """For each source (a non-empty id list) its outputs, in input order: the
    ``cfg.num_return`` best of a beam search (``cfg.beam``), or ``cfg.num_samples``
    samples (greedy when ``cfg.greedy``). ``limit(source_len)`` is the most tokens of an
    output, EOS not counted (default: ``cfg.max_tokens``). Several models (the same
    vocabularies) decode as an ensemble: the mean of their probabilities."""
    models = [model] if isinstance(model, Seq2Seq) else list(model)
    c = models[0].config
    if any((m.config.src_vocab_size, m.config.tgt_vocab_size) != (c.src_vocab_size, c.tgt_vocab_size)
           for m in models):
        raise ValueError("an ensemble needs models of the same source and target vocabularies")
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        device = next(models[0].parameters()).device
        banned = sorted(set(banned) | {c.tgt_pad_id, c.sos_id})
        out: list[list[Generation]] = [[] for _ in sources]
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        group = cfg.beam or cfg.num_samples
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            seqs = [sources[i] for i in rows]
            lengths = torch.tensor([len(s) for s in seqs])
            src = torch.full((len(seqs), int(lengths.max())), c.src_pad_id, dtype=torch.long)
            for r, s in enumerate(seqs):
                src[r, : len(s)] = torch.as_tensor(s, dtype=torch.long)
            steps = []
            for m in models:
                with autocast(device, dtype):
                    memory, state = m.encode(src.to(device), lengths)
                steps.append(Seq2SeqStep(m, memory, state, group, dtype))
            runner = steps[0] if len(steps) == 1 else EnsembleStep(steps)
            limits = [limit(len(s)) if limit is not None else cfg.max_tokens for s in seqs]
            if cfg.beam:
                results = batch_beam_steps(runner, len(seqs), c.sos_id, cfg, make, banned, c.eos_id, limits)
            else:
                gen = sample_steps(runner, [], c.sos_id, cfg, make, banned, end_id=c.eos_id,
                                   limits=[n for n in limits for _ in range(group)], rows=len(seqs) * group)
                while True:
                    try:
                        next(gen)
                    except StopIteration as end:
                        flat = end.value
                        break
                results = [flat[r * group : (r + 1) * group] for r in range(len(seqs))]
            for i, res in zip(rows, results):
                out[i] = res
        return out
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
