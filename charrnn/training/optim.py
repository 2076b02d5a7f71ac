"""The optimizer every task trains with: AdamW, fused where the device has the kernel."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig, no_decay: list[nn.Parameter] = (),
                   depths: dict[str, int] | None = None) -> tuple[torch.optim.Optimizer, bool]:
    """AdamW, and whether it is the fused kernel (which can skip a step on the device).

    Weight decay applies to matrices only; biases and the matrices in ``no_decay`` (the
    embedding table: rows of rare tokens get few gradient updates) are not decayed.
    Frozen parameters (requires_grad False) are left out. With ``depths`` (parameter name ->
    depth, transfer.depths) the groups are per depth too, each with its ``depth``, so that
    the loop can give each its own learning rate.
    """
    skip = {id(p) for p in no_decay}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = []
    for depth in sorted({depths[n] for n, _ in named}) if depths else [None]:
        params = [p for n, p in named if depths is None or depths[n] == depth]
        extra = {} if depth is None else {"depth": depth}
        groups += [{"params": [p for p in params if p.dim() >= 2 and id(p) not in skip],
                    "weight_decay": cfg.weight_decay, **extra},
                   {"params": [p for p in params if p.dim() < 2 or id(p) in skip], "weight_decay": 0.0, **extra}]
    groups = [g for g in groups if g["params"]] if depths else groups
    try:
        # Fused AdamW: one kernel for all parameters (about 10x faster than the foreach
        # version on this CPU), and it honours ``found_inf`` as GradScaler uses it.
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99), fused=True), True
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without the kernel
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99)), False
