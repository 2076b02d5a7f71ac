"""What ``--task regress`` runs: the data reader, the model, the Task the trainer drives, and
the API class ``charrnn.load`` returns (imported only when a regress run or checkpoint is used)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.api.base import Model
from charrnn.errors import CorpusError
from charrnn.models.cells import make_rnn
from charrnn.runtime import autocast
from charrnn.tasks.base import ExampleTask
from charrnn.text.char import CharTokenizer
from charrnn.text.tokenizer import Tokenizer

from . import RegressorConfig

EVAL_BATCH = 256

# ----------------------------------------------------------------------------- data


def read_numbers(path: str | Path) -> tuple[list[str], list[float]]:
    """The texts and numbers of a file of ``text<TAB>number`` lines (blank lines skipped; a
    first line whose number does not parse is a header)."""
    texts, values = [], []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CorpusError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        text, tab, number = line.rpartition("\t")
        try:
            value = float(number)
            if not tab or not text or not math.isfinite(value):
                raise ValueError
        except ValueError:
            if n == 1 and tab:
                continue  # a header
            raise CorpusError(f"{path}:{n}: expected text<TAB>number, got {line[:60]!r}") from None
        texts.append(text)
        values.append(value)
    if not texts:
        raise CorpusError(f"{path}: no text<TAB>number lines")
    return texts, values


@dataclass
class NumberData:
    train_texts: list[str]
    train_y: list[float]
    val_texts: list[str]
    val_y: list[float]

    @property
    def fingerprint(self) -> str:
        blob = json.dumps([self.train_texts, self.train_y, self.val_texts, self.val_y], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


def encode(tok: Tokenizer, texts: list[str], pad_id: int) -> list[list[int]]:
    """Token ids of each text (an empty text reads as one padding token)."""
    return [seq or [pad_id] for seq in tok.encode_lines([t.replace("\n", " ") for t in texts])]


def padded(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    ids = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return ids, lengths


class Batches:
    """Shuffled batches, resumable: ``epoch`` and ``position`` say where the data is."""

    def __init__(self, ids: list[list[int]], targets: list[float], batch_size: int, seed: int, pad_id: int):
        self.ids, self.targets, self.batch_size, self.seed, self.pad_id = ids, targets, batch_size, seed, pad_id
        self.epoch = self.position = 0
        self._order: tuple[int, list[int]] | None = None

    @property
    def windows_per_epoch(self) -> int:
        return math.ceil(len(self.ids) / self.batch_size)

    def next(self):
        if self.position >= self.windows_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        if self._order is None or self._order[0] != self.epoch:
            order = list(range(len(self.ids)))
            random.Random(f"regress:{self.seed}:{self.epoch}").shuffle(order)
            self._order = (self.epoch, order)
        rows = self._order[1][self.position * self.batch_size : (self.position + 1) * self.batch_size]
        self.position += 1
        ids, lengths = padded([self.ids[i] for i in rows], self.pad_id)
        return ids, lengths, torch.tensor([self.targets[i] for i in rows], dtype=torch.float32)


# ----------------------------------------------------------------------------- the model


class SequenceRegressor(nn.Module):
    """ids (N, T), lengths (N,) -> one number per sequence (N,): embedding, a recurrent
    stack, the mean of its outputs over the real positions, a linear layer."""

    def __init__(self, config: RegressorConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("RegressorConfig.vocab_size must be set from the tokenizer")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.rnn = make_rnn(config.cell, config.embedding_dim, config.hidden_size, config.layers, config.dropout)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, 1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths.to(ids.device)[:, None]  # (N, T)
        x = self.drop(self.embedding(ids.masked_fill(~mask, self.config.pad_id)))
        out, _ = self.rnn(x)  # (N, T, H); one direction, so right padding never reaches a real position
        m = mask.unsqueeze(-1).to(out.dtype)
        pooled = (out * m).sum(dim=1) / m.sum(dim=1)
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            return self.head(self.drop(pooled).float()).squeeze(-1)  # (N,)


@torch.inference_mode()
def predict_ids(model: nn.Module, seqs: list[list[int]], device: torch.device, dtype=None,
                batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """The model's (normalised) outputs for every sequence, in order."""
    was_training = model.training
    model.eval()
    try:
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out = torch.empty(len(seqs))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, lengths = padded([seqs[i] for i in rows], model.config.pad_id)
            with autocast(device, dtype):
                out[torch.tensor(rows)] = model(ids.to(device), lengths).float().cpu()
        return out
    finally:
        model.train(was_training)


def scores(pred: list[float] | torch.Tensor, gold: list[float] | torch.Tensor) -> dict[str, float]:
    """MSE, RMSE, MAE and Pearson's r (NaN when either side is constant)."""
    p, g = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(gold, dtype=torch.float64)
    mse = float(((p - g) ** 2).mean())
    dp, dg = p - p.mean(), g - g.mean()
    denom = float(dp.norm() * dg.norm())
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float((p - g).abs().mean()),
            "pearson": float((dp * dg).sum()) / denom if denom > 0 else float("nan")}


# ----------------------------------------------------------------------------- the task


class RegressTask(ExampleTask):
    name = "regress"
    headline = "val_mse"
    best_key = "val_mse"
    higher_is_better = False
    rate_name = "examples_per_sec"

    def __init__(self, data: NumberData, tok: Tokenizer, model_config: RegressorConfig, batch_size: int, seed: int,
                 scale: float, loss: str, mean: float, std: float):
        self.data, self.tok, self.scale, self.loss_kind, self.mean, self.std = data, tok, scale, loss, mean, std
        self.model_config = dataclasses.replace(model_config, vocab_size=tok.vocab_size)
        pad = self.model_config.pad_id
        self.train_ids, self.val_ids = encode(tok, data.train_texts, pad), encode(tok, data.val_texts, pad)
        normal = [(y * scale - mean) / std for y in data.train_y]
        self.batches = Batches(self.train_ids, normal, batch_size, seed, pad)
        self.val_size = len(data.val_texts)

    def build_model(self, device: torch.device) -> nn.Module:
        self.model = SequenceRegressor(self.model_config).to(device)
        return self.model

    def no_decay(self, model: nn.Module) -> list[nn.Parameter]:
        return [model.embedding.weight]

    def _loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss_kind == "huber":
            return F.huber_loss(pred, target, reduction="sum")
        return F.mse_loss(pred, target, reduction="sum")

    def loss(self, net, batch, device, dtype):
        ids, lengths, targets = batch
        n = ids.shape[0]
        rows, factor = self.rows(n)
        x, lens, y = ids[rows], lengths[rows], targets[rows]
        with autocast(device, dtype):
            pred = net(x[:, : int(lens.max())].to(device), lens)
        return self._loss(pred.float(), y.to(device)) * factor / n, len(y) if factor else 0

    def validate(self, model, dtype) -> dict[str, float]:
        device = next(model.parameters()).device
        out = predict_ids(model, self.val_ids, device, dtype)
        gold = torch.tensor([y * self.scale for y in self.data.val_y])
        normal = (gold - self.mean) / self.std
        sc = scores(out * self.std + self.mean, gold)
        return {"val_loss": float(self._loss(out, normal.float())) / len(gold), "val_mse": sc["mse"],
                "val_pearson": sc["pearson"]}

    def start_info(self) -> dict[str, Any]:
        return {"train_examples": len(self.data.train_texts), "val_examples": len(self.data.val_texts),
                "vocab_size": self.tok.vocab_size, "tokenizer": self.tok.kind, "loss": self.loss_kind,
                "target_mean": self.mean, "target_std": self.std}

    def summary(self, best: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
        return {"val_loss": best["val_loss"], "val_mse": best["val_mse"], "val_pearson": best["val_pearson"],
                "final_val_loss": last["val_loss"], "final_val_mse": last["val_mse"],
                "final_val_pearson": last["val_pearson"]}

    def checkpoint_parts(self) -> dict[str, Any]:
        state = {"mean": self.mean, "std": self.std, "target_scale": self.scale, "loss": self.loss_kind,
                 "train_examples": len(self.data.train_texts), "val_examples": len(self.data.val_texts)}
        return {"tokenizer": self.tok, "task": self.name, "task_state": state}


def setup(run) -> RegressTask:
    """``SPEC.setup``: the run's data and options (training/run.py's RunSetup) -> the Task."""
    cfg = run.train_config
    texts, values = read_numbers(run.one_file())
    if run.given.get("val_file") is not None:
        val_texts, val_values = read_numbers(run.given["val_file"])
    else:  # a seeded random split
        order = list(range(len(texts)))
        random.Random(cfg.seed).shuffle(order)
        k = max(1, round(len(texts) * cfg.val_fraction))
        if k >= len(texts):
            raise CorpusError(f"{run.corpus[0]}: too few examples to set some aside for validation")
        val_texts, val_values = [texts[i] for i in order[:k]], [values[i] for i in order[:k]]
        texts, values = [texts[i] for i in order[k:]], [values[i] for i in order[k:]]
    data = NumberData(texts, values, val_texts, val_values)
    tok = run.tokenizer()  # the resumed run's; None for a new one (the options that set one are refused)
    if not isinstance(tok, Tokenizer):
        tok = CharTokenizer.train("".join(texts + val_texts))
    if run.resumed:  # the run's own normalisation and options
        st = run.checkpoint.task_state or {}
        scale, loss, mean, std = st["target_scale"], st["loss"], st["mean"], st["std"]
    else:
        scale, loss = run.option("target_scale"), run.option("loss")
        scaled = torch.tensor(values, dtype=torch.float64) * scale
        mean = float(scaled.mean())
        std = float(scaled.std(unbiased=False)) if len(values) > 1 else 0.0
        std = std if std > 0 else 1.0
    return RegressTask(data, tok, run.model_config(), cfg.batch_size, cfg.seed, scale, loss, mean, std)


# ----------------------------------------------------------------------------- the API class


@dataclass
class RegressionReport:
    mse: float
    rmse: float
    mae: float
    pearson: float
    examples: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        return [("MSE", f"{self.mse:.4f}"), ("RMSE", f"{self.rmse:.4f}"), ("MAE", f"{self.mae:.4f}"),
                ("Pearson r", f"{self.pearson:.4f}"), ("examples", f"{self.examples:,}")]


class Regressor(Model):
    """A trained regressor: ``predict(texts)`` gives one number per text, in the targets' unit
    (times the run's --target-scale)."""

    def __init__(self, checkpoint, device: str = "auto"):
        super().__init__(checkpoint, device)
        st = checkpoint.task_state or {}
        self.mean, self.std, self.target_scale = float(st["mean"]), float(st["std"]), float(st["target_scale"])
        self.model = checkpoint.build_model(self.device)

    def predict(self, texts: list[str], batch_size: int = EVAL_BATCH) -> list[float]:
        if not texts:
            return []
        out = predict_ids(self.model, encode(self.tokenizer, list(texts), self.model.config.pad_id), self.device,
                          batch_size=batch_size)
        return (out.double() * self.std + self.mean).tolist()

    def prediction_record(self, result: float) -> dict[str, Any]:
        return {"value": result}

    def prediction_text(self, result: float) -> str:
        return f"{result:.4f}"

    def evaluate(self, texts: list[str], gold: list[float]) -> RegressionReport:
        """Scores against ``gold`` in the file's unit, scaled as the targets were in training."""
        return RegressionReport(**scores(self.predict(texts), [g * self.target_scale for g in gold]),
                                examples=len(gold))

    def evaluate_file(self, path: str, **options: Any) -> RegressionReport:
        texts, gold = read_numbers(path)
        return self.evaluate(texts, gold)
