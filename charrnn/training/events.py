"""What the training loop reports (``Event``) and returns (``TrainResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class Event:
    """A report from the loop. kind: "start", "progress", "eval", "skip", "rollback" or "done"."""

    kind: str
    step: int
    elapsed: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    summary: dict[str, Any]
    model: nn.Module
    tokenizer: Any
