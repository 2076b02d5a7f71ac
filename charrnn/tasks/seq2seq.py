"""Sequence to sequence (many-to-many, unaligned): a source sequence in, a target out.

Data: ``source<TAB>target`` pairs (text/pairs.py); a source with several correct targets
appears on several lines. Validation reads a separate file or a random fraction of the
distinct sources (all lines of a source go to the same side, so no reference leaks).

Tokens: each side has its tokenizer (char, space, bpe, unigram, word), or both share one
(``shared``). The model's vocabularies add ids of their own after the tokenizer's:
source padding; target padding, SOS and EOS (task_configs.Seq2SeqConfig). A target is trained
as SOS y_1 .. y_m EOS: the decoder reads SOS y_1 .. y_m and predicts y_1 .. y_m EOS.

Loss: cross-entropy per target token (EOS included, padding ignored), the mean over the
target tokens of the whole batch; with several processes each takes a contiguous share
of the rows and scales its sum so that the mean over the processes is that mean.

Direction: with ``reverse_target`` the decoder writes each target last token first (a
right-to-left model, for rescoring a left-to-right model's n-best list); every output is
put back in reading order before anyone sees it (``reading_order``).

Validation: the teacher-forced loss, and greedy exact-match accuracy (any reference) and
token error rate on at most ``VAL_DECODE_MAX`` distinct sources; the best checkpoint is
the most accurate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SampleConfig, TrainConfig
from ..task_configs import Seq2SeqConfig
from ..decoding.beam import text_of_ids
from ..decoding.seq2seq import length_limit, translate
from ..decoding.text import Generation, MakeDetokenizer
from ..errors import ConfigError, CorpusError
from ..models.seq2seq import Seq2Seq
from ..runtime import autocast
from ..text.pairs import Pair, PairBatches, group_references, read_pairs
from ..text.symbols import PairTokenizer
from ..text.tokenizer import SUBWORD_KINDS, Tokenizer
from ..text.tokenizers import train_tokenizer
from .base import ExampleTask
from .seq2seq_metrics import seq2seq_report

EVAL_BATCH = 256  # pairs per forward pass when validating
VAL_DECODE_MAX = 2000  # distinct validation sources decoded at each evaluation
DEFAULT_MAX_LENGTH = 200  # tokens on either side; longer pairs are skipped (or refused)
LENGTH_EXTRA = 10  # output limit: source tokens x the longest training ratio, plus this


def side_text(kind: str, text: str) -> str:
    """What a tokenizer of ``kind`` reads for one side: SentencePiece kinds get a leading
    space, so that the first word is the same token as inside a sentence."""
    return " " + text if kind in SUBWORD_KINDS else text


def output_text(kind: str, text: str) -> str:
    """A decoded target without the leading space ``side_text`` gave it."""
    return text[1:] if kind in SUBWORD_KINDS and text.startswith(" ") else text


def encode_side(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    return tok.encode_lines([side_text(tok.kind, t) for t in texts])


@dataclass
class PairData:
    """Encoded training and validation pairs with their tokenizers."""

    train: list[Pair]
    val: list[Pair]
    tokenizer: PairTokenizer
    train_src: list[list[int]]
    train_tgt: list[list[int]]
    val_src: list[list[int]]
    val_tgt: list[list[int]]
    skipped: dict[str, int] = field(default_factory=dict)  # pairs over the length limit, per split
    unknown: int = 0  # source tokens of the validation pairs the source tokenizer does not know

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for split in (self.train, self.val):
            for p in split:
                h.update(json.dumps([p.source, p.target], ensure_ascii=False).encode())
            h.update(b"\x00split")
        return h.hexdigest()

    @property
    def length_ratio(self) -> float:
        """The longest target per source token in training (at least 1)."""
        return max([1.0] + [len(t) / len(s) for s, t in zip(self.train_src, self.train_tgt)])


def split_sources(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """A random ``fraction`` of the distinct sources (with all their lines) for validation."""
    sources = sorted({p.source for p in pairs})
    random.Random(f"seq2seq-split:{seed}").shuffle(sources)
    n_val = min(len(sources) - 1, max(1, round(len(sources) * fraction))) if fraction > 0 else 0
    held = set(sources[:n_val])
    return [p for p in pairs if p.source not in held], [p for p in pairs if p.source in held]


def train_pair_tokenizer(train: list[Pair], source_kind: str, target_kind: str, shared: bool,
                         vocab_size: int | None = None, source_normalize: str | None = None,
                         source: Tokenizer | None = None) -> PairTokenizer:
    """Tokenizers trained on the training pairs' sources and targets (one on both when
    shared); ``source_normalize``: the Unicode normal form the source side reads (char
    tokenizers; shared, both sides). A given ``source`` (a language model's, --init) is the
    source side as it is, and both sides when shared; only the target is trained then."""
    if source is not None:
        if shared:
            return PairTokenizer(source, source)
        tgt_text = _joined(target_kind, [side_text(target_kind, p.target) for p in train])
        return PairTokenizer(source, train_tokenizer(target_kind, tgt_text,
                                                     vocab_size if target_kind in SUBWORD_KINDS else None))
    # Lines for the SentencePiece kinds; a char vocabulary gets no newline it never reads.
    src_text = _joined(source_kind, [side_text(source_kind, p.source) for p in train])
    tgt_text = _joined(target_kind, [side_text(target_kind, p.target) for p in train])
    if shared:
        if source_kind != target_kind:
            raise ConfigError(f"--shared-vocab needs one tokenizer kind on both sides, not {source_kind} and "
                              f"{target_kind}")
        tok = train_tokenizer(source_kind, _joined(source_kind, [src_text, tgt_text]), vocab_size, source_normalize)
        return PairTokenizer(tok, tok)
    sizes = vocab_size if source_kind in SUBWORD_KINDS else None, vocab_size if target_kind in SUBWORD_KINDS else None
    return PairTokenizer(train_tokenizer(source_kind, src_text, sizes[0], source_normalize),
                         train_tokenizer(target_kind, tgt_text, sizes[1]))


def _joined(kind: str, texts: list[str]) -> str:
    return ("" if kind == "char" else "\n").join(texts)


def _encode_pairs(tok: PairTokenizer, pairs: list[Pair], name: str, max_length: int, strict: bool
                  ) -> tuple[list[Pair], list[list[int]], list[list[int]], int]:
    src = encode_side(tok.source, [p.source for p in pairs])
    tgt = encode_side(tok.target, [p.target for p in pairs])
    kept, ks, kt, skipped = [], [], [], 0
    for p, s, t in zip(pairs, src, tgt):
        if not s or not t:
            raise CorpusError(f"{name}:{p.line}: the {'source' if not s else 'target'} encodes to no tokens")
        if len(s) > max_length or len(t) > max_length:
            if strict:
                raise CorpusError(f"{name}:{p.line}: {max(len(s), len(t))} tokens, longer than --max-length "
                                  f"{max_length}")
            skipped += 1
            continue
        kept.append(p)
        ks.append(s)
        kt.append(t)
    return kept, ks, kt, skipped


def prepare_pairs(train_path: str | os.PathLike, val_path: str | os.PathLike | None, val_fraction: float, seed: int,
                  tokenizer: PairTokenizer | None = None, source_kind: str = "char", target_kind: str = "char",
                  shared: bool = False, vocab_size: int | None = None, max_length: int = DEFAULT_MAX_LENGTH,
                  strict: bool = False, source_normalize: str | None = None,
                  source_tokenizer: Tokenizer | None = None) -> PairData:
    """Read, split, tokenize (training the tokenizers unless given; ``source_tokenizer``: the
    source side's, given, see train_pair_tokenizer) and encode pairs."""
    train = read_pairs(train_path)
    if val_path is not None:
        val = read_pairs(val_path)
    else:
        train, val = split_sources(train, val_fraction, seed)
        if not val:
            raise CorpusError(f"{train_path}: too few distinct sources to set some aside for validation")
    tok = tokenizer or train_pair_tokenizer(train, source_kind, target_kind, shared, vocab_size, source_normalize,
                                            source_tokenizer)
    train, train_src, train_tgt, skip_train = _encode_pairs(tok, train, str(train_path), max_length, strict)
    val_name = str(val_path or train_path)
    val, val_src, val_tgt, skip_val = _encode_pairs(tok, val, val_name, max_length, strict)
    if not train:
        raise CorpusError(f"{train_path}: every pair is longer than --max-length {max_length}")
    if not val:
        raise CorpusError(f"{val_name}: every validation pair is longer than --max-length {max_length}")
    unk = tok.source.unk_id
    unknown = 0 if unk is None else sum(s.count(unk) for s in val_src)
    return PairData(train, val, tok, train_src, train_tgt, val_src, val_tgt, {"train": skip_train, "val": skip_val},
                    unknown)


class Seq2SeqTask(ExampleTask):
    name = "seq2seq"
    headline = "val_accuracy"
    best_key = "val_accuracy"
    higher_is_better = True
    rate_name = "pairs_per_sec"

    def __init__(self, data: PairData, model_config: Seq2SeqConfig, cfg: TrainConfig, teacher_forcing: float = 1.0,
                 max_length: int = DEFAULT_MAX_LENGTH, length_ratio: float | None = None, label_smoothing: float = 0.0,
                 reverse_target: bool = False):
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ConfigError(f"--teacher-forcing must be between 0 and 1, not {teacher_forcing}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"--label-smoothing must be at least 0 and below 1, not {label_smoothing}")
        self.data = data
        tok = data.tokenizer
        self.model_config = dataclasses.replace(model_config, src_vocab_size=tok.source.vocab_size + 1,
                                                tgt_vocab_size=tok.target.vocab_size + 3)
        c = self.model_config
        self.teacher_forcing, self.max_length, self.label_smoothing = teacher_forcing, max_length, label_smoothing
        self.reverse_target = reverse_target
        # The tokens a target can hold (all but padding and SOS): label smoothing spreads its mass over these.
        self.target_ids = torch.tensor([i for i in range(c.tgt_vocab_size) if i not in (c.tgt_pad_id, c.sos_id)])
        self.length_ratio = length_ratio if length_ratio is not None else data.length_ratio
        train_tgt = [decoder_target(t, c, reverse_target) for t in data.train_tgt]
        self.batches = PairBatches(data.train_src, train_tgt, cfg.batch_size, cfg.seed, c.src_pad_id, c.tgt_pad_id)
        self.val_tgt = [decoder_target(t, c, reverse_target) for t in data.val_tgt]
        self.val_sources, self.val_refs = group_references(data.val)
        self.val_sources, self.val_refs = self.val_sources[:VAL_DECODE_MAX], self.val_refs[:VAL_DECODE_MAX]
        self.val_source_ids = encode_side(tok.source, self.val_sources)
        self.val_size = len(data.val) + len(self.val_sources)

    def build_model(self, device: torch.device) -> nn.Module:
        self.model = Seq2Seq(self.model_config).to(device)
        return self.model

    def no_decay(self, model: nn.Module) -> list[nn.Parameter]:
        return [model.src_embedding.weight, model.tgt_embedding.weight]

    def limit(self, source_len: int) -> int:
        return length_limit(source_len, self.length_ratio, LENGTH_EXTRA)

    # ----------------------------------------------------------- stepping

    def loss(self, net: nn.Module, batch: Any, device: torch.device, dtype: torch.dtype | None) -> tuple[torch.Tensor, int]:
        (src, src_len, tgt, tgt_len), _ = batch
        rows, scale = self.rows(src.shape[0])
        total = float((tgt_len - 1).sum())  # predicted tokens of the whole batch
        s, sl, t, tl = src[rows], src_len[rows], tgt[rows], tgt_len[rows]
        s, t = s[:, : int(sl.max())], t[:, : int(tl.max())]  # this share's own padding only
        t = t.to(device)
        with autocast(device, dtype):
            logits = net(s.to(device), sl, t[:, :-1], self.teacher_forcing)  # (n, T-1, V)
        if self.label_smoothing:
            nll = smoothed_nll(logits, t[:, 1:], self.model_config.tgt_pad_id, self.target_ids.to(device),
                               self.label_smoothing)
        else:
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1),
                                  ignore_index=self.model_config.tgt_pad_id, reduction="sum")
        return nll * scale / total, len(sl) if scale else 0

    # ----------------------------------------------------------- reporting

    def validate(self, model: nn.Module, dtype: torch.dtype | None) -> dict[str, float]:
        device = next(model.parameters()).device
        loss, tokens = teacher_forced_nll(model, self.data.val_src, self.val_tgt, device, dtype)
        outs = translate(model, self.val_source_ids, SampleConfig(greedy=True), self.data.tokenizer.target.detokenizer,
                         banned=self.data.tokenizer.target.banned_ids, limit=self.limit, dtype=dtype)
        target = self.data.tokenizer.target
        if self.reverse_target:
            outs = reading_order(outs, target.detokenizer)
        preds = [output_text(target.kind, o[0].text) for o in outs]
        rep = seq2seq_report(preds, self.val_refs, _symbols(target.kind), with_bleu=False)
        return {"val_loss": loss / tokens, "val_accuracy": rep.accuracy, "val_ter": rep.ter}

    def start_info(self) -> dict[str, Any]:
        tok = self.data.tokenizer
        return {"train_pairs": len(self.data.train), "val_pairs": len(self.data.val),
                "source_tokenizer": tok.source.kind, "target_tokenizer": tok.target.kind,
                **({"source_normalize": tok.source.normalize} if getattr(tok.source, "normalize", None) else {}),
                **({"reverse_target": True} if self.reverse_target else {}),
                "source_vocab": tok.source.vocab_size, "target_vocab": tok.target.vocab_size, "shared_vocab": tok.shared,
                "skipped_long": self.data.skipped, "val_unknown": self.data.unknown}

    def summary(self, best: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
        return {"val_loss": best["val_loss"], "val_accuracy": best["val_accuracy"], "val_ter": best["val_ter"],
                "final_val_accuracy": last["val_accuracy"], "final_val_loss": last["val_loss"]}

    def checkpoint_parts(self) -> dict[str, Any]:
        state = {"teacher_forcing": self.teacher_forcing, "label_smoothing": self.label_smoothing,
                 "reverse_target": self.reverse_target,
                 "max_length": self.max_length,
                 "length_ratio": self.length_ratio, "skipped_long": self.data.skipped}
        return {"tokenizer": self.data.tokenizer, "task": self.name, "task_state": state}


def decoder_target(ids: list[int], config: Seq2SeqConfig, reverse: bool = False) -> list[int]:
    """What the decoder is trained to read and predict: SOS, the target's ids (last first
    when ``reverse``), EOS."""
    return [config.sos_id, *(ids[::-1] if reverse else ids), config.eos_id]


def reading_order(outs: list[list[Generation]], make: MakeDetokenizer) -> list[list[Generation]]:
    """A right-to-left model's outputs put back in reading order: tokens reversed, text
    rebuilt from them (log-probabilities and scores stay those of the model)."""
    return [[dataclasses.replace(g, tokens=g.tokens[::-1], text=text_of_ids(g.tokens[::-1], make)) for g in gens]
            for gens in outs]


def smoothed_nll(logits: torch.Tensor, gold: torch.Tensor, pad: int, allowed: torch.Tensor, eps: float) -> torch.Tensor:
    """Summed label-smoothed cross-entropy over the non-padding positions of ``gold``
    (n, T) given ``logits`` (n, T, V): (1 - eps) times the gold token's negative
    log-probability plus eps times the mean negative log-probability of the ``allowed``
    tokens (those a target can hold; padding and SOS get none of the mass, as in
    OpenNMT-py). Computed in fp32 whatever the logits' dtype."""
    keep = gold.reshape(-1) != pad
    logp = F.log_softmax(logits.reshape(-1, logits.shape[-1])[keep].float(), dim=-1)
    nll = -logp.gather(1, gold.reshape(-1)[keep].unsqueeze(1)).squeeze(1)
    spread = -logp.index_select(1, allowed).mean(dim=1)
    return ((1.0 - eps) * nll + eps * spread).sum()


def _symbols(kind: str):
    """How a target text splits into symbols for the token error rate."""
    return str.split if kind in ("space", "word") else list


def _teacher_forced_batches(src: list[list[int]], tgt: list[list[int]], c: Seq2SeqConfig, device: torch.device,
                            batch_size: int):
    """The pairs in batches of similar lengths: (row indices, padded sources, source
    lengths, padded targets SOS .. EOS), the tensors on ``device`` but the lengths."""
    order = sorted(range(len(src)), key=lambda i: (len(src[i]), len(tgt[i])))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield (rows, _pad([src[i] for i in rows], c.src_pad_id).to(device), torch.tensor([len(src[i]) for i in rows]),
               _pad([tgt[i] for i in rows], c.tgt_pad_id).to(device))


@torch.inference_mode()
def teacher_forced_nll(model: Seq2Seq, src: list[list[int]], tgt: list[list[int]], device: torch.device,
                       dtype: torch.dtype | None = None, batch_size: int = EVAL_BATCH) -> tuple[float, int]:
    """Summed NLL (nats) of the targets (each SOS .. EOS) given their sources, teacher
    forced, and the number of tokens predicted."""
    was_training = model.training
    model.eval()
    c = model.config
    try:
        total, count = 0.0, 0
        for rows, s, lengths, t in _teacher_forced_batches(src, tgt, c, device, batch_size):
            with autocast(device, dtype):
                logits = model(s, lengths, t[:, :-1])
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), t[:, 1:].reshape(-1),
                                           ignore_index=c.tgt_pad_id, reduction="sum"))
            count += sum(len(tgt[i]) - 1 for i in rows)
        return total, count
    finally:
        model.train(was_training)


@torch.inference_mode()
def sequence_logprobs(models: list[Seq2Seq], src: list[list[int]], tgt: list[list[int]], device: torch.device,
                      dtype: torch.dtype | None = None, batch_size: int = EVAL_BATCH) -> list[float]:
    """The log-probability of each target (SOS .. EOS, as the decoder reads it) given its
    source under ``models`` as one ensemble: teacher forced, at each step the log of the
    models' mean probability of the gold token (what ensemble decoding scores), summed."""
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    c = models[0].config
    out = [0.0] * len(src)
    try:
        for rows, s, lengths, t in _teacher_forced_batches(src, tgt, c, device, batch_size):
            gold = t[:, 1:]
            per_model = []
            for m in models:
                with autocast(device, dtype):
                    logits = m(s, lengths, t[:, :-1])
                logp = F.log_softmax(logits.float(), dim=-1).gather(2, gold.unsqueeze(2)).squeeze(2)  # (n, T-1)
                per_model.append(logp.double())
            mixed = torch.logsumexp(torch.stack(per_model), dim=0) - math.log(len(models))
            mixed = mixed.masked_fill(gold == c.tgt_pad_id, 0.0).sum(dim=1)
            for i, v in zip(rows, mixed.tolist()):
                out[i] = v
        return out
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def _pad(seqs: list[list[int]], pad: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad, dtype=torch.long)
    for r, s in enumerate(seqs):
        out[r, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out
