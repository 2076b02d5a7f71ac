"""Training from Python: the same run as ``charrnn train``, returning the trained model.

    import charrnn
    lm = charrnn.train("tinyshakespeare", time_budget=60)            # the default task: lm
    print(lm.generate("ROMEO:", length=200))
    clf = charrnn.train("sst2/train.tsv", task="classify", val_file="sst2/dev.tsv", epochs=2)
    charrnn.train("tinyshakespeare", out="checkpoints/tinyshakespeare", resume=True, max_steps=4000)

Options are the command's flags as keywords (``hidden_size=256``, ``lr=2e-3``); the same
defaults, the model sized for this machine and the limits, the time budget, resume and
run files (``config="run.toml"``) hold here as there, and the run keeps ``RUN/config.toml``.
Errors are ``charrnn.errors.CharrnnError`` subclasses. Several processes are a command-line
matter (``charrnn train --nproc N`` or torchrun).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CharrnnError, ConfigError
from ..files import LATEST
from ..training.events import Event
from ..training.run import run_task
from ..training import runfile
from .base import Model


def train(data: str | os.PathLike | list[str | os.PathLike] | None = None, task: str | None = None, *,
          out: str | os.PathLike | None = None, config: str | os.PathLike | None = None, resume: bool = False,
          overwrite: bool = False, on_event: Callable[[Event], None] | None = None,
          on_note: Callable[[str], None] | None = None, on_prepare: Callable[[str, int, int], None] | None = None,
          **options: Any) -> Model:
    """Train a model of ``task`` (default "lm") on ``data`` (a file, a registered corpus name,
    or a list of them) and return it as ``charrnn.load`` would (its best checkpoint).

    ``out``: the run directory (default checkpoints/<data name>); ``resume`` continues the
    run there exactly where it stopped; ``overwrite`` replaces it. ``config``: a run file
    (TOML) whose values the keywords override. ``on_event`` receives the training events
    (training/events.py), ``on_note`` the run's warnings, ``on_prepare`` the progress of
    reading a large corpus."""
    given: dict[str, Any] = {}
    if config is not None:
        given = runfile.read(config)
        if resume:  # a resumed run keeps its own settings; the file names the data
            given = {k: v for k, v in given.items() if k in ("corpus", "task", "out", "val_file")}
    given.update({k: v for k, v in options.items()})
    corpus = data if data is not None else given.pop("corpus", None)
    given.pop("corpus", None)
    if corpus is None:
        raise ConfigError("train() needs data: a file, a registered corpus name, or a list of them")
    corpus = [str(c) for c in (corpus if isinstance(corpus, (list, tuple)) else [corpus])]
    task = task or given.pop("task", None)  # None: "lm", or the resumed run's own task
    given.pop("task", None)
    out = out if out is not None else given.pop("out", None)
    given.pop("out", None)
    result, run_dir = run_task(task, corpus, given, out=out, resume=resume, overwrite=overwrite,
                               on_event=on_event or (lambda e: None), on_note=on_note or _warn, on_prepare=on_prepare)
    _keep_run_file(corpus, given, run_dir, resume)
    from . import load

    return load(run_dir, device=str(given.get("device", "auto")))


def _warn(message: str) -> None:
    import warnings

    warnings.warn(f"charrnn: {message}", stacklevel=3)


def _keep_run_file(corpus: list[str], given: dict[str, Any], run_dir: Path, resume: bool) -> None:
    """RUN/config.toml, as the command keeps it: the whole configuration of a new run; a
    resumed run's file with its new limits."""
    from ..checkpoint import load_checkpoint
    from ..tasks.registry import get_task

    if not (Path(run_dir) / LATEST).exists():
        return
    ck = load_checkpoint(run_dir, latest=True)
    new = runfile.resolved(get_task(ck.task), ck, given, corpus, Path(run_dir))
    path = Path(run_dir) / runfile.RUN_FILE
    if resume:
        if not path.is_file():
            return  # a run from before run files: what it was given is not known
        try:
            values = runfile.read(path)
        except CharrnnError:
            return
        from ..config import RESUME_CHANGEABLE

        values.update({k: v for k, v in new.items() if k in RESUME_CHANGEABLE})
        new = values
    runfile.write(Path(run_dir), new)
