"""Averaging the weights of the last evaluations of a run (``--average-last K``): stochastic
weight averaging (Izmailov et al. 2018) over the end of the schedule, where the weights
move around one basin of the loss and their mean sits nearer its centre than any of them.

The averager keeps a copy of the model's weights at each of the last K evaluations (in
the latest checkpoint too, so a resumed run averages the same ones). When the run ends,
their mean is scored on the validation data like any evaluation; if it scores better than
the best checkpoint it becomes the best checkpoint (the run's model), with ``averaged``
in its metrics; either way the summary says what it scored. The latest checkpoint keeps
the last weights, so a resumed run trains on from them.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .loop import Trainer


class Averager:
    """The weights of the last ``keep`` evaluations (``keep`` < 2: off)."""

    def __init__(self, keep: int):
        self.keep = keep
        self.snapshots: deque[tuple[int, dict[str, torch.Tensor]]] = deque(maxlen=max(keep, 1))
        self.result: dict[str, Any] | None = None

    @property
    def on(self) -> bool:
        return self.keep >= 2

    def add(self, model: torch.nn.Module, step: int) -> None:
        if not self.on:
            return
        if self.snapshots and self.snapshots[-1][0] == step:
            self.snapshots.pop()  # the same step evaluated again (a resumed run's replay)
        self.snapshots.append((step, {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}))

    def mean(self) -> dict[str, torch.Tensor]:
        """The element-wise mean of the kept weights."""
        from .average import mean_weights

        return mean_weights([weights for _, weights in self.snapshots], "--average-last")

    # ------------------------------------------------------------------ resume

    def tensors(self) -> tuple[list[int], dict[str, torch.Tensor]]:
        steps = [step for step, _ in self.snapshots] if self.on else []
        tensors = {f"avg.{i}.{k}": v for i, (_, w) in enumerate(self.snapshots) for k, v in w.items()} if self.on else {}
        return steps, tensors

    def restore(self, steps: list[int], tensors: dict[str, torch.Tensor]) -> None:
        """The kept weights of a saved run (the oldest drop out if ``keep`` is now smaller)."""
        self.snapshots.clear()
        if not self.on:
            return
        for i, step in enumerate(steps):
            prefix = f"avg.{i}."
            self.snapshots.append((int(step), {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}))

    # ------------------------------------------------------------------ the end of the run

    def finish(self, tr: Trainer) -> None:
        """Score the mean of the kept weights; make it the best checkpoint if it is better."""
        from .report import improved, validate

        if not self.on or len(self.snapshots) < 2:
            return
        model = tr.model
        last = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.mean())
        try:
            found, _ = validate(tr)
            better = improved(tr, found)
            headline = tr.task.headline
            steps = [step for step, _ in self.snapshots]
            self.result = {"evaluations": len(steps), "from_step": steps[0], "to_step": steps[-1],
                           headline: found[headline], "kept": better}
            if better:
                metrics = {**tr.best, **found, "step": tr.step, "averaged": len(steps)}
                tr.best = dict(metrics)
                tr.save("best", {**metrics, f"best_{headline}": found[headline], "best_step": tr.step})
            tr.log({"event": "average", "step": tr.step, **found, "evaluations": len(steps), "from_step": steps[0],
                    "best": better})
            tr.emit("average", {**self.result, "headline": headline})
        finally:
            model.load_state_dict(last)
