"""``charrnn diagnose memory``: up to which lag each cell learns a memory task (the adding
or the copy task) within a fixed training budget. The numbers come from
charrnn.diagnostics.memory; the table and the picture are drawn here."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..diagnostics.memory import DEFAULT_LAGS, TASKS, MemoryConfig
from .app import err
from .common import JsonOpt, print_json
from .diagnose import CELL_COLOURS, OutputOpt, SeedOpt, ThreadsOpt, diagnose_app, paragraphs, parse_cells, prepare

MemoryTask = Enum("MemoryTask", {t: t for t in TASKS}, type=str)  # type: ignore[misc]
DEFAULT_TASK = MemoryTask(MemoryConfig().task)
MEM = MemoryConfig()


def parse_lags(value: str) -> list[int]:
    try:
        lags = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give comma-separated whole numbers of steps, e.g. 10,20,50",
                                 param_hint="'--lags'") from None
    if not lags or min(lags) < 1:
        raise typer.BadParameter(f"{value!r}: lags are numbers of steps, at least 1", param_hint="'--lags'")
    return sorted(set(lags))


MEMORY_HELP = f"""Up to which lag each cell learns a memory task within a fixed training budget.

adding (default): a sequence of lag steps of (value, marker); the target is the sum of the two marked values (one marker in
each half), read after the last step; the score is R^2 (1 - MSE / the target's variance): chance, predicting the
mean, is 0. copy: --remember symbols from an alphabet of --alphabet, then blanks and a recall marker; each symbol
must be said exactly lag steps after it was seen; the score is the share of recalled symbols that are right
(chance 1/alphabet).

Each cell and lag trains a fresh network (one layer of --hidden-size) with Adam and clipping at 1 on fresh random
sequences, for at most --steps steps (and --seconds, when given); it stops early once a held-out check reaches
--threshold. A lag counts as learned when the score on 1000 further sequences reaches --threshold.

The budget is the trade-off: the defaults (6 lags x 3 cells, at most {MEM.steps} steps each) take a few minutes
on two CPU cores, most of it on the longest lags; more --steps let a cell learn longer lags and cost time in
proportion to steps x lag. Without --seconds the numbers are the same for the same --seed. The table goes to
stdout, one line per run to stderr as it finishes; -o draws the score against the lag (needs pip install
'charrnn\\[plot]')."""


@diagnose_app.command(help=paragraphs(MEMORY_HELP))
def memory(
    task: Annotated[MemoryTask, typer.Option(help="The adding task or the copy task.", rich_help_panel="Task")] = DEFAULT_TASK,
    cells: Annotated[str, typer.Option(help="Comma-separated cells: rnn, lstm, gru, mingru, minlstm.", rich_help_panel="Task")] = "rnn,lstm,gru",
    lags: Annotated[str, typer.Option(help="Comma-separated lags in steps.", rich_help_panel="Task")] = ",".join(map(str, DEFAULT_LAGS)),
    remember: Annotated[int, typer.Option(min=1, help="copy: symbols to remember.", rich_help_panel="Task")] = MEM.remember,
    alphabet: Annotated[int, typer.Option(min=2, help="copy: distinct symbols.", rich_help_panel="Task")] = MEM.alphabet,
    hidden_size: Annotated[int, typer.Option(min=1, help="Hidden units of each network.", rich_help_panel="Model")] = MEM.hidden_size,
    steps: Annotated[int, typer.Option(min=1, help="Training steps per cell and lag, at most.", rich_help_panel="Budget")] = MEM.steps,
    seconds: Annotated[Optional[float], typer.Option(help="Also stop each run after this many seconds (the numbers then depend on the machine).", show_default=False, rich_help_panel="Budget")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per step.", rich_help_panel="Budget")] = MEM.batch_size,
    lr: Annotated[float, typer.Option(help="Adam's learning rate.", rich_help_panel="Budget")] = MEM.lr,
    threshold: Annotated[float, typer.Option(help="Score that counts as learned (accuracy for copy, R^2 for adding).", rich_help_panel="Budget")] = MEM.threshold,
    seed: SeedOpt = MEM.seed,
    threads: ThreadsOpt = 1,
    output: OutputOpt = None,
    json_out: JsonOpt = False,
) -> None:
    from ..diagnostics.memory import memory_table

    prepare(output, threads)
    task = task.value
    config = MemoryConfig(task=task, remember=remember, alphabet=alphabet, hidden_size=hidden_size, steps=steps,
                          seconds=seconds, batch_size=batch_size, lr=lr, threshold=threshold, seed=seed)
    name = "accuracy" if task == "copy" else "R^2"

    def report(r) -> None:
        when = f"the check reached {threshold:g} at step {r.learned_at}" if r.learned_at else f"{r.steps} steps"
        err.print(f"{r.cell} lag {r.lag}: {name} {r.score:.3f} on the test ({when}, {r.seconds:.1f} s)",
                  highlight=False)

    result = memory_table(parse_cells(cells), parse_lags(lags), config, on_result=report)
    if json_out:
        print_json(result.as_dict())
    else:
        Console(soft_wrap=True).print(_memory_table(result, name))
    if output is not None:
        _draw_memory(result, name, output)


def _memory_table(result, name: str) -> Table:
    cfg = result.config
    what = "adding" if cfg.task == "adding" else f"copy {cfg.remember} of {cfg.alphabet} symbols"
    table = Table(title=f"{what}: {name} on fresh sequences (chance {cfg.chance:.3g}, learned >= {cfg.threshold:g}; "
                        f"hidden {cfg.hidden_size}, at most {cfg.steps} steps)", title_justify="left",
                  caption="yes/no: the test score reached the threshold; @N: training stopped at step N, when a check "
                          "first reached it", caption_justify="left")
    table.add_column("lag", justify="right")
    for cell in result.cells:
        table.add_column(cell, justify="right")
    for lag in result.lags:
        cells = []
        for cell in result.cells:
            r = result.result(cell, lag)
            at = f" @{r.learned_at}" if r.learned_at else ""
            cells.append(f"[green]{r.score:.3f} yes{at}[/]" if r.learned else f"[red]{r.score:.3f} no[/]")
        table.add_row(str(lag), *cells)
    table.add_section()
    table.add_row("longest lag learned", *(str(result.longest_learned(c) or "-") for c in result.cells), style="bold")
    return table


def _draw_memory(result, name: str, path: Path) -> None:
    from .drawing import pyplot, save_figure

    plt = pyplot()
    cfg = result.config
    fig, ax = plt.subplots(figsize=(7, 4.2))
    lowest = cfg.chance
    for cell in result.cells:
        scores = [result.result(cell, lag).score for lag in result.lags]
        lowest = min(lowest, *scores)
        ax.plot(result.lags, scores, marker="o", label=cell, color=CELL_COLOURS[cell])
    ax.axhline(cfg.threshold, color="black", linestyle="--", linewidth=0.8, label=f"learned ({cfg.threshold:g})")
    ax.axhline(cfg.chance, color="grey", linestyle=":", linewidth=0.8, label=f"chance ({cfg.chance:.3g})")
    ax.set_xscale("log")
    ax.set_xticks(result.lags, [str(lag) for lag in result.lags])
    ax.minorticks_off()
    ax.set_xlabel("lag (steps)")
    ax.set_ylabel(name)
    ax.set_ylim(max(lowest, -1.0) - 0.05, 1.05)  # an R^2 far below chance is cut at -1
    ax.set_title(f"{cfg.task} task: what each cell learns in at most {cfg.steps} steps")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
