"""The learning-rate schedule and the run's limits (steps, epochs, time budget).

Stopping: ``max_steps``, ``epochs`` and ``time_budget`` are limits; the first one reached
ends the run. The learning-rate schedule follows the same limits: its progress is the
largest fraction done of any of them, so a run with only a time budget decays its learning
rate over that budget. A time budget keeps back what the final evaluation and save need,
so the run ends inside it with both done. On a resumed run the budget counts the time
already spent by the earlier processes of the run.
"""

from __future__ import annotations

import math
import time

from ..config import TrainConfig
from .sizing import run_seconds


SLANT_RISE = 0.1  # the slanted triangular schedule rises over this fraction of the run (ULMFiT's cut_frac)


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """The learning rate at ``step``, ``progress`` (0 to 1) through the run. "cosine": linear
    warmup over ``warmup_steps``, then cosine decay to lr * min_lr_ratio. "slanted": from
    lr * min_lr_ratio up to lr linearly over the first SLANT_RISE of the run, then linearly
    down to lr * min_lr_ratio at its end."""
    p = min(max(progress, 0.0), 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "slanted":
        shape = p / SLANT_RISE if p < SLANT_RISE else (1.0 - p) / (1.0 - SLANT_RISE)
        return floor + (cfg.lr - floor) * shape
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * p))


def anneal_progress(progress: float, anneal: tuple[int, float] | None, step: int, length: int) -> float:
    """The schedule's progress once the validation score has stalled (``anneal``: the step
    and progress where it did): from there it runs to 1 over ``length`` steps (or sooner, if
    the run's own limits get there first), so the learning rate anneals to its floor."""
    if anneal is None:
        return progress
    start, p0 = anneal
    return max(progress, p0 + (1.0 - p0) * min((step - start) / max(length, 1), 1.0))


def planned_steps(cfg: TrainConfig, batches_per_epoch: int) -> int | None:
    """The step limit from ``max_steps`` and ``epochs``, whichever comes first; None if neither."""
    epochs = cfg.effective_epochs
    limits = [s for s in (cfg.max_steps, epochs and math.ceil(epochs * batches_per_epoch)) if s]
    return min(limits) if limits else None


class Limits:
    """When the run stops and how far along it is, from its clock (``t0``) and step count.

    ``items_seen`` / ``train_t0`` give the training speed before any evaluation was timed;
    ``val_size`` items are read by each evaluation.
    """

    def __init__(self, cfg: TrainConfig, planned: int | None, val_size: int):
        self.cfg, self.planned, self.val_size = cfg, planned, val_size
        self.t0 = time.perf_counter()
        self.train_t0 = self.t0
        self.items_seen = 0
        self.eval_seconds: float | None = None
        self.save_seconds = 0.5
        self.step_seconds = 0.0

    def reserve(self) -> float:
        """Seconds kept back from a time budget for the final evaluation and save."""
        est_eval = self.eval_seconds
        if est_eval is None:
            # A forward pass over the validation data, without backward or optimizer
            # step, costs about a third of training on as many items.
            rate = self.items_seen / max(time.perf_counter() - self.train_t0, 1e-6) if self.items_seen else 5e4
            est_eval = self.val_size / max(3 * rate, 1.0)
        evals = 2 if self.cfg.average_last >= 2 else 1  # --average-last scores the mean after the last one
        return 1.2 * evals * est_eval + 2 * self.save_seconds + 0.5

    def progress(self, step: int, now: float) -> float:
        fractions = [0.0]
        if self.planned:
            fractions.append(step / self.planned)
        if self.cfg.time_budget:
            fractions.append((now - self.t0) / max(self.cfg.time_budget - self.reserve(), 1e-6))
        return max(fractions)

    def reached(self, step: int, now: float, ahead: int = 1) -> bool:
        """Whether to stop now; ``ahead``: steps until the next chance to stop."""
        if self.planned is not None and step >= self.planned:
            return True
        budget = self.cfg.time_budget
        return budget is not None and now - self.t0 + ahead * self.step_seconds + self.reserve() >= budget

    def steps_done(self, step: int) -> bool:
        return self.planned is not None and step >= self.planned

    def room_for_eval(self) -> bool:
        """Whether a periodic evaluation leaves the final one its reserve."""
        budget = self.cfg.time_budget
        return budget is None or time.perf_counter() - self.t0 + 2 * self.reserve() < budget

    def predicted_seconds(self, step: int, speed: float | None) -> float | None:
        """When the run should end, in seconds since ``t0``: the time budget, or the steps
        left at the measured speed (``speed``, from sizing); None when nothing was measured."""
        if self.cfg.time_budget:
            return self.cfg.time_budget
        if not speed or self.planned is None:
            return None
        left = run_seconds(speed, max(self.planned - step, 0), self.cfg, self.val_size)
        return time.perf_counter() - self.t0 + left + self.save_seconds * 2
