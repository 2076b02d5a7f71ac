"""Resumable epochs of shuffled, length-bucketed batches, shared by the example-wise tasks
(classification, sequence to sequence, tagging, conditioned generation).

The order of an epoch is a pure function of (seed, epoch): ``EpochBatches`` keeps only
``epoch`` and ``position`` (the index of the next batch inside the epoch), so a trainer
that stores the two continues with exactly the batches an uninterrupted run would get.
"""

from __future__ import annotations

import math
import random
from typing import Any

# Bucketing sorts by length inside chunks of this many batches: large enough that batches
# hold similar lengths (little padding), small enough that batch contents stay random.
BUCKET_BATCHES = 50


def bucketed_plan(lengths: list, batch_size: int, key: str, bucket: bool = True) -> list[list[int]]:
    """The item indices of every batch of one epoch: a shuffle, then (``bucket``) chunks of
    ``BUCKET_BATCHES`` batches sorted by ``lengths`` and cut into batches, which are
    shuffled again (otherwise every chunk would run from short to long batches).

    The generator is seeded with the string ``key`` (hashed, e.g. "name:seed:epoch"),
    never global RNG state: that is what makes resume exact, and (seed, epoch + 1) and
    (seed + 1, epoch) do not share an order as seed + epoch would."""
    rng = random.Random(key)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not bucket:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    chunk = batch_size * BUCKET_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        # Stable sort: equal lengths keep their shuffled order.
        part = sorted(order[start : start + chunk], key=lengths.__getitem__)
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


class EpochBatches:
    """Batches planned per epoch by ``bucketed_plan`` over ``lengths`` (the sort keys);
    subclasses turn a batch's item indices into what their task reads (``batch``).

    ``name`` keys the shuffles ("name:seed:epoch"): keep it fixed for a kind of data, or
    resumed runs would get other batches."""

    name = "batches"

    def __init__(self, lengths: list, batch_size: int, seed: int, bucket: bool = True):
        if not lengths:
            raise ValueError("no examples to batch")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.lengths, self.batch_size, self.seed, self.bucket = lengths, batch_size, seed, bucket
        self.epoch = 0
        self.position = 0
        self._plan_epoch: int | None = None
        self._plan: list[list[int]] = []

    @property
    def windows_per_epoch(self) -> int:
        """Batches per epoch (named like StreamBatches' so the trainer treats all alike)."""
        return math.ceil(len(self.lengths) / self.batch_size)

    def plan(self, epoch: int) -> list[list[int]]:
        """The item indices of every batch of ``epoch``, in order (cached per epoch)."""
        if self._plan_epoch != epoch:
            self._plan = bucketed_plan(self.lengths, self.batch_size, f"{self.name}:{self.seed}:{epoch}", self.bucket)
            self._plan_epoch = epoch
        return self._plan

    def batch(self, epoch: int, index: int) -> Any:
        """Batch ``index`` of ``epoch`` as the task reads it (here: its item indices)."""
        if not 0 <= index < self.windows_per_epoch:
            raise IndexError(f"batch {index} of an epoch of {self.windows_per_epoch}")
        return self.plan(epoch)[index]

    def next(self) -> tuple[Any, bool]:
        """The next batch, and whether it is the first of an epoch after the first."""
        if self.position >= self.windows_per_epoch:
            self.epoch += 1
            self.position = 0
        # Derived from the state alone, so a run resumed at an epoch start agrees too.
        new_epoch = self.position == 0 and self.epoch > 0
        out = self.batch(self.epoch, self.position)
        self.position += 1
        return out, new_epoch
