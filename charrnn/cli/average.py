"""``charrnn average``: one checkpoint whose weights are the mean of several runs' of one shape."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, err
from .common import JsonOpt, LatestOpt, print_json


@app.command(no_args_is_help=True)
def average(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (their best checkpoint, or with --latest their latest) or checkpoint files, at least two, of one task, model and tokenizer (e.g. the same command with other --seed).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The new run directory: its best.safetensors is the average.", show_default=False)],
    latest: LatestOpt = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a checkpoint already in --out.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Average the weights of several runs of one shape into one model that costs no more
    to run than each; every command loads it like a run (it is not resumable). Worth it
    where the runs sit in one basin of the loss (checkpoints of one run late in training);
    measure the average with charrnn eval before relying on it."""
    from ..training.average import average as run

    path = run(runs, out, latest=latest, overwrite=overwrite)
    if json_out:
        print_json({"checkpoint": str(path), "averaged": [str(r) for r in runs]})
        return
    err.print(f"charrnn: averaged {len(runs)} checkpoints into {path}", markup=False, highlight=False)
    typer.echo(str(path))
