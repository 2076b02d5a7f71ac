"""Sequence classification (many-to-one): a text in, one label out.

Data: labelled examples (text/labelled.py: a TSV/CSV with a header, fastText lines, or a
folder with one file per label), validated on a separate file or on a stratified split.
The tokenizer is trained on the training texts (or given), every text becomes one id
sequence, and batches are shuffled, length-bucketed and padded (padding never changes a
result: the model packs sequences by length).

Loss: cross-entropy over the labels, optionally class-weighted ("balanced"). With several
processes each one takes a contiguous share of the rows of every global batch and scales
its loss so that the mean over the processes is the loss of the whole batch.

Validation reports loss, accuracy and macro-F1; the best checkpoint has the best accuracy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError, CorpusError
from ..task_configs import ClassifierConfig
from ..models.classifier import SequenceClassifier
from ..runtime import autocast
from ..text.char import CharTokenizer
from ..text.labelled import (
    Example,
    LabelledBatches,
    check_labels,
    class_weights,
    label_counts,
    padded,
    read_labelled,
    stratified_split,
)
from ..text.tokenizer import Tokenizer
from ..text.tokenizers import train_tokenizer
from .base import ExampleTask
from .metrics import report

EVAL_BATCH = 256  # examples per forward pass when validating or predicting
TokenizerSpec = Tokenizer | Callable[[str, str], Tokenizer] | None  # see prepare_labelled


@dataclass
class LabelledData:
    """Encoded training and validation examples, their labels and the tokenizer."""

    train: list[Example]
    val: list[Example]
    labels: list[str]
    tokenizer: Tokenizer
    train_ids: list[list[int]]
    val_ids: list[list[int]]
    tokenizer_note: str | None = None  # why the tokenizer kind was chosen, when it was

    @property
    def counts(self) -> dict[str, int]:
        return label_counts(self.train)

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for split in (self.train, self.val):
            for ex in split:
                h.update(json.dumps([ex.text, ex.label], ensure_ascii=False).encode())
            h.update(b"\x00split")
        return h.hexdigest()


WORDS_FOR_WORD_TOKENS = 3.0  # examples averaging this many words or more get the word tokenizer by default


def as_example_text(tok_kind: str, text: str) -> str:
    """The text a classifier's tokenizer sees for one example: one line, and for the
    SentencePiece kinds a leading space, so that the first word is the same token as the
    word inside a sentence (SentencePiece marks a word by the space before it)."""
    text = text.replace("\n", " ")
    return text if tok_kind == "char" else " " + text


def default_tokenizer_kind(examples: list[Example]) -> str:
    """word for sentences, char for names and single words (the surnames-by-language kind
    of data, where the spelling is what there is to learn)."""
    words = sum(len(ex.text.split()) for ex in examples) / max(len(examples), 1)
    return "word" if words >= WORDS_FOR_WORD_TOKENS else "char"


def encode_texts(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    return tok.encode_lines([as_example_text(tok.kind, t) for t in texts])


def _encode(tok: Tokenizer, examples: list[Example], name: str) -> list[list[int]]:
    ids = encode_texts(tok, [ex.text for ex in examples])
    for ex, seq in zip(examples, ids):
        if not seq:  # cannot happen for non-empty text; a guard for tokenizers that drop input
            raise CorpusError(f"{name}: the text {ex.text!r} encodes to no tokens")
    return ids


def prepare_labelled(train_path: str | os.PathLike, val_path: str | os.PathLike | None, val_fraction: float,
                     seed: int, tokenizer: TokenizerSpec = None, text_column: str | None = None,
                     label_column: str | None = None, labels: list[str] | None = None) -> LabelledData:
    """Read, split, check and encode a classification data set.

    ``tokenizer``: a tokenizer; a function of (the training text, the default kind for
    these examples) that trains one; or None for the default: ``default_tokenizer_kind``
    of the training examples (a char tokenizer, or a word tokenizer of the default
    vocabulary size). ``labels``: the
    label list of a run being resumed (the data must have exactly these).
    """
    train = read_labelled(train_path, text_column, label_column)
    if val_path is not None:
        val = read_labelled(val_path, text_column, label_column)
    else:
        train, val = stratified_split(train, val_fraction, seed)
        if not val:
            raise CorpusError(f"{train_path}: too few examples to set some aside for validation")
    found = check_labels(train, val, str(train_path), str(val_path or f"{train_path} (validation split)"))
    if labels is not None and found != labels:
        raise CorpusError(f"{train_path}: the labels differ from the run's ({', '.join(labels)})")
    if isinstance(tokenizer, Tokenizer):
        tok = tokenizer
    else:
        kind = default_tokenizer_kind(train)
        words = sum(len(ex.text.split()) for ex in train) / len(train)
        text = "\n".join(as_example_text("word", ex.text) for ex in train)
        if tokenizer is not None:
            tok = tokenizer(text, kind)
        elif kind == "char":
            tok = CharTokenizer.train(text)
        else:
            tok = train_tokenizer(kind, text)
    note = None
    if tokenizer is None:
        note = f"{tok.kind} tokens, as the examples average {words:.1f} words"
    return LabelledData(train, val, found, tok, _encode(tok, train, str(train_path)),
                        _encode(tok, val, str(val_path or train_path)), note)


@torch.inference_mode()
def classify_ids(model: nn.Module, seqs: list[list[int]], device: torch.device, dtype: torch.dtype | None = None,
                 batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Logits (N, C) of every sequence, in the order given; batches are formed from
    sequences of similar length (sorted), so little is padded."""
    was_training = model.training
    model.eval()
    try:
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out = torch.empty(len(seqs), model.config.num_labels)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, lengths = padded([seqs[i] for i in rows], model.config.pad_id)
            with autocast(device, dtype):
                logits = model(ids.to(device), lengths)
            out[torch.tensor(rows)] = logits.float().cpu()
        return out
    finally:
        model.train(was_training)


class ClassifyTask(ExampleTask):
    name = "classify"
    headline = "val_accuracy"
    best_key = "val_accuracy"
    higher_is_better = True
    rate_name = "examples_per_sec"

    def __init__(self, data: LabelledData, model_config: ClassifierConfig, cfg: TrainConfig,
                 balanced: bool = False, embeddings: str | os.PathLike | None = None, freeze: bool = False,
                 embedding_report: dict[str, Any] | None = None):
        self.data = data
        self.tok = data.tokenizer
        self.model_config = dataclasses.replace(model_config, vocab_size=self.tok.vocab_size,
                                                num_labels=len(data.labels))
        index = {label: i for i, label in enumerate(data.labels)}
        self.train_labels = [index[ex.label] for ex in data.train]
        self.val_labels = [index[ex.label] for ex in data.val]
        self.batches = LabelledBatches(data.train_ids, self.train_labels, cfg.batch_size, cfg.seed,
                                       pad_id=self.model_config.pad_id)
        self.weights = class_weights(data.counts, data.labels) if balanced else None
        self.balanced = balanced
        self.embeddings, self.freeze = embeddings, freeze
        self.embedding_report = embedding_report  # what --embeddings found (kept on resume)
        self.val_size = len(data.val)

    def build_model(self, device: torch.device) -> nn.Module:
        model = SequenceClassifier(self.model_config)
        if self.embeddings is not None:
            if model.embedding is None:
                raise ConfigError("pretrained embeddings need a learned embedding, not one-hot input")
            from ..models.embeddings import init_embedding

            words = [self.tok.token_text(i).strip() for i in range(self.tok.vocab_size)]
            found, total = init_embedding(model.embedding, words, self.embeddings, self.freeze)
            self.embedding_report = {"file": str(self.embeddings), "found": found, "vocab": total}
        if self.freeze and model.embedding is not None:
            model.embedding.weight.requires_grad_(False)  # also on resume: the optimizer must match
        self.model = model.to(device)
        if self.weights is not None:
            self.weights = self.weights.to(device)
        return self.model

    def no_decay(self, model: nn.Module) -> list[nn.Parameter]:
        return [model.embedding.weight] if model.embedding is not None else []

    # ----------------------------------------------------------- stepping

    def loss(self, net: nn.Module, batch: Any, device: torch.device, dtype: torch.dtype | None) -> tuple[torch.Tensor, int]:
        (ids, lengths, labels), _ = batch
        n = ids.shape[0]
        rows, scale = self.rows(n)
        labels = labels.to(device)
        # The normaliser of the whole batch: examples, or their class weights.
        total = self.weights[labels].sum() if self.weights is not None else torch.tensor(float(n), device=device)
        x, lens, y = ids[rows], lengths[rows], labels[rows]
        x = x[:, : int(lens.max())]  # this share's own padding only
        with autocast(device, dtype):
            logits = net(x.to(device), lens)
        nll = F.cross_entropy(logits, y, weight=self.weights, reduction="none")  # (n,), times w_y if weighted
        return nll.sum() * scale / total, len(y) if scale else 0

    # ----------------------------------------------------------- reporting

    def validate(self, model: nn.Module, dtype: torch.dtype | None) -> dict[str, float]:
        device = next(model.parameters()).device
        logits = classify_ids(model, self.data.val_ids, device, dtype)
        gold = torch.tensor(self.val_labels)
        loss = float(F.cross_entropy(logits, gold))
        rep = report(gold.tolist(), logits.argmax(dim=-1).tolist(), self.data.labels)
        return {"val_loss": loss, "val_accuracy": rep.accuracy, "val_macro_f1": rep.macro_f1}

    def start_info(self) -> dict[str, Any]:
        return {"train_examples": len(self.data.train), "val_examples": len(self.data.val),
                "vocab_size": self.tok.vocab_size, "labels": self.data.labels, "embeddings": self.embedding_report,
                "tokenizer": self.tok.kind, "tokenizer_note": self.data.tokenizer_note}

    def summary(self, best: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
        return {"val_loss": best["val_loss"], "val_accuracy": best["val_accuracy"],
                "val_macro_f1": best["val_macro_f1"], "final_val_accuracy": last["val_accuracy"],
                "final_val_loss": last["val_loss"], "labels": self.data.labels, "embeddings": self.embedding_report}

    def checkpoint_parts(self) -> dict[str, Any]:
        state = {"labels": self.data.labels, "label_counts": self.data.counts, "class_weights":
                 "balanced" if self.balanced else "none", "embeddings": self.embedding_report,
                 "freeze_embeddings": self.freeze}
        return {"tokenizer": self.tok, "task": self.name, "task_state": state}
