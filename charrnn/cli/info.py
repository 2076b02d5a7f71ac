"""``charrnn info``: what a checkpoint holds."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .. import __version__
from ..tasks.registry import get_task
from ..tasks.specs import generic_rows
from .app import app
from .common import CheckpointArg, JsonOpt, LatestOpt, print_json


@app.command(no_args_is_help=True)
def info(checkpoint: CheckpointArg, latest: LatestOpt = False, json_out: JsonOpt = False) -> None:
    """Model and training configuration, size and results of a checkpoint."""
    from ..checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint, latest=latest)
    params = ck.params
    if json_out:
        print_json(ck.summary())
        return
    console = Console(soft_wrap=True)
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("checkpoint", str(ck.path))
    written = ck.charrnn_version or "an unrecorded version"
    table.add_row("charrnn", f"written by {written}" + ("" if written == __version__ else f" (this is {__version__})"))
    spec = get_task(ck.task)
    table.add_row("task", spec.info_title or spec.title)
    rows = spec.info_rows(ck) if spec.info_rows is not None else generic_rows(ck)
    rows.insert(1, ("parameters", f"{params:,}"))
    for name, value in rows:
        table.add_row(name, value)
    if ck.sizing and ck.sizing.get("auto"):
        table.add_row("size", ck.sizing["reason"])
    console.print(table)
