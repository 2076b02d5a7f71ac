"""The Python API of a trained encoder-decoder (and of an ensemble of them)."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..checkpoint import Checkpoint, load_checkpoint
from ..config import SampleConfig
from ..decoding import Generation
from ..errors import CheckpointError, ConfigError
from ..tasks.seq2seq import (decoder_target, encode_side, output_text, reading_order, sequence_logprobs,
                             teacher_forced_nll)
from ..tasks.perplexity import EvalResult
from ..tasks.seq2seq_metrics import Seq2SeqReport, seq2seq_report
from ..tasks.specs import state_of
from ..tasks.specs.seq2seq import Seq2SeqState
from ..tasks.registry import get_task
from .base import Model


class Seq2SeqModel(Model):
    """A trained encoder-decoder with its source and target tokenizers."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto", ensemble: list[Checkpoint] = ()):
        """``ensemble``: more checkpoints with the same tokenizers (e.g. runs with other
        seeds); decoding then averages the probabilities of all the models."""
        super().__init__(checkpoint, device)
        self.source, self.target = self.tokenizer.source, self.tokenizer.target  # a PairTokenizer's sides
        self.model = checkpoint.build_model(self.device)
        self.models = [self.model]
        state = state_of(Seq2SeqState, checkpoint)
        ratios = [_ratio(state)]
        # A right-to-left model (--reverse-target) writes its outputs last token first.
        self.reverse = state.reverse_target
        for other in ensemble:
            if other.task != checkpoint.task:
                raise CheckpointError(f"{other.path}: a {other.task} run cannot join an encoder-decoder ensemble")
            if not _same_tokenizer(other.tokenizer, self.tokenizer):
                raise CheckpointError(f"{other.path}: its tokenizers differ from those of {checkpoint.path}: an "
                                      f"ensemble needs runs on the same data with the same tokenizer options")
            if state_of(Seq2SeqState, other).reverse_target != self.reverse:
                raise CheckpointError(f"{other.path}: it writes its outputs in the other direction than "
                                      f"{checkpoint.path} (--reverse-target): an ensemble decodes in one direction "
                                      f"(use the other as --rescore)")
            self.models.append(other.build_model(self.device))
            ratios.append(_ratio(state_of(Seq2SeqState, other)))
        self.length_ratio = max(ratios)

    def encode(self, sources: list[str]) -> list[list[int]]:
        """Source ids of each text (an empty source becomes one padding token)."""
        pad = self.model.config.src_pad_id
        return [ids if ids else [pad] for ids in encode_side(self.source, sources)]

    def unknown_in(self, source: str) -> int:
        """Source tokens the source tokenizer does not know (read as its unknown id)."""
        unk = self.source.unk_id
        return 0 if unk is None else sum(ids.count(unk) for ids in encode_side(self.source, [source]))

    def limit(self, source_len: int) -> int:
        """The most output tokens for a source of ``source_len`` tokens."""
        from ..decoding.seq2seq import length_limit
        from ..tasks.seq2seq import LENGTH_EXTRA

        return length_limit(source_len, self.length_ratio, LENGTH_EXTRA)

    def generate(self, sources: list[str], config: SampleConfig | None = None, batch_size: int = 256,
                 **options: Any) -> list[list[Generation]]:
        """For each source, its outputs as Generations (text, tokens, log-probability,
        finish reason, beam score): the ``num_return`` best of a beam search (``beam``),
        or ``num_samples`` samples, or the greedy output (``greedy=True``). Options are
        SampleConfig fields; ``length`` caps every output (default: relative to the source)."""
        from ..decoding.seq2seq import translate

        config = config or SampleConfig(**options)
        if not sources:
            return []
        limit = None if config.length is not None else self.limit
        outs = translate(self.models, self.encode(sources), config, self.target.detokenizer, self.target.banned_ids,
                         limit=limit, batch_size=batch_size)
        if self.reverse:
            outs = reading_order(outs, self.target.detokenizer)
        for gens in outs:
            for g in gens:
                g.text = output_text(self.target.kind, g.text)
        return outs

    def predict(self, sources: list[str], beam: int = 0, n_best: int = 1, length_penalty: float = 1.0,
                batch_size: int = 256, rescore: Seq2SeqModel | None = None, rescore_weight: float = 0.5,
                rescore_candidates: str = "both", **options: Any) -> list[list[tuple[str, float]]]:
        """For each source, its ``n_best`` outputs with their scores, best first: greedy
        by default (scores are log-probabilities), beam search with ``beam`` > 0 (scores
        are log-probabilities / length ** length_penalty), or samples with
        ``temperature=...`` (and other SampleConfig options).

        ``rescore``: another model (typically right to left, ``--reverse-target``) that
        re-ranks the ``beam`` best hypotheses of each source: a hypothesis's log-probability
        becomes (1 - rescore_weight) x this model's + rescore_weight x ``rescore``'s
        (teacher forced), divided by length ** length_penalty as in the beam.
        The candidates are this model's ``beam`` best and ``rescore``'s own (each scored
        by both models), so that an output only the other direction found can win;
        ``rescore_candidates="own"`` keeps to this model's beam."""
        if n_best < 1:
            raise ConfigError(f"n_best must be >= 1, not {n_best}")
        if beam and n_best > beam:
            raise ConfigError(f"n_best ({n_best}) cannot exceed the beam ({beam})")
        if rescore is not None:
            if not beam or options:
                raise ConfigError("rescoring re-ranks a beam search's hypotheses: it needs beam=K (and no sampling)")
            if not 0.0 <= rescore_weight <= 1.0:
                raise ConfigError(f"the rescoring weight must be between 0 and 1, not {rescore_weight}")
            if not _same_tokenizer(rescore.tokenizer, self.tokenizer):
                raise CheckpointError(f"{rescore.checkpoint.path}: its tokenizers differ from those of "
                                      f"{self.checkpoint.path}: rescoring needs runs on the same data with the same "
                                      f"tokenizer options")
            if rescore_candidates not in ("own", "both"):
                raise ConfigError(f"rescore_candidates is 'own' or 'both', not {rescore_candidates!r}")
            config = SampleConfig(beam=beam, num_return=beam, length_penalty=length_penalty)
            outs = self.generate(sources, config, batch_size)
            others = rescore.generate(sources, config, batch_size) if rescore_candidates == "both" else None
            return self._rescored(sources, outs, others, rescore, rescore_weight, length_penalty, n_best, batch_size)
        if beam:
            config = SampleConfig(beam=beam, num_return=n_best, length_penalty=length_penalty, **options)
        elif options:
            config = SampleConfig(num_samples=n_best, **options)
        else:
            if n_best > 1:
                raise ConfigError("n_best > 1 needs a beam search (beam=K) or sampling (temperature=...)")
            config = SampleConfig(greedy=True)
        outs = self.generate(sources, config, batch_size)
        return [[(g.text, g.score if g.score is not None else g.logprob) for g in gens] for gens in outs]

    def evaluate(self, sources: list[str], references: list[list[str]], beam: int = 0,
                 length_penalty: float = 1.0, batch_size: int = 256, rescore: Seq2SeqModel | None = None,
                 rescore_weight: float = 0.5, rescore_candidates: str = "both") -> Seq2SeqReport:
        """Exact-match accuracy (any reference), WER, token error rate, BLEU and chrF of
        the outputs for distinct ``sources``, each with its references."""
        outs = self.predict(sources, beam=beam, length_penalty=length_penalty, batch_size=batch_size,
                            rescore=rescore, rescore_weight=rescore_weight, rescore_candidates=rescore_candidates)
        symbols = str.split if self.target.kind in ("space", "word") else list
        return seq2seq_report([o[0][0] for o in outs], references, symbols)

    def perplexity(self, sources: list[str], targets: list[str]) -> EvalResult:
        """Teacher-forced loss (nats per target token, EOS included), perplexity and bits per
        character (a target's characters and one for its end) of ``targets`` given ``sources``."""
        c = self.model.config
        src = self.encode(sources)
        tgt = [decoder_target(ids, c, self.reverse) for ids in encode_side(self.target, targets)]
        total, count = teacher_forced_nll(self.model, src, tgt, self.device)
        return EvalResult(total, count, sum(len(t) + 1 for t in targets), 0)

    def score(self, sources: list[str], targets: list[str], batch_size: int = 256) -> list[float]:
        """The log-probability (natural log, EOS included) of each target given its source,
        teacher forced; for an ensemble, at each step the log of the models' mean
        probability, as ensemble decoding scores it."""
        c = self.model.config
        tgt = [decoder_target(ids, c, self.reverse) for ids in encode_side(self.target, targets)]
        return sequence_logprobs(self.models, self.encode(sources), tgt, self.device, batch_size=batch_size)

    def _rescored(self, sources: list[str], outs: list[list[Generation]], others: list[list[Generation]] | None,
                  rescore: Seq2SeqModel, weight: float, length_penalty: float, n_best: int,
                  batch_size: int) -> list[list[tuple[str, float]]]:
        """Each source's hypotheses (``outs``, and ``others`` found by ``rescore``) re-ranked
        by their log-probability under this model mixed with ``rescore``'s."""
        # (source index, text, own log-probability or None, tokens incl. EOS), each text once per source
        cands: list[tuple[int, str, float | None, int]] = []
        for i, gens in enumerate(outs):
            seen = set()
            pool = [(g, g.logprob) for g in gens]  # the beam's own sums; the other beam's are recomputed below
            pool += [(g, None) for g in (others[i] if others is not None else [])]
            for g, own in pool:
                if g.text not in seen:
                    seen.add(g.text)
                    cands.append((i, g.text, own, len(g.tokens) + (g.finish_reason == "end")))
        if not cands:
            return [[] for _ in sources]
        srcs, texts = [sources[c[0]] for c in cands], [c[1] for c in cands]
        other = rescore.score(srcs, texts, batch_size)
        missing = [k for k, c in enumerate(cands) if c[2] is None]
        mine = dict(zip(missing, self.score([srcs[k] for k in missing], [texts[k] for k in missing], batch_size)))
        ranked: list[list[tuple[str, float]]] = [[] for _ in sources]
        for k, ((i, text, own, length), lp) in enumerate(zip(cands, other)):
            mixed = (1.0 - weight) * (own if own is not None else mine[k]) + weight * lp
            ranked[i].append((text, mixed / max(length, 1) ** length_penalty))
        return [sorted(r, key=lambda t: t[1], reverse=True)[:n_best] for r in ranked]

    def evaluate_file(self, path: str, beam: int = 0, **options: Any) -> Seq2SeqReport:
        """``evaluate`` on a file of source<TAB>target pairs (a source on several lines has
        several references)."""
        from ..text.pairs import group_references, read_pairs

        sources, references = group_references(read_pairs(path))
        return self.evaluate(sources, references, beam=beam, **options)

    def prediction_record(self, result: list[tuple[str, float]]) -> dict[str, Any]:
        return {"output": result[0][0], "score": result[0][1],
                "n_best": [{"output": o, "score": s} for o, s in result]}

    def prediction_text(self, result: list[tuple[str, float]]) -> str:
        """The output; with several (n_best), one per line, each followed by its score."""
        return result[0][0] if len(result) == 1 else "\n".join(f"{o}\t{s:.4f}" for o, s in result)


def _ratio(state: Seq2SeqState) -> float:
    return float(state.length_ratio) if state.length_ratio is not None else 2.0


def _same_tokenizer(a, b) -> bool:
    (meta_a, tensors_a), (meta_b, tensors_b) = a.state(), b.state()
    return meta_a == meta_b and tensors_a.keys() == tensors_b.keys() and all(
        torch.equal(tensors_a[k], tensors_b[k]) for k in tensors_a)


def load_ensemble(paths: list[str | os.PathLike], device: str = "auto", latest: bool = False) -> Seq2SeqModel:
    """Several encoder-decoder runs (same data and tokenizers, e.g. other seeds) as one
    model whose decoding averages their probabilities."""
    if not paths:
        raise ConfigError("an ensemble needs at least one run")
    cks = [load_checkpoint(p, latest=latest) for p in paths]
    if not issubclass(get_task(cks[0].task).load("api"), Seq2SeqModel):
        raise CheckpointError(f"{cks[0].path}: ensembles are for encoder-decoders (seq2seq), not a {cks[0].task} run")
    return Seq2SeqModel(cks[0], device=device, ensemble=cks[1:])
