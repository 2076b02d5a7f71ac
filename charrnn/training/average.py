"""Averaging the weights of several checkpoints of one shape: runs of the same task, model
and tokenizer with other seeds (or other stopping points), made one model that costs no
more to run than each of them. The average is an ordinary checkpoint (best.safetensors of
a new run directory) that every command loads; it holds no training state, so it is not
resumed (train again from its runs instead).

Averaging weights helps where the runs sit in one basin of the loss, as the checkpoints of
one run late in training do (stochastic weight averaging, Izmailov et al. 2018); runs
trained from other seeds may sit in different basins, where their average can be worse
than each: measure it (``charrnn eval``) before relying on it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..config import to_dict
from ..errors import CharrnnError, CheckpointError, ConfigError
from ..files import BEST, LATEST

# Task state that says what the outputs mean: runs that differ here cannot be averaged
# (a classifier's labels in another order would swap its outputs).
MEANING = ("labels", "tags", "words", "reverse_target")


def _same_shape(first: Checkpoint, other: Checkpoint) -> None:
    where = f"{other.path} and {first.path}"
    if other.task != first.task or other.model_kind != first.model_kind:
        raise CheckpointError(f"{where}: a {other.task} run and a {first.task} run; only runs of one task average")
    a, b = to_dict(first.model_config), to_dict(other.model_config)
    diff = [k for k in a if a[k] != b.get(k)]
    if diff:
        raise CheckpointError(f"{where}: the models differ in {', '.join(f'{k} ({b.get(k)} and {a[k]})' for k in diff)}")
    (meta_a, tens_a), (meta_b, tens_b) = first.tokenizer.state(), other.tokenizer.state()
    if meta_a != meta_b or tens_a.keys() != tens_b.keys() or not all(torch.equal(tens_a[k], tens_b[k]) for k in tens_a):
        raise CheckpointError(f"{where}: their tokenizers differ (average runs trained on the same data with the "
                              f"same tokenizer options)")
    sa, sb = first.task_state or {}, other.task_state or {}
    diff = [k for k in MEANING if sa.get(k) != sb.get(k)]
    if diff:
        raise CheckpointError(f"{where}: their {', '.join(diff)} differ")


def mean_weights(weights: list[dict[str, torch.Tensor]], where: str = "") -> dict[str, torch.Tensor]:
    """The mean of every floating-point tensor (computed in float64, stored in its own
    dtype); other tensors must be equal in all of them."""
    out = {}
    for name, first in weights[0].items():
        tensors = [w[name] for w in weights]
        if first.is_floating_point():
            out[name] = torch.stack([t.double() for t in tensors]).mean(0).to(first.dtype)
        elif all(torch.equal(first, t) for t in tensors[1:]):
            out[name] = first.clone()
        else:
            raise CheckpointError(f"{where}: its {name} is not a number to average and differs between the runs")
    return out


def average_weights(checkpoints: list[Checkpoint]) -> dict[str, torch.Tensor]:
    return mean_weights([ck.weights for ck in checkpoints], str(checkpoints[0].path))


def average(paths: list[str | os.PathLike], out: str | os.PathLike, latest: bool = False,
            overwrite: bool = False) -> Path:
    """Average the checkpoints of ``paths`` (run directories: their best, or with
    ``latest`` their latest; or checkpoint files) into ``out``/best.safetensors."""
    if len(paths) < 2:
        raise ConfigError("averaging needs at least two runs or checkpoints")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CharrnnError(f"{out}: exists and is not a directory")
    if not overwrite and any((out / n).exists() for n in (BEST, LATEST)):
        raise CharrnnError(f"{out} already holds a checkpoint: pass --overwrite to replace it, or another --out")
    checkpoints = [load_checkpoint(p, latest=latest) for p in paths]
    first = checkpoints[0]
    for other in checkpoints[1:]:
        _same_shape(first, other)
    model = first.build_model("cpu")
    model.load_state_dict(average_weights(checkpoints))
    out.mkdir(parents=True, exist_ok=True)
    if (out / LATEST).exists():  # replaced: an average is not a run to resume
        (out / LATEST).unlink()
    state = {**(first.task_state or {}), **first.task_tensors} if first.task_state is not None else None
    metrics = {"step": first.step, "averaged_from": [str(ck.path) for ck in checkpoints],
               "averaged_steps": [ck.step for ck in checkpoints]}
    save_checkpoint(out / BEST, model, first.train_config, first.tokenizer, first.step, metrics, sizing=first.sizing,
                    task=first.task, task_state=state)
    return out / BEST
