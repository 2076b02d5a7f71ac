"""Helpers shared by the benchmark scripts: machine description, RESULTS.md, corpus
lookup, and the plain PyTorch reference training loop that speed ratios are taken against."""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from charrnn.checkpoint import RunDirectory
from charrnn.config import TrainConfig
from charrnn.text.corpora import resolve_corpus
from charrnn.training import train

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    from charrnn.runtime import cpu_has_fast_bf16

    kind = torch.backends.cpu.get_cpu_capability() + (", native bf16" if cpu_has_fast_bf16() else ", no native bf16")
    return f"{cpu} ({kind}), {os.cpu_count()} cores{gpu}; torch {torch.__version__}; Python {platform.python_version()}"


def record(title: str, command: str, table: str, data: dict, write: bool = True) -> None:
    """Print the table and a JSON line, and append both to RESULTS.md (unless not ``write``)."""
    print(table)
    print(json.dumps(data))
    if not write:
        return
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(f"\n## {title}\n\n- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
                f"- machine: {machine()}\n- command: `{command}`\n\n{table}\n\n"
                f"```json\n{json.dumps(data)}\n```\n")


# ---------------------------------------------------------------------------------------
# Helpers for the throughput benchmarks (train_throughput.py, eval_throughput.py).

SHARED_CORPORA = Path("/work/shared/corpora")  # the local mirror on the benchmark machine


def command_line() -> str:
    """The command this script was started with, for RESULTS.md."""
    return shlex.join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]])


def corpus_path(name_or_path: str) -> str:
    """A local, checksum-verified copy of a corpus (``CHARRNN_CORPORA``, else the shared
    mirror when it exists, else charrnn's cache or a download)."""
    if not os.environ.get("CHARRNN_CORPORA") and SHARED_CORPORA.is_dir():
        os.environ["CHARRNN_CORPORA"] = str(SHARED_CORPORA)
    return resolve_corpus(name_or_path)


class ReferenceLM(nn.Module):
    """The plain model: ids (N, T) -> Embedding -> nn.LSTM | nn.GRU -> Dropout -> Linear."""

    def __init__(self, cell: str, vocab: int, layers: int, hidden: int, embedding: int = 64, dropout: float = 0.0):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.embedding = nn.Embedding(vocab, embedding)
        self.rnn = rnn(embedding, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.rnn(self.embedding(x), state)  # (N, T, H)
        return self.decoder(self.drop(out)), state  # (N, T, V)


class ReferenceLoop:
    """A plain truncated-BPTT training loop: consecutive windows of the (B, S) stream
    layout, state carried and detached between windows, Adam (torch's defaults: not fused,
    not foreach on the CPU), gradient clipping, optional autocast."""

    def __init__(self, model: ReferenceLM, ids: torch.Tensor, batch: int, bptt: int,
                 device: torch.device, dtype: torch.dtype | None = None, lr: float = 2e-3, clip: float = 1.0):
        self.model = model.to(device).train()
        self.params = list(model.parameters())
        self.opt = torch.optim.Adam(self.params, lr=lr)
        s = ids.numel() // batch
        self.data = ids[: batch * s].long().view(batch, s).to(device)  # (B, S)
        self.bptt, self.device, self.dtype, self.clip = bptt, device, dtype, clip
        self.vocab = model.decoder.out_features
        self.state = None
        self.pos = 0

    def step(self) -> None:
        t = self.bptt
        if self.pos + t + 1 > self.data.shape[1]:
            self.pos, self.state = 0, None
        x, y = self.data[:, self.pos : self.pos + t], self.data[:, self.pos + 1 : self.pos + t + 1]
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits, state = self.model(x, self.state)
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, self.vocab), y.reshape(-1))
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        self.state = tuple(h.detach() for h in state) if isinstance(state, tuple) else state.detach()
        self.pos += t

    def chars_per_sec(self, warmup: int, steps: int) -> float:
        """Run ``warmup`` untimed steps, then time ``steps`` steps."""
        for _ in range(warmup):
            self.step()
        sync(self.device)
        t = time.perf_counter()
        for _ in range(steps):
            self.step()
        sync(self.device)
        return steps * self.data.shape[0] * self.bptt / (time.perf_counter() - t)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def window_tokens(train_tokens: int, batch: int, bptt: int, step: int) -> int:
    """Tokens in training step ``step`` (1-based) of charrnn's stream layout: B streams of
    S = train_tokens // B ids, ceil((S - 1) / T) windows an epoch, the last one shorter."""
    s = train_tokens // batch
    per_epoch = math.ceil((s - 1) / bptt)
    start = ((step - 1) % per_epoch) * bptt
    return batch * (min(start + bptt, s - 1) - start)


def trainer_chars_per_sec(train_text: str, val_text: str, model_config, *, batch: int, bptt: int, precision: str,
                          threads: int | None, device: str, warmup: int, steps: int, log_interval: int,
                          tokenizer=None) -> dict:
    """Training throughput of charrnn's own loop (``charrnn.training.train``, the Trainer
    that `charrnn train` runs).

    The run makes ``warmup + steps`` steps with a progress event every ``log_interval``
    steps; each event carries the tokens/s of its log window (charrnn's own clock). The
    windows inside the first ``warmup`` steps are dropped, and the rest are combined as
    total tokens / total seconds. The checkpoints saved before step 1 and the evaluation
    after the last step lie outside every window; ``val_text`` should still be short so
    that the final evaluation does not slow the benchmark down.
    """
    if warmup % log_interval or steps % log_interval or steps < 1:
        raise ValueError("warmup and steps must be multiples of log_interval, and steps >= 1")
    cfg = TrainConfig(batch_size=batch, bptt=bptt, max_steps=warmup + steps, eval_interval=10**9,
                      log_interval=log_interval, precision=precision, threads=threads, device=device)
    start: dict = {}
    windows: list[tuple[int, float]] = []  # (step at the end of the window, tokens/s in it)

    def on_event(event) -> None:
        if event.kind == "start":
            start.update(event.data)
        elif event.kind == "progress":
            windows.append((event.step, event.data["tokens_per_sec"]))

    with tempfile.TemporaryDirectory(prefix="charrnn-bench-") as tmp:
        summary = train(train_text, val_text, model_config, cfg, RunDirectory(Path(tmp) / "run"), on_event,
                        tokenizer=tokenizer).summary
    tokens = seconds = 0.0
    previous = 0
    for step, rate in windows:
        if previous >= warmup:
            n = sum(window_tokens(start["train_tokens"], batch, bptt, k) for k in range(previous + 1, step + 1))
            tokens += n
            seconds += n / rate
        previous = step
    return {"chars_per_sec": tokens / seconds, "precision": start["precision"], "params": start["params"],
            "skipped_steps": summary["skipped_steps"], "timed_windows": sum(1 for s, _ in windows if s > warmup)}
