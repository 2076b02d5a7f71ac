"""How long a cell can remember within a fixed training budget: the copy task and the
adding task at increasing lags, one fresh small network per cell and lag. Numbers only.

Copy (K symbols from an alphabet of A; ``lag`` steps between seeing a symbol and saying it)::

    input   s1 s2 s3  _  _ ...  _  >  _  _       _ blank, > "now recall"
    target   .  .  .  .  . ...  .  s1 s2 s3      scored at the last K positions only
            |<-------- lag -------->|
    length  lag + K; chance accuracy 1/A

Adding (Hochreiter and Schmidhuber 1997): ``lag`` steps of (value in [0, 1), marker); one
marker in the first half, one in the second; the target is the sum of the two marked
values, read after the last step. The score is R^2 = 1 - MSE / Var(target) (Var = 1/6):
predicting the mean scores 0, which is chance.

Each (cell, lag) trains a fresh network (embedding or input layer, one recurrent layer,
linear readout) with Adam and gradient clipping at 1, on fresh random sequences every
step, for at most ``steps`` steps (and ``seconds``, when given). Every ``eval_every``
steps it scores a held-out batch; it stops early once the score reaches ``threshold``
("learned"). The final score is measured on ``test_size`` further fresh sequences.
With ``seconds`` unset, a run is deterministic for its seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..models.cells import CELLS, make_rnn

TASKS = ("copy", "adding")
DEFAULT_LAGS = (10, 20, 50, 100, 200, 500)


@dataclass(frozen=True)
class MemoryConfig:
    """One memory experiment: the task, the network, the budget per (cell, lag)."""

    task: str = "adding"
    remember: int = 3  # K: symbols to copy
    alphabet: int = 8  # A: distinct symbols
    hidden_size: int = 64
    steps: int = 600  # training steps per (cell, lag) at most
    seconds: float | None = None  # wall-clock cap per (cell, lag) (not deterministic)
    batch_size: int = 32
    lr: float = 0.01
    eval_every: int = 25
    eval_size: int = 256
    test_size: int = 1000
    threshold: float = 0.9  # accuracy (copy) or R^2 (adding) that counts as learned
    seed: int = 0

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        check(self.task in TASKS, f"unknown task {self.task!r}: use one of {', '.join(TASKS)}")
        check(self.remember >= 1, f"remember must be >= 1, not {self.remember}")
        check(self.alphabet >= 2, f"the alphabet needs at least 2 symbols, not {self.alphabet}")
        for name in ("hidden_size", "steps", "batch_size", "eval_every", "eval_size", "test_size"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1, not {getattr(self, name)}")
        check(self.lr > 0, f"lr must be > 0, not {self.lr}")
        check(self.seconds is None or self.seconds > 0, f"seconds must be > 0, not {self.seconds}")

    @property
    def chance(self) -> float:
        return 1.0 / self.alphabet if self.task == "copy" else 0.0

    def min_lag(self) -> int:
        """The shortest lag the task has: K for copy (recall right after the K symbols), 2
        for adding (one marker in each half)."""
        return self.remember if self.task == "copy" else 2


# ---------------------------------------------------------------- data


def copy_batch(n: int, lag: int, remember: int, alphabet: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n copy sequences: inputs (N, lag+K) ids (symbols 0..A-1, blank A, recall marker
    A+1) and targets (N, K): the K symbols, to be said at positions lag .. lag+K-1."""
    if lag < remember:
        raise ConfigError(f"a copy lag must be at least the {remember} symbol(s) to copy, not {lag}")
    symbols = torch.randint(0, alphabet, (n, remember), generator=generator)
    inputs = torch.full((n, lag + remember), alphabet, dtype=torch.long)
    inputs[:, :remember] = symbols
    inputs[:, lag] = alphabet + 1
    return inputs, symbols


def adding_batch(n: int, lag: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n adding sequences: inputs (N, lag, 2) of (value, marker), targets (N,) the sum of
    the two marked values (one marker in each half)."""
    if lag < 2:
        raise ConfigError(f"an adding sequence needs a lag of at least 2, not {lag}")
    values = torch.rand(n, lag, generator=generator)
    half = lag // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = half + torch.randint(0, lag - half, (n,), generator=generator)
    markers = torch.zeros(n, lag)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    return torch.stack([values, markers], dim=2), values[rows, first] + values[rows, second]


# ---------------------------------------------------------------- the network


class MemoryNet(nn.Module):
    """Input layer -> one recurrent layer of ``cell`` -> linear readout at the scored steps."""

    def __init__(self, cell: str, config: MemoryConfig):
        super().__init__()
        self.task, self.remember = config.task, config.remember
        if config.task == "copy":
            self.inp: nn.Module = nn.Embedding(config.alphabet + 2, 16)
            out = config.alphabet
        else:
            self.inp = nn.Linear(2, 16)
            out = 1
        self.rnn = make_rnn(cell, 16, config.hidden_size, 1, 0.0)
        self.readout = nn.Linear(config.hidden_size, out)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """copy: logits (N, K, A) at the last K steps; adding: the predicted sum (N,)."""
        h, _ = self.rnn(self.inp(inputs))  # (N, T, H)
        if self.task == "copy":
            return self.readout(h[:, -self.remember:])
        return self.readout(h[:, -1]).squeeze(1)


def _batch(config: MemoryConfig, n: int, lag: int, gen: torch.Generator):
    if config.task == "copy":
        return copy_batch(n, lag, config.remember, config.alphabet, gen)
    return adding_batch(n, lag, gen)


def _loss(config: MemoryConfig, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if config.task == "copy":
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))
    return nn.functional.mse_loss(out, target)


@torch.no_grad()
def score(net: MemoryNet, config: MemoryConfig, lag: int, n: int, gen: torch.Generator) -> float:
    """Copy: the fraction of recalled symbols that are right; adding: R^2 = 1 - MSE/(1/6)."""
    net.eval()
    inputs, target = _batch(config, n, lag, gen)
    out = net(inputs)
    net.train()
    if config.task == "copy":
        return float((out.argmax(-1) == target).float().mean())
    return 1.0 - float(nn.functional.mse_loss(out, target)) * 6.0


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class MemoryResult:
    cell: str
    lag: int
    score: float  # on test_size fresh sequences
    learned: bool  # score >= threshold
    steps: int  # training steps taken
    learned_at: int | None  # the first check whose score reached the threshold
    seconds: float
    final_loss: float


def train_memory(cell: str, lag: int, config: MemoryConfig) -> MemoryResult:
    """Train a fresh MemoryNet of ``cell`` on ``lag`` within the budget and score it."""
    if cell not in CELLS:
        raise ConfigError(f"unknown cell {cell!r}: use one of {', '.join(CELLS)}")
    # One seed per (seed, lag, cell), and three streams from it: training, checks, the final test.
    # The built-in cells keep the positions they have always had (rnn's seed does not move
    # when a cell is registered); a registered cell takes its place in the table after them.
    seed = ((config.seed * 1_000_003 + lag) * 3 + list(CELLS).index(cell)) * 3
    torch.manual_seed(seed)
    train_gen, eval_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    net = MemoryNet(cell, config)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    t0 = time.perf_counter()
    learned_at, loss, step = None, math.nan, 0
    while step < config.steps:
        inputs, target = _batch(config, config.batch_size, lag, train_gen)
        loss_t = _loss(config, net(inputs), target)
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        loss = float(loss_t.detach())
        if step % config.eval_every == 0 and score(net, config, lag, config.eval_size, eval_gen) >= config.threshold:
            learned_at = step
            break
        if config.seconds is not None and time.perf_counter() - t0 >= config.seconds:
            break
    final = score(net, config, lag, config.test_size, torch.Generator().manual_seed(seed + 2))
    return MemoryResult(cell, lag, final, final >= config.threshold, step, learned_at,
                        time.perf_counter() - t0, loss)


@dataclass(frozen=True)
class MemoryTable:
    config: MemoryConfig
    cells: list[str]
    lags: list[int]
    results: list[MemoryResult]  # cells x lags, row by row

    def result(self, cell: str, lag: int) -> MemoryResult:
        return next(r for r in self.results if r.cell == cell and r.lag == lag)

    def longest_learned(self, cell: str) -> int | None:
        """The longest lag below which every lag was learned (None: not even the first)."""
        best = None
        for lag in self.lags:
            if not self.result(cell, lag).learned:
                break
            best = lag
        return best

    def as_dict(self) -> dict:
        return {"config": asdict(self.config), "chance": self.config.chance, "cells": self.cells, "lags": self.lags,
                "results": [asdict(r) for r in self.results],
                "longest_learned": {c: self.longest_learned(c) for c in self.cells}}


def memory_table(cells: Sequence[str], lags: Sequence[int], config: MemoryConfig,
                 on_result: Callable[[MemoryResult], None] = lambda r: None) -> MemoryTable:
    """Every (cell, lag) in turn; ``on_result`` hears each one as it finishes."""
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise ConfigError(f"unknown cell {unknown[0]!r}: use one of {', '.join(CELLS)}")
    if not cells or not lags:
        raise ConfigError("give at least one cell and one lag")
    short = [lag for lag in lags if lag < config.min_lag()]
    if short:
        raise ConfigError(f"lag {short[0]} is too short for the {config.task} task: the shortest is {config.min_lag()}")
    lags = sorted(set(lags))
    results = []
    for cell in cells:
        for lag in lags:
            results.append(train_memory(cell, lag, config))
            on_result(results[-1])
    return MemoryTable(config, list(cells), lags, results)
