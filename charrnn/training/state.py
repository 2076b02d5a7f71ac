"""The resumable training state: what ``latest.safetensors`` holds beyond the weights.

Everything the loop needs to go on exactly where it was: optimizer moments and step
counts, the step counter (so the schedule position), the data position (epoch and batch),
the task's carried state (the language model's hidden state), the RNG states of every
process and the divergence counters. A run stopped after N steps and resumed for M more
makes the same updates and logs the same losses as one run of N + M steps (bitwise on
the CPU with the same thread count).

With several processes, each save gathers every rank's carried state (rows in rank order:
the global batch) and RNG state; rank 0 stores them under the one-process names.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import Checkpoint
from ..errors import CheckpointError, CorpusError
from . import distributed

if TYPE_CHECKING:
    from .loop import Trainer

RESUME_VERSION = 1  # version of the training state stored in latest.safetensors
RANK_SEED_STRIDE = 1_000_003  # rank r > 0 draws dropout masks from seed + r * this
# The keys of the last evaluation as the first release stored them (restored as val_*).
_OLD_LAST_VAL = {"loss": "val_loss", "bpc": "val_bpc", "unknown": "val_unknown"}


def _rng_tensors(tr: Trainer) -> tuple[dict[str, torch.Tensor], int]:
    tensors: dict[str, torch.Tensor] = {}
    cuda_rng = 0
    if tr.dist is None:
        tensors["rng.cpu"] = torch.get_rng_state()
        if tr.device.type == "cuda":
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
                cuda_rng += 1
    else:
        # Every rank's generators: rank 0's under the one-process names, the others' by rank.
        for r, s in enumerate(distributed.all_gather(tr.dist, torch.get_rng_state())):
            tensors["rng.cpu" if r == 0 else f"rng.rank{r}.cpu"] = s
        if tr.device.type == "cuda":
            for r, s in enumerate(distributed.all_gather(tr.dist, torch.cuda.get_rng_state(tr.device))):
                tensors["rng.cuda.0" if r == 0 else f"rng.rank{r}.cuda"] = s
            cuda_rng = 1
    return tensors, cuda_rng


def resume_state(tr: Trainer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """JSON and tensors from which ``restore`` continues the run exactly here."""
    opt_state = tr.opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, entries in opt_state["state"].items():
        for name, value in entries.items():
            tensors[f"opt.{index}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    rng, cuda_rng = _rng_tensors(tr)
    tensors.update(rng)
    parts = tr.task.carried()
    if tr.dist and parts:  # (L, N/W, H) per rank -> the global (L, N, H), rows in rank order
        parts = [torch.cat(distributed.all_gather(tr.dist, s), dim=1) for s in parts]
    for i, s in enumerate(parts):
        tensors[f"hidden.{i}"] = s
    tensors.update(tr.guard.tensors())
    average_steps, average = tr.averager.tensors()
    tensors.update(average)
    g = tr.guard
    meta = {
        "version": RESUME_VERSION,
        "step": tr.step,
        "epoch": tr.task.batches.epoch,
        "position": tr.task.batches.position,
        "elapsed": time.perf_counter() - tr.t0,
        "best": tr.best,
        "last_val": tr.last_val,
        "last_eval_step": tr.last_eval_step,
        "stale_evals": tr.stale_evals,
        "anneal": list(tr.anneal) if tr.anneal is not None else None,
        "average_steps": average_steps,
        "rollbacks": g.rollbacks,
        "lr_factor": g.lr_factor,
        "skipped": g.skipped,
        "fingerprint": tr.task.fingerprint,
        "optimizer_groups": opt_state["param_groups"],
        "hidden": len(parts),
        "cuda_rng": cuda_rng,
        "world_size": tr.world,
    }
    return meta, tensors


def load_optimizer(opt: torch.optim.Optimizer, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = []
    for saved, current in zip(meta["optimizer_groups"], opt.param_groups):
        g = dict(saved)
        for k in ("fused", "foreach", "capturable"):  # how to run, not what to compute
            if k in current:
                g[k] = current[k]
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def _restore_rng(tr: Trainer, r: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    rank = tr.dist.rank if tr.dist else 0
    cpu_key = "rng.cpu" if rank == 0 else f"rng.rank{rank}.cpu"
    if cpu_key in t:
        torch.set_rng_state(t[cpu_key])
    else:  # a rank the saved run did not have: its own stream, from the seed and the step
        torch.manual_seed(tr.cfg.seed + RANK_SEED_STRIDE * rank + tr.step)
    if tr.device.type == "cuda":
        if tr.dist is None and r["cuda_rng"] == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([t[f"rng.cuda.{i}"] for i in range(r["cuda_rng"])])
        elif tr.dist is not None:
            cuda_key = "rng.cuda.0" if rank == 0 else f"rng.rank{rank}.cuda"
            if cuda_key in t:
                torch.cuda.set_rng_state(t[cuda_key], tr.device)


def restore(tr: Trainer, ck: Checkpoint) -> None:
    """Continue ``tr`` from the training state in ``ck`` (loaded with resume=True)."""
    r, t = ck.resume or {}, ck.resume_tensors
    where = ck.path
    if r.get("version") != RESUME_VERSION:
        raise CheckpointError(f"{where}: training state version {r.get('version')} is not supported by this charrnn")
    if r.get("fingerprint") != tr.task.fingerprint:
        raise CorpusError(
            "the training or validation data differs from the one this run was trained on "
            "(same data files and validation split needed to resume)"
        )
    batches = tr.task.batches
    try:
        tr.model.load_state_dict(ck.weights, strict=True)
        load_optimizer(tr.opt, r, t)
        if not 0 <= r["position"] <= batches.windows_per_epoch:
            raise ValueError("data position out of range")
        tr.step = int(r["step"])
        batches.epoch, batches.position = int(r["epoch"]), int(r["position"])
        tr.best, tr.last_val = r["best"], r["last_val"]
        if tr.last_val and "loss" in tr.last_val:
            tr.last_val = {_OLD_LAST_VAL.get(k, k): v for k, v in tr.last_val.items()}
        tr.last_eval_step = int(r["last_eval_step"])
        tr.stale_evals = int(r.get("stale_evals", 0))  # runs from before early stopping had none
        anneal = r.get("anneal")
        tr.anneal = (int(anneal[0]), float(anneal[1])) if anneal else None
        tr.averager.restore(r.get("average_steps") or [], t)
        tr.guard.restore(r, t)
        parts = [t[f"hidden.{i}"] for i in range(int(r["hidden"]))]
        tr.task.restore_carried(parts, tr.rows, tr.device)
        _restore_rng(tr, r, t)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{where}: training state is damaged or does not fit this run ({e})") from None
    tr.resumed_from = tr.step
    tr.saved_step = tr.step
    # The budget covers the whole run: count the time the earlier processes spent.
    tr.limits.t0 -= float(r["elapsed"])
