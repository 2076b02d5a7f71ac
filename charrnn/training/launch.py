"""Starting a run of several processes on this machine (``charrnn train --nproc N``): the
checks every process would make, then torchrun; and when such a process's time budget
started counting."""

from __future__ import annotations

import time

from ..checkpoint import load_checkpoint
from ..errors import CharrnnError, ConfigError
from . import distributed
from .run import default_out

START_ENV = "CHARRNN_START_TIME"  # wall-clock start of a --nproc command, for its processes' time budget


def start_time(command_start: float | None) -> float:
    """When this run's time budget started counting (time.perf_counter): the command's start,
    or, in a process started by ``launch``, the start of the command that launched it."""
    import contextlib
    import os

    t0 = command_start if command_start is not None else time.perf_counter()
    if distributed.launched() and os.environ.get(START_ENV):
        with contextlib.suppress(ValueError):
            t0 = time.perf_counter() - max(time.time() - float(os.environ[START_ENV]), 0.0)
    return t0


def _without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` or ``name=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def launch(nproc: int | None, argv: list[str], corpus: list[str], out, resume: bool, batch_size: int, device: str,
           device_given: bool, t0: float) -> int | None:
    """For a run of several processes: the checks they would all make, then (with ``nproc``
    > 1) start them with torchrun on this machine, each running ``argv`` without --nproc,
    and return their exit code; None when this process is one of them (go on and train)."""
    import contextlib
    import os

    if "-" in corpus:
        raise ConfigError("training with several processes reads the corpus from files, not '-' (stdin)")
    if nproc is not None and distributed.launched():
        raise ConfigError("--nproc starts its own processes: leave it out under torchrun")
    if distributed.launched():
        return None
    batch = batch_size
    if resume:
        with contextlib.suppress(CharrnnError):  # the processes report a missing or bad run
            batch = load_checkpoint(default_out(out, corpus), latest=True).train_config.batch_size
    distributed.check_batch(batch, nproc)
    import torch

    on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if on_gpu and nproc > torch.cuda.device_count() and (not resume or device_given):
        raise ConfigError(distributed.too_many_for_gpus(nproc))
    os.environ[START_ENV] = repr(time.time() - (time.perf_counter() - t0))
    return distributed.launch(nproc, _without_option(argv, "--nproc"))
