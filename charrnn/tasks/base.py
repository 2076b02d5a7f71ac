"""The Task interface: what the one trainer needs from a kind of sequence problem.

A task owns its data (batches), its model (built from its config), the loss of a batch
and its validation metrics; the trainer (training/loop.py) owns everything generic:
schedule, limits, divergence handling, signals, resume, processes, events. The trainer
never looks inside a batch.

    trainer                          task
    -------                          ----
    seed, build                 ->   build_model()                 the nn.Module
    each step                   ->   batches.next()                a batch, as loss() reads it
                                     loss(net, batch)              scalar loss, items counted
    after the update            ->   keep(ok)                      keep or undo carried state
    each evaluation             ->   validate(dtype)               {"val_loss": ..., ...}
    each save (resumable)       ->   carried() / restore_carried() carried state tensors

Batches are resumable: ``epoch`` and ``position`` (the next batch inside the epoch) say
where the data is, and setting them back continues exactly there.

A task is declared to the rest of charrnn by a ``TaskSpec`` (tasks/registry.py), whose
``setup`` builds it for a run from the options; its config class must be valid with its
defaults alone (the data sets the vocabulary and label sizes).

Several processes: the task takes its share of each global batch (``shard``) and scales
its loss so that the mean over the processes is the loss of the whole batch; the trainer
averages gradients and losses over processes.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn


class Batches(Protocol):
    epoch: int
    position: int

    @property
    def windows_per_epoch(self) -> int: ...

    def next(self) -> Any: ...


class Task:
    """Base class of the tasks; subclasses fill in every method that raises here."""

    name = ""  # "lm", "classify": stored in the checkpoint
    headline = "val_loss"  # the metric shown first and stored as best_<headline>
    best_key = "val_loss"  # the metric that picks the best checkpoint ...
    higher_is_better = False  # ... and which way is better
    rate_name = "tokens_per_sec"  # what the throughput counts
    val_size = 0  # items (tokens, examples) validation reads: how long it takes is estimated from it
    batches: Batches
    model: nn.Module
    # The model's config, set from the data (vocabulary, labels). On resume the trainer
    # replaces it with the checkpoint's, so ``build_model`` must build from this attribute.
    model_config: Any

    # ----------------------------------------------------------- set-up

    def shard(self, rank: int, world: int) -> None:
        """Train on this process's part of every batch (several processes)."""
        raise NotImplementedError

    def to_device(self, device: torch.device) -> None:
        """Move what the batches read from to ``device`` (optional)."""

    def build_model(self, device: torch.device) -> nn.Module:
        """Build the model from the task's config (the trainer has seeded torch); set
        ``self.model`` and return it."""
        raise NotImplementedError

    def no_decay(self, model: nn.Module) -> list[nn.Parameter]:
        """Matrices that weight decay leaves alone (embeddings: rare rows get few updates)."""
        return []

    # ----------------------------------------------------------- stepping

    def loss(self, net: nn.Module, batch: Any, device: torch.device, dtype: torch.dtype | None) -> tuple[torch.Tensor, int]:
        """The loss of ``batch`` through ``net`` (the model or its DDP wrapper), and the
        number of items (tokens, examples) it covers on this process; optionally a third
        element, the loss to report when the one trained on adds regularisation terms."""
        raise NotImplementedError

    def keep(self, ok: torch.Tensor) -> None:
        """After a step: keep the carried state it made if ``ok`` (a device bool), else go
        back to the state before it. No carried state: nothing to do."""

    def reset(self) -> None:
        """Forget the carried state (the data jumps, or the weights were rolled back)."""

    def carried(self) -> list[torch.Tensor]:
        """This process's carried state, for a resumable checkpoint."""
        return []

    def restore_carried(self, parts: list[torch.Tensor], rows: slice | None, device: torch.device) -> None:
        """Set the carried state from a checkpoint (``rows``: this process's rows)."""

    # ----------------------------------------------------------- reporting

    def validate(self, model: nn.Module, dtype: torch.dtype | None) -> dict[str, float]:
        """Validation metrics, at least ``val_loss`` and ``self.headline``."""
        raise NotImplementedError

    def train_metrics(self, train_loss: float | None) -> dict[str, Any]:
        """Task figures derived from the mean training loss of a log interval."""
        return {}

    def start_info(self) -> dict[str, Any]:
        """What the start event says about the data (sizes, vocabulary, labels)."""
        return {}

    def summary(self, best: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
        """Task metrics for the end-of-run summary from the best and last evaluations."""
        return {"val_loss": best["val_loss"], self.headline: best[self.headline], "final_val_loss": last["val_loss"],
                f"final_{self.headline}": last[self.headline]}

    def checkpoint_parts(self) -> dict[str, Any]:
        """What a checkpoint stores besides weights and training state: the tokenizer and
        the task's own JSON state (``task_state``)."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """A digest of the training and validation data: resuming needs the same data."""
        raise NotImplementedError


class ExampleTask(Task):
    """A task over whole examples (no carried state, ``data`` with a ``fingerprint``):
    under several processes each takes a contiguous share of the rows of every batch."""

    data: Any
    share: tuple[int, int] = (0, 1)  # (rank, world)

    @property
    def fingerprint(self) -> str:
        return self.data.fingerprint

    def shard(self, rank: int, world: int) -> None:
        self.share = (rank, world)

    def rows(self, n: int) -> tuple[slice, float]:
        """This process's rows of a batch of ``n`` and the factor of its summed loss: the
        number of processes, so that their mean is the loss of the whole batch; a share
        with no rows still runs its first row (DDP needs every process to) with factor 0."""
        rank, world = self.share
        lo, hi = rank * n // world, (rank + 1) * n // world
        return (slice(lo, hi), float(world)) if hi > lo else (slice(0, 1), 0.0)
