"""The language model task: truncated BPTT over parallel streams, scored in bits per character.

Batches are consecutive windows of the stream layout (text/streams.py); the hidden state
left by one window is carried into the next (detached: truncated BPTT), forgotten when
the streams jump back to their starts, and put back as it was before a skipped step.
Validation scores the whole validation text (tasks/perplexity.py) and reports its loss,
bits per character and unknown characters; the best checkpoint has the lowest loss.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TrainConfig
from ..errors import CorpusError
from ..models.cells import State, cell_kind, detach_state
from ..models.lm import RNNLanguageModel
from ..runtime import autocast
from ..text.prepare import Corpus
from ..text.streams import StreamBatches
from .base import Task
from .perplexity import evaluate, scored_char_count

VAL_STREAMS = 16  # parallel streams for validation (each warmed up; see perplexity.py)


class LanguageModelTask(Task):
    name = "lm"
    headline = "val_bpc"
    best_key = "val_loss"
    higher_is_better = False
    rate_name = "tokens_per_sec"

    def __init__(self, corpus: Corpus, model_config: ModelConfig, cfg: TrainConfig):
        self.tok = tok = corpus.tokenizer
        self.val_ids = corpus.val
        if self.val_ids.numel() < 2:
            raise CorpusError("the validation text needs at least 2 tokens")
        # Validation bpc divides by the characters the scored tokens cover, as eval does.
        self.val_chars = scored_char_count(tok, corpus.val_text_chars, self.val_ids)
        self.batches = StreamBatches.build(corpus.train, cfg.batch_size, cfg.bptt)
        self.batch_size = cfg.batch_size
        self.train_tokens = corpus.train.numel()
        self.val_size = self.val_ids.numel()
        self._fingerprint = corpus.fingerprint
        self.model_config = dataclasses.replace(model_config, vocab_size=tok.vocab_size)
        # AR and TAR keep an RNN's hidden outputs small and smooth; a scan cell's outputs are
        # layer-normalised (mean square about 1 by construction), so they take neither
        # (measured, 2x192 mingru, 120 s: 2.327 bpc without, 2.484 with AR 1 and TAR 1).
        parallel = cell_kind(model_config.cell).parallel
        self.ar, self.tar = (0.0, 0.0) if parallel else (cfg.ar, cfg.tar)
        self.state: State | None = None
        self.before: State | None = None

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def shard(self, rank: int, world: int) -> None:
        # This rank's streams: a contiguous block of rows of the global layout.
        rows = self.batch_size // world
        self.batches.data = self.batches.data[rank * rows : (rank + 1) * rows]

    def to_device(self, device: torch.device) -> None:
        if device.type == "cuda":
            # The whole id array goes to the GPU once (2 bytes a token: 400 MB for a 200M-token
            # corpus): windows are then device views, with no host-to-device copy per step.
            self.batches.data = self.batches.data.to(device)

    def build_model(self, device: torch.device) -> nn.Module:
        self.model = RNNLanguageModel(self.model_config).to(device)
        return self.model

    def no_decay(self, model: nn.Module) -> list[nn.Parameter]:
        return [model.embedding.weight]

    # ----------------------------------------------------------- stepping

    def loss(self, net: nn.Module, batch: Any, device: torch.device, dtype: torch.dtype | None) -> tuple[torch.Tensor, int]:
        x, y, new_epoch = batch
        if new_epoch:
            self.state = None  # the streams jump back to their starts: the old state means nothing
        self.before = self.state
        x = x.to(device, dtype=torch.long, non_blocking=True)
        y = y.to(device, dtype=torch.long, non_blocking=True)
        if not (self.ar or self.tar):
            with autocast(device, dtype):
                logits, self.state = net(x, self.before)
            return self.cross_entropy(logits, y), x.numel()
        with autocast(device, dtype):
            logits, self.state, out, dropped = net(x, self.before, hidden=True)
        ce = self.cross_entropy(logits, y)
        reg = self.ar * dropped.float().pow(2).mean() + self.tar * (out[:, 1:] - out[:, :-1]).float().pow(2).mean()
        return ce + reg, x.numel(), ce.detach()

    def cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of a window (a method, so tests can poison it)."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def keep(self, ok: torch.Tensor) -> None:
        # A skipped window leaves the carried state as it was before it.
        state, before = detach_state(self.state), self.before
        if isinstance(state, tuple):
            old = before if before is not None else (None,) * len(state)
            self.state = tuple(torch.where(ok, s, o if o is not None else 0.0) for s, o in zip(state, old))
        elif state is not None:
            self.state = torch.where(ok, state, before if before is not None else 0.0)
        self.before = None

    def reset(self) -> None:
        self.state = None

    def carried(self) -> list[torch.Tensor]:
        if self.state is None:
            return []
        return list(self.state) if isinstance(self.state, tuple) else [self.state]

    def restore_carried(self, parts: list[torch.Tensor], rows: slice | None, device: torch.device) -> None:
        if any(p.dim() != 3 or p.shape[1] != self.batch_size for p in parts):
            raise ValueError("carried state of another batch size")
        if rows is not None:
            parts = [p[:, rows] for p in parts]  # this rank's streams
        parts = [p.to(device) for p in parts]
        self.state = None if not parts else tuple(parts) if len(parts) > 1 else parts[0]

    # ----------------------------------------------------------- reporting

    def validate(self, model: nn.Module, dtype: torch.dtype | None) -> dict[str, float]:
        res = evaluate(model, self.val_ids, unk_id=self.tok.unk_id, chars=self.val_chars, streams=VAL_STREAMS,
                       dtype=dtype)
        return {"val_loss": res.loss, "val_bpc": res.bpc, "val_unknown": res.unknown}

    def train_metrics(self, train_loss: float | None) -> dict[str, Any]:
        return {"train_bpc": None if train_loss is None else train_loss / math.log(2)}

    def start_info(self) -> dict[str, Any]:
        return {"train_tokens": self.train_tokens, "val_tokens": self.val_size, "vocab_size": self.tok.vocab_size}

    def summary(self, best: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
        return {"val_loss": best["val_loss"], "val_bpc": best["val_bpc"], "final_val_loss": last["val_loss"],
                "final_val_bpc": last["val_bpc"], "val_unknown": last["val_unknown"]}

    def checkpoint_parts(self) -> dict[str, Any]:
        return {"tokenizer": self.tok, "task": self.name, "task_state": None}
