"""``charrnn train --tensorboard DIR``: the training events, as TensorBoard scalars.

The loop reports through events (training/events.py); ``events_to`` hands each event to
the progress display and to an ``EventWriter``, which writes the figures metrics.jsonl
holds, under the same step numbers:

    progress  train/loss, train/bpc (language models), train/lr, train/epoch and the
              throughput, train/tokens_per_sec (examples_per_sec, pairs_per_sec)
    eval      val/loss and every other validation figure: val/bpc, val/accuracy,
              val/macro_f1, val/ter, val/unseen_accuracy, ...

Only rank 0 receives events (Trainer.on_event is a no-op on the other ranks), so only it
opens a writer, when the run starts. The writer needs the ``tensorboard`` package
(``torch.utils.tensorboard`` imports it); ``check`` says so before any work.

A resumed run continues the same log: its writer starts with ``purge_step`` one past the
resumed step, so TensorBoard drops the events an earlier process wrote after that step
(as the run drops those records from metrics.jsonl). A new run purges from step 0, so
the events of an earlier run left in DIR (say, before ``--overwrite``) are not drawn as
part of this one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..training.events import Event

INSTALL = "pip install 'charrnn[tensorboard]'"


def check(log_dir: Path) -> None:
    """Refuse, before any data is read, a --tensorboard that cannot be written."""
    try:
        import torch.utils.tensorboard  # noqa: F401  (imports the tensorboard package)
    except ImportError:
        raise ConfigError(f"--tensorboard needs the tensorboard package: {INSTALL}") from None
    if log_dir.exists() and not log_dir.is_dir():
        raise ConfigError(f"--tensorboard {log_dir}: exists and is not a directory")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scalars(event: Event) -> dict[str, float]:
    """The TensorBoard tags and values of one event (none for start, skip, rollback, done)."""
    d = event.data
    if event.kind == "progress":
        # The progress event also carries the last validation figure (for the bar): that
        # belongs to its evaluation's step, not this one.
        out = {f"train/{k[len('train_'):]}": v for k, v in d.items() if k.startswith("train_")}
        out.update({f"train/{k}": v for k, v in d.items() if k in ("lr", "epoch") or k.endswith("_per_sec")})
    elif event.kind == "eval":
        out = {f"val/{k[len('val_'):]}": v for k, v in d.items() if k.startswith("val_")}
    else:
        return {}
    return {tag: float(v) for tag, v in out.items() if _number(v)}


class EventWriter:
    """A SummaryWriter on ``log_dir``, opened by the run's start event."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.writer = None

    def __call__(self, event: Event) -> None:
        if event.kind == "start":
            from torch.utils.tensorboard import SummaryWriter

            resumed = event.data.get("resumed_from")
            self.close()
            try:
                self.writer = SummaryWriter(str(self.log_dir), purge_step=0 if resumed is None else resumed + 1)
            except OSError as e:
                raise ConfigError(f"--tensorboard {self.log_dir}: cannot write there ({e.strerror or e})") from None
            return
        if self.writer is None:
            return
        for tag, value in scalars(event).items():  # NaN too, as in metrics.jsonl (no unseen word, say)
            self.writer.add_scalar(tag, value, event.step)
        if event.kind in ("eval", "done"):
            self.writer.flush()  # at least at every save: what a checkpoint holds is in the log too

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@contextlib.contextmanager
def events_to(log_dir: Path | None, on_event: Callable[[Event], None]) -> Iterator[Callable[[Event], None]]:
    """``on_event``, and with a ``log_dir`` also the TensorBoard writer; the writer is closed
    (its events flushed) however the run ends: done, interrupted or failed."""
    if log_dir is None:
        yield on_event
        return
    writer = EventWriter(log_dir)

    def both(event: Event) -> None:
        on_event(event)
        writer(event)

    try:
        yield both
    finally:
        writer.close()
