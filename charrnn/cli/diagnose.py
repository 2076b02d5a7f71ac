"""``charrnn diagnose``: seeing inside recurrent networks. ``gradients`` measures how the
gradient of a last loss fades with distance (fresh cells, trained checkpoints, or the
norms of a short training run with and without clipping); ``memory`` (diagnose_memory.py)
finds the longest lag each cell learns a memory task at within a fixed budget. The numbers
come from charrnn.diagnostics; the tables, colours and pictures are drawn here."""

from __future__ import annotations

import math
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..config import CELLS
from ..errors import ConfigError
from .app import app, err
from .common import Device, DeviceOpt, JsonOpt, LatestOpt, explicit, flag, print_json, require_language_model, warn

diagnose_app = typer.Typer(
    help="Look inside recurrent networks: vanishing and exploding gradients, how long each cell remembers.",
    no_args_is_help=True,
)
app.add_typer(diagnose_app, name="diagnose")

# The built-in cells in the pictures' order (simplest first); a cell added with
# models.cells.register_cell comes after them.
_ORDER = ("rnn", "lstm", "gru")


def cell_names() -> list[str]:
    """Every cell of the table (config.CELLS holds their names), in the pictures' order."""
    return sorted(CELLS, key=lambda c: _ORDER.index(c) if c in _ORDER else len(_ORDER))


class _Colours(dict):
    """The colour of each cell, the same in every picture: the built-in ones fixed, a
    registered one the next spare colour by its place in the table."""

    SPARE = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")

    def __missing__(self, cell: str) -> str:
        extra = [c for c in CELLS if c not in self]
        return self.SPARE[extra.index(cell) % len(self.SPARE)] if cell in extra else "tab:gray"


CELL_COLOURS = _Colours(rnn="tab:blue", lstm="tab:orange", gru="tab:green")


class Optimizer(str, Enum):
    sgd = "sgd"
    adam = "adam"


def paragraphs(text: str) -> str:
    """Help text written as wrapped paragraphs, each joined into one line (rich wraps it)."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


TRAINING_ONLY = ("steps", "clip", "lr", "optimizer", "batch_size", "bptt")
FRESH_ONLY = ("hidden_size", "layers")  # also --training's

OutputOpt = Annotated[Optional[Path], typer.Option(
    "--output", "-o", help="Also draw a picture to this file; its extension gives the format: .png, .svg or .pdf.",
    show_default=False, rich_help_panel="Output")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the initialisation and of the data: the same seed, the same numbers.")]
ThreadsOpt = Annotated[int, typer.Option(min=1, help="CPU threads for torch. These networks are small: one thread is "
                                         "fastest for them, more only contend.", rich_help_panel="Hardware")]


def parse_cells(value: str) -> list[str]:
    cells = [c.strip().lower() for c in value.split(",") if c.strip()]
    names = cell_names()
    bad = [c for c in cells if c not in names]
    if bad or not cells:
        raise typer.BadParameter(f"{bad[0] if bad else value!r}: not a cell; give a comma-separated list of "
                                 f"{', '.join(names)}", param_hint="'--cells'")
    return list(dict.fromkeys(cells))


def _read(text: str):
    from ..text.corpora import resolve_corpus
    from ..text.io import read_text

    return read_text(resolve_corpus(text))


def _name(path: Path) -> str:
    """A short name for a checkpoint: its run directory's, or the file's."""
    if path.is_dir():
        return path.resolve().name
    return path.resolve().parent.name if path.stem in ("best", "latest") else path.stem


def _sci(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2e}"


# ---------------------------------------------------------------- gradients


GRADIENTS_HELP = """The vanishing-gradient picture: the norm of dL_T/dh_t against the distance T - t.

L_T is the loss at the last position T of a window of --length positions; h_t is the top layer's hidden state (an
LSTM's h, not c) at each earlier position, as the next step reads it, so its gradient is the total one through every
later step. The state at the window's start comes from --warmup earlier tokens. Reported: the mean of the norm over
--sequences windows, at distances 0, 1, 2, 5, 10, 20, 50, ... and the farthest; and the decay per step, exp of the
slope of a least-squares line through log(norm) over distances 1 .. D, D being the last before the mean norm falls
under 1e-30 (underflow); 'steps per 10x' is how many steps the norm takes to fall tenfold. A few windows can
dominate a mean over many orders of magnitude, so the decay of the median over the windows is given too (and the
whole median curve with --json).

Without CHECKPOINT: freshly initialised cells (--cells, torch's default initialisation), fed random tokens (or --text)
through a random embedding; L_T is the cross-entropy of a fixed random readout of h_T against a random token.
With CHECKPOINT (one or more language models): windows of --text, the text it was trained on; L_T is the
cross-entropy of the token after position T.

With --training: exploding gradients. A fresh language model (--cells, default rnn) trains on --text for --steps
windows twice, from the same initialisation and windows: once with the gradient clipped to --clip, once not. Each
step's total gradient norm before clipping and its loss are recorded. Plain SGD at a high rate shows it best (Adam
divides the update by the gradient's size, so clipping changes less there).

The table goes to stdout (--json for the full arrays); -o draws the picture (log scale); needs pip install
'charrnn\\[plot]'."""


def prepare(output: Optional[Path], threads: int) -> None:
    """What both commands do first: refuse a picture name they cannot write, before any
    work, and set torch's threads."""
    import torch

    if output is not None:
        from .drawing import check_image_path

        check_image_path(output)
    torch.set_num_threads(threads)


@diagnose_app.command(help=paragraphs(GRADIENTS_HELP))
def gradients(
    ctx: typer.Context,
    checkpoints: Annotated[Optional[list[Path]], typer.Argument(help="Language models (run directories or checkpoint files) to measure on --text; none: fresh cells.", show_default=False)] = None,
    text: Annotated[Optional[str], typer.Option(help="Text (a file or a registered corpus name, e.g. tinyshakespeare): a checkpoint's own text, the fresh cells' input, or the training text of --training.", show_default=False, rich_help_panel="Input")] = None,
    cells: Annotated[Optional[str], typer.Option(help="Comma-separated cells, fresh or to train: rnn, lstm, gru, mingru, minlstm \\[default: rnn,lstm,gru; with --training: rnn].", show_default=False, rich_help_panel="Model")] = None,
    hidden_size: Annotated[int, typer.Option(min=1, help="Hidden units of the fresh cells.", rich_help_panel="Model")] = 128,
    layers: Annotated[int, typer.Option(min=1, max=64, help="Layers of the fresh cells.", rich_help_panel="Model")] = 1,
    length: Annotated[int, typer.Option(min=2, help="Positions of the window: the farthest distance is length - 1.", rich_help_panel="Measurement")] = 200,
    sequences: Annotated[int, typer.Option(min=1, help="Windows to average the norms over.", rich_help_panel="Measurement")] = 64,
    warmup: Annotated[int, typer.Option(min=0, help="Tokens run before each window (no gradient) to give it a state.", rich_help_panel="Measurement")] = 100,
    training: Annotated[bool, typer.Option("--training", help="Train a fresh model on --text with and without clipping and record the gradient norms.", rich_help_panel="Training run (--training)")] = False,
    steps: Annotated[int, typer.Option(min=1, help="Training steps of each run.", rich_help_panel="Training run (--training)")] = 200,
    clip: Annotated[float, typer.Option(help="Clip the total gradient norm to this (the clipped run).", rich_help_panel="Training run (--training)")] = 1.0,
    lr: Annotated[float, typer.Option(help="Learning rate.", rich_help_panel="Training run (--training)")] = 3.0,
    optimizer: Annotated[Optimizer, typer.Option(help="Plain SGD, or Adam.", rich_help_panel="Training run (--training)")] = Optimizer.sgd,
    batch_size: Annotated[int, typer.Option(min=1, help="Streams per batch.", rich_help_panel="Training run (--training)")] = 32,
    bptt: Annotated[int, typer.Option(min=1, help="Window length of truncated backpropagation through time.", rich_help_panel="Training run (--training)")] = 100,
    seed: SeedOpt = 0,
    latest: LatestOpt = False,
    device: DeviceOpt = Device.cpu,
    threads: ThreadsOpt = 1,
    output: OutputOpt = None,
    json_out: JsonOpt = False,
) -> None:
    prepare(output, threads)
    _check_modes(ctx, bool(checkpoints), training)
    if training:
        if checkpoints:
            raise ConfigError("--training trains fresh models: give no checkpoint")
        if text is None:
            raise ConfigError("--training needs a text to train on: --text FILE or a corpus name")
        _training(_read(text), parse_cells(cells or "rnn"), hidden_size, layers, steps, clip, lr, optimizer.value, batch_size,
                  bptt, seed, output, json_out)
        return
    if checkpoints:
        if cells is not None:
            raise ConfigError("--cells is for fresh cells; a checkpoint has its own cell")
        if text is None:
            raise ConfigError("a checkpoint is measured on its own text: give it with --text FILE or a corpus name")
        profiles = _checkpoint_profiles(checkpoints, text, length, sequences, warmup, seed, device.value, latest)
    else:
        from ..diagnostics.gradients import fresh_profile
        from ..text.char import CharTokenizer

        ids = None
        if text is not None:
            body = _read(text)
            ids = CharTokenizer.train(body).encode(body)
        profiles = [fresh_profile(c, hidden_size, layers, length, sequences, warmup, seed, ids)
                    for c in parse_cells(cells or "rnn,lstm,gru")]
    if json_out:
        print_json({"mode": "checkpoint" if checkpoints else "fresh", "profiles": [p.as_dict() for p in profiles]})
    else:
        Console(soft_wrap=True).print(_profile_table(profiles))
    if output is not None:
        _draw_profiles(profiles, output)


def _check_modes(ctx: typer.Context, checkpoints: bool, training: bool) -> None:
    """Refuse options of another mode rather than ignore them."""
    if not training:
        given = explicit(ctx, TRAINING_ONLY)
        if given:
            raise ConfigError(f"{flag(next(iter(given)))} is for --training")
    if checkpoints:
        given = explicit(ctx, FRESH_ONLY)
        if given:
            raise ConfigError(f"{flag(next(iter(given)))} is for fresh cells; a checkpoint has its own size")


def _checkpoint_profiles(paths: list[Path], text_name: str, length: int, sequences: int, warmup: int, seed: int,
                         device: str, latest: bool):
    """The profile of each checkpoint (all loaded and checked before the text is read)."""
    from ..api import load
    from ..diagnostics.gradients import lm_profile

    models = []
    for path in paths:
        lm = load(path, device=device, latest=latest)
        require_language_model(lm, path, "the gradient picture is for language models")
        models.append((path, lm))
    text = _read(text_name)
    profiles, names = [], set()
    for path, lm in models:
        unknown = lm.count_unknown(text)
        if unknown:
            warn(f"{path}: {unknown:,} character(s) of the text were never seen in training (read as unknown)")
        cfg = lm.checkpoint.model_config
        name = _name(path)
        label = f"{name} ({cfg.cell} {cfg.layers}x{cfg.hidden_size})"
        while label in names:
            label += "'"
        names.add(label)
        profiles.append(lm_profile(lm.model, lm.tokenizer.encode(text), length, sequences, warmup, seed, label))
    return profiles


def _profile_table(profiles) -> Table:
    table = Table(title=f"mean ||dL_T/dh_t|| over {profiles[0].sequences} windows of {profiles[0].length} positions",
                  title_justify="left")
    table.add_column("distance T-t", justify="right", no_wrap=True)
    for p in profiles:
        table.add_column(p.label, justify="right")
    for i, (d, _) in enumerate(profiles[0].at()):
        table.add_row(str(d), *(_sci(p.at()[i][1]) for p in profiles))
    table.add_section()
    table.add_row("decay per step", *(f"{p.fit.per_step:.4f}" for p in profiles), style="bold")
    table.add_row("steps per 10x", *(f"{p.fit.steps_per_decade:.1f}" for p in profiles))
    table.add_row("fitted over", *(f"{p.fit.first}..{p.fit.last}" for p in profiles))
    table.add_row("median's decay per step", *(f"{p.median_fit.per_step:.4f}" for p in profiles))
    table.add_row("L_T (nats)", *(f"{p.loss:.3f}" for p in profiles))
    return table


def _draw_profiles(profiles, path: Path) -> None:
    from ..diagnostics.gradients import FLOOR
    from .drawing import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for p in profiles:
        ys = [y if y >= FLOOR else float("nan") for y in p.norms]
        line, = ax.plot(range(p.length), ys, label=f"{p.label}: x{p.fit.per_step:.3f} per step", linewidth=1.6,
                        color=CELL_COLOURS[p.cell] if len({q.cell for q in profiles}) == len(profiles) else None)
        ax.plot(range(p.length), [y if y >= FLOOR else float("nan") for y in p.medians], linewidth=0.7,
                color=line.get_color(), alpha=0.5)
        if p.fit.points >= 2:
            ds = range(p.fit.first, p.fit.last + 1)
            ax.plot(ds, [p.fit.scale * p.fit.per_step ** d for d in ds], linestyle="--", linewidth=0.9,
                    color=line.get_color(), alpha=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("distance T - t (steps back from the loss)")
    ax.set_ylabel("||dL_T / dh_t||")
    ax.set_title("How far back the gradient of the last loss reaches\n(thick: the mean over the windows, thin: their median, dashed: the fitted decay of the mean;\na line ends where it falls under 1e-30)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _training(text: str, cells: list[str], hidden_size: int, layers: int, steps: int, clip: float, lr: float,
              optimizer: str, batch_size: int, bptt: int, seed: int, output: Path | None, json_out: bool) -> None:
    from ..diagnostics.gradients import clipping_runs
    from ..text.char import CharTokenizer

    tok = CharTokenizer.train(text)
    ids = tok.encode(text)
    results = []
    for cell in cells:
        t = time.perf_counter()
        runs = clipping_runs(ids, tok.vocab_size, cell, hidden_size, layers, 64, steps, batch_size, bptt, lr, clip,
                             optimizer, seed)
        err.print(f"{cell}: two runs of {steps} steps in {time.perf_counter() - t:.0f} s", highlight=False)
        results.append((cell, runs))
    if json_out:
        print_json({"mode": "training", "clip": clip, "lr": lr, "optimizer": optimizer, "hidden_size": hidden_size,
                    "layers": layers, "batch_size": batch_size, "bptt": bptt, "steps": steps,
                    "runs": [{"cell": cell, **r.summary(clip), "norms": r.norms, "losses": r.losses}
                             for cell, runs in results for r in runs]})
    else:
        Console(soft_wrap=True).print(_clip_table(results, clip, lr, optimizer))
    if output is not None:
        _draw_clipping(results, clip, output)


def _clip_table(results, clip: float, lr: float, optimizer: str) -> Table:
    steps = max(len(r.norms) for _, rs in results for r in rs)
    table = Table(title=f"the total gradient norm before clipping over {steps} steps ({optimizer}, lr {lr:g}), "
                        f"and the loss", title_justify="left")
    table.add_column("", no_wrap=True)
    runs = [(cell, r) for cell, rs in results for r in rs]
    for cell, r in runs:
        table.add_column(f"{cell}\n{'clip ' + format(clip, 'g') if r.clip else 'no clip'}", justify="right")
    sums = [r.summary(clip) for _, r in runs]
    rows = [("max norm", "max_norm", "{:.3g}"), ("median norm", "median_norm", "{:.3g}"),
            (f"steps with norm > {clip:g}", "above_threshold", "{}"), ("final loss (last 10)", "final_loss", "{:.3f}"),
            ("lowest loss", "min_loss", "{:.3f}")]
    for name, key, fmt in rows:
        table.add_row(name, *("-" if math.isnan(s[key]) else fmt.format(s[key]) for s in sums))
    table.add_row("diverged at step", *("-" if s["diverged_at"] is None else str(s["diverged_at"]) for s in sums))
    return table


def _draw_clipping(results, clip: float, path: Path) -> None:
    from .drawing import pyplot, save_figure

    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6), sharex=True)
    for cell, runs in results:
        for r in runs:
            name = f"{cell}, {'clipped at ' + format(clip, 'g') if r.clip else 'not clipped'}"
            if len(results) == 1:  # one cell: blue clipped, red not
                style = {"color": "tab:blue" if r.clip else "tab:red", "alpha": 1.0 if r.clip else 0.8}
            else:  # the cell's colour, dotted when not clipped
                style = {"color": CELL_COLOURS[cell], "linestyle": "-" if r.clip else ":"}
            top.plot(r.norms, linewidth=1.1, label=name, **style)
            bottom.plot(r.losses, linewidth=1.1, label=name, **style)
    threshold = top.axhline(clip, color="grey", linewidth=0.8, linestyle="--", label=f"threshold {clip:g}")
    top.set_yscale("log")
    top.set_ylabel("gradient norm before clipping")
    top.set_title("Exploding gradients and clipping (same initialisation, same windows)")
    top.legend(handles=[threshold], fontsize=8, loc="upper right")
    bottom.legend(fontsize=8, loc="upper right", ncol=1 if len(results) == 1 else 3)
    bottom.set_ylabel("training loss (nats)")
    bottom.set_xlabel("step")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    save_figure(fig, path)


# ---------------------------------------------------------------- memory
