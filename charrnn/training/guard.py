"""Divergence handling: skip non-finite steps, roll back after too many in a row.

A step whose loss or gradient norm is not finite is skipped: the optimizer does not apply
it (on the device, without a host sync, where the fused AdamW is available) and the task
puts its carried state back as it was before the step. After ``rollback_after`` skipped
steps in a row the weights and optimizer state are reloaded from the latest checkpoint
(always finite, since bad steps never reach the weights) and the learning rate is
multiplied by ``rollback_lr_factor``; after ``max_rollbacks`` rollbacks the run stops with
TrainingDiverged. There is no "loss grew too much" abort.

The counters live on the device and are read only at each check, so a CUDA step needs no
extra host sync.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import CheckpointError, TrainingDiverged
from . import distributed
from .state import load_optimizer

if TYPE_CHECKING:
    from .loop import Trainer

ACCUMULATORS = ("loss_sum", "ok_count", "bad_new", "bad_run", "bad_run_max")


class DivergenceGuard:
    def __init__(self, trainer: Trainer, device: torch.device):
        self.tr = trainer
        self.loss_sum = torch.zeros((), device=device)  # summed finite losses since the last log
        self.ok_count = torch.zeros((), dtype=torch.long, device=device)  # their number
        self.bad_new = torch.zeros((), dtype=torch.long, device=device)  # skipped since the last check
        self.bad_run = torch.zeros((), dtype=torch.long, device=device)  # skipped in a row, now
        self.bad_run_max = torch.zeros((), dtype=torch.long, device=device)  # longest run since the check
        self.rollbacks = 0
        self.lr_factor = 1.0
        self.skipped = 0
        self.in_a_row = 0  # skipped steps in a row at the last check

    def record(self, loss: torch.Tensor, ok: torch.Tensor) -> None:
        """Count one step (on the device): its loss if finite, else one more skip."""
        self.loss_sum += torch.where(ok, loss.float(), 0.0)
        self.ok_count += ok
        bad = (~ok).long()
        self.bad_new += bad
        self.bad_run.mul_(bad).add_(bad)  # consecutive skipped steps: reset on a good one
        torch.maximum(self.bad_run_max, self.bad_run, out=self.bad_run_max)

    def train_loss(self) -> float | None:
        """Mean finite loss since the last call (the one host sync per log interval)."""
        count = int(self.ok_count)
        loss = float(self.loss_sum) / count if count else None
        self.loss_sum.zero_()
        self.ok_count.zero_()
        return loss

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"acc.{name}": getattr(self, name) for name in ACCUMULATORS}

    def restore(self, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
        self.rollbacks, self.lr_factor = int(meta["rollbacks"]), float(meta["lr_factor"])
        self.skipped = int(meta["skipped"])
        for name in ACCUMULATORS:
            getattr(self, name).copy_(tensors[f"acc.{name}"])

    def check(self) -> None:
        """Report the steps skipped since the last check; roll back after too many in a row."""
        tr = self.tr
        new = int(self.bad_new)
        if not new:
            self.in_a_row = 0
            return
        longest, now_in_a_row = int(self.bad_run_max), int(self.bad_run)
        # A new streak began since the last check unless all new skips continue the old one.
        new_streak = self.in_a_row == 0 or new > now_in_a_row
        self.in_a_row = now_in_a_row
        self.skipped += new
        self.bad_new.zero_()
        self.bad_run_max.copy_(self.bad_run)
        tr.log({"event": "skip", "step": tr.step, "skipped": new, "total_skipped": self.skipped})
        tr.emit("skip", {"skipped": new, "total_skipped": self.skipped, "in_a_row": longest,
                         "new_streak": new_streak, "rollback_after": tr.cfg.rollback_after})
        if longest >= tr.cfg.rollback_after:
            self.rollback(longest)

    def rollback(self, in_a_row: int) -> None:
        tr = self.tr
        if self.rollbacks >= tr.cfg.max_rollbacks:
            latest = tr.run_dir.latest if tr.run_dir is not None else "latest.safetensors"
            where = f"{latest} (step {tr.saved_step})" if tr.saved_step is not None else "none"
            raise TrainingDiverged(
                f"training diverged: {in_a_row} steps in a row had a non-finite loss or gradient at step "
                f"{tr.step}, after {self.rollbacks} rollback(s) (learning rate now x{self.lr_factor:g}); "
                f"the last good checkpoint is {where}"
            )
        # Rank 0 holds the file; the other ranks load a copy of its bytes.
        path = distributed.share_file(tr.dist, tr.run_dir.latest if tr.main else None, ".safetensors")

        def load() -> Checkpoint:
            ck = load_checkpoint(path, resume=True)
            try:
                tr.model.load_state_dict(ck.weights, strict=True)
                load_optimizer(tr.opt, ck.resume or {}, ck.resume_tensors)
            except (KeyError, ValueError, RuntimeError) as e:
                raise CheckpointError(f"{ck.path}: cannot roll back to it ({e})") from None
            return ck

        ck = distributed.each(tr.dist, load)
        self.rollbacks += 1
        self.lr_factor *= tr.cfg.rollback_lr_factor
        tr.task.reset()
        self.in_a_row = 0
        for t in (self.bad_run, self.bad_run_max):
            t.zero_()
        data = {"rollback": self.rollbacks, "to_step": ck.step, "lr_factor": self.lr_factor, "in_a_row": in_a_row}
        tr.log({"event": "rollback", "step": tr.step, **data})
        tr.emit("rollback", data)
