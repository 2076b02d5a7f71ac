"""``charrnn plot``: the training curves of one run or several, from their metrics.jsonl.

A run directory's metrics.jsonl (training/report.py) holds a "train" record per progress
report (train_loss, a language model's train_bpc, lr, a throughput such as
tokens_per_sec, epoch) and an "eval" record per validation (val_loss and the task's
figures: val_bpc, val_accuracy, ...), each with its step and its time in seconds since
the run started. Here they become curves; the drawing itself is matplotlib's (drawing.py).

A run resumed with --resume appends to the same file. Its clock goes on from the time the
checkpoint had recorded, but a log whose time went back (a clock started again) is made
continuous, the later part starting where the earlier one ended; and where a step appears
twice, the later record wins, so a replay draws no zig-zag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import CharrnnError
from .app import app, err
from .common import JsonOpt, print_json

HELP = (
    "Draw the training curves of runs (what 'charrnn train --out' wrote): several runs on the same axes, each "
    "named after its directory.\n\n"
    "One row of panels per figure the runs have, against steps (left) and against wall time (right): bits per "
    "character (a language model's training and validation bpc; a conditioned generator's validation bpc), the "
    "loss in nats per token (of every run but a language model, whose loss is its bpc), and validation accuracy "
    "(classifiers, taggers, encoder-decoders); then the learning rate and the throughput (tokens, examples or pairs "
    "a second) against steps. Training is drawn solid, validation dashed with a mark at each evaluation. A run "
    "without a figure is absent from its panels, so runs of different tasks can share a picture.\n\n"
    "Needs pip install 'charrnn\\[plot]'."
)


class Scale(str, Enum):
    auto = "auto"
    log = "log"
    linear = "linear"


@dataclass
class Run:
    """The curves of one run: its records by step (each step once), with ``wall``, the
    seconds since the run started, continuous over resumes."""

    name: str
    path: Path
    train: list[dict[str, Any]] = field(default_factory=list)
    eval: list[dict[str, Any]] = field(default_factory=list)

    @property
    def language_model(self) -> bool:
        return any("train_bpc" in r for r in self.train)

    @property
    def headline(self) -> str:
        """The validation figure the run is judged by: accuracy, else bpc, else the loss."""
        for key in ("val_accuracy", "val_bpc"):
            if any(key in r for r in self.eval):
                return key
        return "val_loss"

    @property
    def rate_key(self) -> str | None:
        return next((k for r in self.train for k in r if k.endswith("_per_sec")), None)


# ----------------------------------------------------------------------------- reading


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metrics_file(path: Path) -> Path:
    """The metrics.jsonl of a run directory (or the file itself)."""
    if not path.exists():
        raise CharrnnError(f"{path}: no such run directory")
    file = path / "metrics.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise CharrnnError(f"{path}: no metrics.jsonl here (a run directory is what 'charrnn train --out' wrote)")
    return file


def read_run(path: Path, name: str) -> Run:
    from ..checkpoint import read_metrics

    file = metrics_file(path)
    train, evals = curves(read_metrics(file))
    if not train and not evals:
        raise CharrnnError(f"{file}: no training or validation records (yet)")
    return Run(name, path, train, evals)


def curves(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train records, eval records), each sorted by step with one record a step (the
    last one written), and ``wall``: the time made continuous where it went back."""
    offset, last = 0.0, None
    by_step: dict[str, dict[int, dict[str, Any]]] = {"train": {}, "eval": {}}
    for r in records:
        kind = r.get("event")
        if kind not in by_step or not isinstance(r.get("step"), int) or not _number(r.get("time")):
            continue
        wall = r["time"] + offset
        if last is not None and wall < last:
            # The clock started again with a later process: go on from where the earlier one ended.
            offset, wall = last, r["time"] + last
        last = wall
        by_step[kind][r["step"]] = {**r, "wall": wall}
    return tuple(sorted(by_step[k].values(), key=lambda r: r["step"]) for k in ("train", "eval"))


def run_names(paths: list[Path]) -> list[str]:
    """The legend names: each run's directory name, with as many parents as it takes to
    tell apart runs whose directories share a name (a/bi, b/bi)."""
    dirs = [(p.parent if p.is_file() else p).absolute() for p in paths]
    parts = [d.parts[1:] or (str(d),) for d in dirs]
    depth = [1] * len(paths)
    while True:
        names = ["/".join(p[-k:]) for p, k in zip(parts, depth)]
        clash = [i for i, n in enumerate(names) if depth[i] < len(parts[i])
                 and any(m == n and parts[j] != parts[i] for j, m in enumerate(names))]
        if not clash:
            break
        for i in clash:
            depth[i] += 1
    seen: dict[str, int] = {}
    out = []
    for n in names:  # the same directory given twice
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


# ----------------------------------------------------------------------------- drawing

# Rows of loss-like panels: (y label, the curves: (records, key), which runs). Each is drawn
# against steps and against wall time; a row no run has is left out.
ROWS = (
    ("bits per character", (("train", "train_bpc"), ("eval", "val_bpc")), lambda run: True),
    ("loss (nats per token)", (("train", "train_loss"), ("eval", "val_loss")), lambda run: not run.language_model),
    ("validation accuracy", (("eval", "val_accuracy"),), lambda run: True),
)
UNITS = {"tokens_per_sec": "tokens/s", "examples_per_sec": "examples/s", "pairs_per_sec": "pairs/s"}


def _series(run: Run, kind: str, key: str, x: str) -> tuple[list[float], list[float]]:
    rows = [r for r in (run.train if kind == "train" else run.eval) if _number(r.get(key))]
    return [r[x] for r in rows], [r[key] for r in rows]


def _time_unit(runs: list[Run]) -> tuple[str, float]:
    longest = max((r["wall"] for run in runs for r in run.train + run.eval), default=0.0)
    return ("h", 3600.0) if longest > 7200 else ("min", 60.0) if longest > 120 else ("s", 1.0)


def _log_helps(values: list[float], scale: Scale) -> bool:
    """A log scale where the curves span more than a factor of 3 (a loss that falls fast
    early and slowly later), unless --scale says otherwise."""
    finite = [v for v in values if math.isfinite(v)]
    if scale != Scale.auto or not finite:
        return scale == Scale.log and bool(finite) and min(finite) > 0
    return min(finite) > 0 and max(finite) / min(finite) > 3


def _plain_log_ticks(ax, values: list[float]) -> None:
    """Tick labels as plain numbers (0.5, 2) on a log axis, rather than powers of ten, and
    enough of them when the curves span less than a decade or two."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    finite = [v for v in values if math.isfinite(v) and v > 0]
    decades = math.log10(max(finite) / min(finite))
    subs = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0) if decades < 1 else (1.0, 2.0, 5.0) if decades < 3 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def draw(runs: list[Run], path: Path, scale: Scale = Scale.auto) -> None:
    from .drawing import pyplot, save_figure

    plt = pyplot()
    from matplotlib.lines import Line2D

    rows = [row for row in ROWS if any(_series(run, kind, key, "step")[0] for run in runs if row[2](run)
                                       for kind, key in row[1])]
    unit, per = _time_unit(runs)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {run.name: colors[i % len(colors)] for i, run in enumerate(runs)}
    val_style = {"linestyle": "--", "marker": "o", "markersize": 3.5, "linewidth": 1.2}
    with plt.rc_context({"svg.fonttype": "none"}):  # text stays text in an SVG (searchable, smaller)
        fig, axes = plt.subplots(len(rows) + 1, 2, figsize=(11, 2.9 * (len(rows) + 1)), squeeze=False,
                                 constrained_layout=True)
        for (label, series, which), (by_step, by_time) in zip(rows, axes):
            values = []
            for run in (r for r in runs if which(r)):
                for kind, key in series:
                    steps, ys = _series(run, kind, key, "step")
                    walls, _ = _series(run, kind, key, "wall")
                    style = val_style if kind == "eval" else {"linewidth": 1.4}
                    by_step.plot(steps, ys, color=color[run.name], **style)
                    by_time.plot([w / per for w in walls], ys, color=color[run.name], **style)
                    values += ys
            for ax in (by_step, by_time):
                ax.set_ylabel(label)
                if label != "validation accuracy" and _log_helps(values, scale):
                    ax.set_yscale("log")
                    _plain_log_ticks(ax, values)
            by_step.set_xlabel("step")
            by_time.set_xlabel(f"wall time ({unit})")
        lr_ax, rate_ax = axes[-1]
        units = set()
        for run in runs:
            steps, lrs = _series(run, "train", "lr", "step")
            lr_ax.plot(steps, lrs, color=color[run.name], linewidth=1.4)
            if run.rate_key:
                steps, rates = _series(run, "train", run.rate_key, "step")
                rate_ax.plot(steps, rates, color=color[run.name], linewidth=1.4)
                units.add(UNITS.get(run.rate_key, run.rate_key.replace("_per_sec", "/s")))
        lr_ax.set_ylabel("learning rate")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
        rate_ax.set_ylabel("throughput (" + ", ".join(sorted(units)) + ")" if units else "throughput")
        rate_ax.set_ylim(bottom=0)
        for ax in (lr_ax, rate_ax):
            ax.set_xlabel("step")
        for ax in axes.flat:
            ax.grid(True, which="major", alpha=0.3)
        handles = [Line2D([], [], color=color[run.name], linewidth=2) for run in runs]
        handles += [Line2D([], [], color="0.35", linewidth=1.4), Line2D([], [], color="0.35", **val_style)]
        labels = [run.name for run in runs] + ["training", "validation"]
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(labels), 4),
                   frameon=False)
        save_figure(fig, path)


# ----------------------------------------------------------------------------- summary


def summary(run: Run) -> dict[str, Any]:
    """What --json says of a run: its last step and time, the last figures, the best one."""
    last_train = run.train[-1] if run.train else {}
    last_eval = run.eval[-1] if run.eval else {}
    out: dict[str, Any] = {
        "name": run.name, "path": str(run.path),
        "steps": max(r["step"] for r in run.train + run.eval),
        "time": max(r["wall"] for r in run.train + run.eval),
        "train_records": len(run.train), "eval_records": len(run.eval),
        "final": {k: v for k, v in {**last_train, **last_eval}.items()
                  if k.startswith(("train_", "val_")) and _number(v)},
    }
    key = run.headline
    scored = [r for r in run.eval if _number(r.get(key)) and math.isfinite(r[key])]
    if scored:
        pick = max if key == "val_accuracy" else min
        best = pick(scored, key=lambda r: r[key])
        out["best"] = {key: best[key], "step": best["step"]}
    return out


# ----------------------------------------------------------------------------- the command


@app.command(no_args_is_help=True, help=HELP)
def plot(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (or their metrics.jsonl files); several are drawn on the same axes.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The picture to write; its extension gives the format: .png, .svg or .pdf.")] = Path("curves.png"),
    scale: Annotated[Scale, typer.Option(help="The y scale of the loss and bpc panels: auto is logarithmic where their values span more than a factor of 3.")] = Scale.auto,
    json_out: JsonOpt = False,
) -> None:
    from .drawing import check_image_path

    check_image_path(output)
    read = [read_run(path, name) for path, name in zip(runs, run_names(runs))]
    draw(read, output, scale)
    err.print(f"charrnn: wrote {output}", markup=False, highlight=False)
    if json_out:
        print_json({"output": str(output), "runs": [summary(run) for run in read]})
