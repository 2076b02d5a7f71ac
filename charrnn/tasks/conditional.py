"""Generation conditioned on a label (one-to-many): a label in, a sequence out.

Data: labelled examples in the classifier's layouts (text/labelled.py: a folder with one
file per label, a TSV/CSV with a header, fastText lines), validated on a separate file or
on a stratified split. Every example is its own sequence, SOS y_1 .. y_m EOS, with the
ids of padding, SOS and EOS after the tokenizer's (task_configs.ConditionalConfig); the
tokenizer is a char tokenizer of the training texts unless another kind is asked for.
Batches are shuffled, length-bucketed and padded (text/labelled.LabelledBatches).

Loss: cross-entropy per predicted token (EOS included, padding ignored), the mean over
the predicted tokens of the whole batch; with several processes each takes a contiguous
share of the rows and scales its sum so that the mean over the processes is that mean.

Validation: the loss in nats per token and bits per character, where the characters
are each example's characters plus one for its end (as the line break of the same
examples one per line in a language model's corpus), so the two compare; targets that
are the tokenizer's unknown id are not scored. The best checkpoint has the lowest loss.

The checkpoint carries the labels, the longest training sequence (the default length
limit of generation) and a compact set of hashes of every example text it read
(``text_hashes``: 8 bytes each, a tensor), with which generation can tell a new
sequence from a copy of one it was trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..task_configs import ConditionalConfig
from ..errors import CorpusError
from ..models.conditional import ConditionalGenerator
from ..runtime import autocast
from ..text.char import CharTokenizer
from ..text.labelled import LabelledBatches, check_labels, padded, read_labelled, stratified_split
from ..text.tokenizer import Tokenizer
from .base import ExampleTask
from .classify import LabelledData, as_example_text, encode_texts

EVAL_BATCH = 256  # sequences per forward pass when validating or scoring
TokenizerSpec = Tokenizer | Callable[[str], Tokenizer] | None  # see prepare_conditional


def text_hashes(texts) -> torch.Tensor:
    """Sorted distinct 64-bit hashes (BLAKE2b, int64 (K,)) of ``texts``: what a checkpoint
    keeps to recognise its training texts without storing them (a false match needs a
    64-bit collision: about K / 1.8e19 per text checked)."""
    values = {text_hash(t) for t in texts}
    return torch.tensor(sorted(values), dtype=torch.int64)


def text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def prepare_conditional(train_path: str | os.PathLike, val_path: str | os.PathLike | None, val_fraction: float,
                        seed: int, tokenizer: TokenizerSpec = None, text_column: str | None = None,
                        label_column: str | None = None, labels: list[str] | None = None) -> LabelledData:
    """Read, split, check and encode labelled examples for conditioned generation.

    ``tokenizer``: a tokenizer; a function of the training text that trains one; or None
    for a char tokenizer of the training texts. ``labels``: the label list of a run being
    resumed (the data must have exactly these).
    """
    train = read_labelled(train_path, text_column, label_column)
    if val_path is not None:
        val = read_labelled(val_path, text_column, label_column)
    else:
        train, val = stratified_split(train, val_fraction, seed)
        if not val:
            raise CorpusError(f"{train_path}: too few examples to set some aside for validation")
    found = sorted({ex.label for ex in train})
    if len(found) == 1:
        raise CorpusError(f"{train_path}: only one label ({found[0]!r}) in the training data; conditioning needs at "
                          f"least two (with one, train a language model on the texts)")
    check_labels(train, val, str(train_path), str(val_path or f"{train_path} (validation split)"))
    if labels is not None and found != labels:
        raise CorpusError(f"{train_path}: the labels differ from the run's ({', '.join(labels)})")
    if isinstance(tokenizer, Tokenizer):
        tok = tokenizer
    elif tokenizer is None:
        tok = CharTokenizer.train("".join(as_example_text("char", ex.text) for ex in train))
    else:
        tok = tokenizer("\n".join(as_example_text("word", ex.text) for ex in train))
    ids = []
    for name, split in ((train_path, train), (val_path or train_path, val)):
        seqs = encode_texts(tok, [ex.text for ex in split])
        for ex, seq in zip(split, seqs):
            if not seq:  # cannot happen for non-empty text; a guard for tokenizers that drop input
                raise CorpusError(f"{name}: the text {ex.text!r} encodes to no tokens")
        ids.append(seqs)
    return LabelledData(train, val, found, tok, ids[0], ids[1])


@torch.inference_mode()
def sequence_nll(model: ConditionalGenerator, seqs: list[list[int]], labels: list[int], device: torch.device,
                 dtype: torch.dtype | None = None, skip_id: int | None = None,
                 batch_size: int = EVAL_BATCH) -> tuple[float, int, int]:
    """Summed NLL (nats) of sequences (each SOS .. EOS) under their labels, the number of
    tokens scored, and the number not scored because the target is ``skip_id`` (unknown)."""
    was_training = model.training
    model.eval()
    pad = model.config.pad_id
    try:
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        total, count, skipped = 0.0, 0, 0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, _ = padded([seqs[i] for i in rows], pad)
            ids = ids.to(device)
            targets = ids[:, 1:]
            if skip_id is not None:
                unknown = targets == skip_id
                skipped += int(unknown.sum())
                targets = targets.masked_fill(unknown, pad)
            with autocast(device, dtype):
                logits, _ = model(ids[:, :-1], torch.tensor([labels[i] for i in rows], device=device))
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                           ignore_index=pad, reduction="sum"))
            count += int((targets != pad).sum())
        return total, count, skipped
    finally:
        model.train(was_training)


class ConditionalTask(ExampleTask):
    name = "conditional"
    headline = "val_bpc"
    best_key = "val_loss"
    higher_is_better = False
    rate_name = "tokens_per_sec"

    def __init__(self, data: LabelledData, model_config: ConditionalConfig, cfg: TrainConfig):
        self.data = data
        self.tok = data.tokenizer
        self.model_config = dataclasses.replace(model_config, vocab_size=self.tok.vocab_size + 3,
                                                num_labels=len(data.labels))
        c = self.model_config
        index = {label: i for i, label in enumerate(data.labels)}
        self.train_seqs = [[c.sos_id, *ids, c.eos_id] for ids in data.train_ids]
        self.val_seqs = [[c.sos_id, *ids, c.eos_id] for ids in data.val_ids]
        self.train_labels = [index[ex.label] for ex in data.train]
        self.val_labels = [index[ex.label] for ex in data.val]
        self.batches = LabelledBatches(self.train_seqs, self.train_labels, cfg.batch_size, cfg.seed, pad_id=c.pad_id)
        self.longest = max(len(ids) for ids in data.train_ids)  # tokens, EOS not counted
        self.val_chars = sum(len(ex.text) + 1 for ex in data.val)  # + 1: the end of each example
        self.val_size = sum(len(s) - 1 for s in self.val_seqs)
        # Every text read, training and validation: a copy of any of them is not "new".
        self.hashes = text_hashes(ex.text for ex in data.train + data.val)

    def build_model(self, device: torch.device) -> nn.Module:
        self.model = ConditionalGenerator(self.model_config).to(device)
        return self.model

    def no_decay(self, model: nn.Module) -> list[nn.Parameter]:
        return [model.embedding.weight, model.label_embedding.weight]

    # ----------------------------------------------------------- stepping

    def loss(self, net: nn.Module, batch: Any, device: torch.device, dtype: torch.dtype | None) -> tuple[torch.Tensor, int]:
        (ids, lengths, labels), _ = batch
        rows, scale = self.rows(ids.shape[0])
        total = float((lengths - 1).sum())  # predicted tokens of the whole batch
        x, lens, y = ids[rows], lengths[rows], labels[rows]
        x = x[:, : int(lens.max())].to(device)  # this share's own padding only
        with autocast(device, dtype):
            logits, _ = net(x[:, :-1], y.to(device))  # (n, T-1, V)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                              ignore_index=self.model_config.pad_id, reduction="sum")
        return nll * scale / total, int((lens - 1).sum()) if scale else 0

    # ----------------------------------------------------------- reporting

    def validate(self, model: nn.Module, dtype: torch.dtype | None) -> dict[str, float]:
        device = next(model.parameters()).device
        nll, tokens, unknown = sequence_nll(model, self.val_seqs, self.val_labels, device, dtype, self.tok.unk_id)
        chars = self.val_chars - (unknown if self.tok.kind == "char" else 0)
        return {"val_loss": nll / max(tokens, 1), "val_bpc": nll / math.log(2) / max(chars, 1),
                "val_unknown": unknown}

    def train_metrics(self, train_loss: float | None) -> dict[str, Any]:
        return {}

    def start_info(self) -> dict[str, Any]:
        return {"train_tokens": sum(len(s) - 1 for s in self.train_seqs), "val_tokens": self.val_size,
                "vocab_size": self.tok.vocab_size, "labels": self.data.labels, "train_examples": len(self.data.train),
                "val_examples": len(self.data.val), "tokenizer": self.tok.kind}

    def summary(self, best: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
        return {"val_loss": best["val_loss"], "val_bpc": best["val_bpc"], "final_val_loss": last["val_loss"],
                "final_val_bpc": last["val_bpc"], "val_unknown": last["val_unknown"], "labels": self.data.labels}

    def checkpoint_parts(self) -> dict[str, Any]:
        state = {"labels": self.data.labels, "label_counts": self.data.counts, "longest": self.longest,
                 "train_hashes": self.hashes}
        return {"tokenizer": self.tok, "task": self.name, "task_state": state}
