"""``charrnn inspect``: look inside a trained language model. ``neurons``: the units of one
recurrent layer over a text, coloured Karpathy-style, and the units that best follow a
few simple features of the text (inside quotes, position in the line, ...).

The numbers come from ``diagnostics.neurons``; this module only draws them: a table on
stdout (or JSON) and, with ``-o``, an HTML page.
"""

from __future__ import annotations

import html
import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import CharrnnError
from .app import app, err
from .common import (CheckpointArg, Device, DeviceOpt, JsonOpt, LatestOpt, ReplaceOpt, ThreadsOpt, print_json,
                     set_threads)
from .surprisal_view import hex_rgb, html_page, html_text, ink, ramp

inspect_app = typer.Typer(help="Look inside a trained language model: what single units of its recurrent layers follow.",
                          no_args_is_help=True)
app.add_typer(inspect_app, name="inspect")

# Activation / scale, -1 .. 1: blue negative, white 0, red positive (as Karpathy's pages).
_STOPS = [(-1.0, (33, 102, 172)), (-0.5, (146, 197, 222)), (0.0, (255, 255, 255)), (0.5, (244, 165, 130)),
          (1.0, (178, 24, 43))]
_LEVELS = 10  # colour classes each side of 0
COLOURS = {k: ramp(_STOPS, k / _LEVELS) for k in range(-_LEVELS, _LEVELS + 1)}


class StateKind(str, Enum):
    c = "c"
    h = "h"


@inspect_app.command(no_args_is_help=True)
def neurons(
    checkpoint: CheckpointArg,
    file: Annotated[str, typer.Argument(help="Text to read (UTF-8), '-' for stdin, or a registered corpus name.", show_default=False)],
    layer: Annotated[Optional[int], typer.Option(min=1, help="Recurrent layer, 1 being the one over the embedding \\[default: the top one].", show_default=False, rich_help_panel="Units")] = None,
    kind: Annotated[Optional[StateKind], typer.Option(help="c: an LSTM's cell state; h: a layer's output \\[default: c for LSTM, h for GRU and RNN].", show_default=False, rich_help_panel="Units")] = None,
    units: Annotated[Optional[str], typer.Option(help="Units to draw on the page besides each feature's best, comma-separated, 0 to hidden size - 1 (e.g. 12,57).", show_default=False, rich_help_panel="Units")] = None,
    features: Annotated[Optional[str], typer.Option(help="Features to search units for, comma-separated \\[default: all: in_quotes, line_position, in_brackets, in_word, uppercase, speaker_line].", show_default=False, rich_help_panel="Units")] = None,
    top: Annotated[int, typer.Option(min=1, help="Units reported per feature (best |Pearson r| first); the page draws the best one.", rich_help_panel="Units")] = 3,
    max_chars: Annotated[int, typer.Option(min=0, help="Read only the first this many characters of the text (0: all; the page holds a copy of the text per unit drawn).", rich_help_panel="Input")] = 5000,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the HTML page here: the text coloured by each drawn unit (blue negative, red positive).", show_default=False, rich_help_panel="Output")] = None,
    latest: LatestOpt = False,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    replace_invalid: ReplaceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """The units of a language model's recurrent layer that best follow simple features of
    a text (|Pearson r| between a unit's activation after each character and the feature),
    as a table; with -o an HTML page with the text coloured by those units' activations and
    by any chosen with --units (Karpathy, Johnson and Fei-Fei 2015)."""
    set_threads(threads)
    from ..api import LanguageModel, load
    from ..diagnostics.neurons import FEATURES, default_kind, search, unit_activations
    from ..text.corpora import resolve_corpus
    from ..text.io import read_text

    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        raise CharrnnError(f"{out}: {'is a directory' if out.is_dir() else 'no such directory: ' + str(out.parent)}")
    lm = load(checkpoint, device=device.value, latest=latest)
    if not isinstance(lm, LanguageModel):
        task = getattr(getattr(lm, "checkpoint", None), "task", "other")
        raise CharrnnError(f"{checkpoint}: a {task} model: 'charrnn inspect neurons' reads language models only")
    cfg = lm.model.config
    layer = cfg.layers if layer is None else layer
    if layer > cfg.layers:
        raise CharrnnError(f"--layer {layer}: the model has {cfg.layers} recurrent layer(s) (1 to {cfg.layers})")
    kind_name = default_kind(cfg.cell) if kind is None else kind.value
    if kind_name == "c" and default_kind(cfg.cell) != "c":
        raise CharrnnError(f"--kind c: a {cfg.cell.upper()} has no cell state; its units are its outputs (--kind h)")
    chosen = _parse_units(units, cfg.hidden_size)
    names = list(FEATURES) if features is None else [f.strip() for f in features.split(",") if f.strip()]
    bad = [f for f in names if f not in FEATURES]
    if bad or not names:
        raise CharrnnError(f"--features {features}: unknown {', '.join(bad) or '(none given)'}; one of {', '.join(FEATURES)}")
    text = read_text(resolve_corpus(file), replace_errors=replace_invalid)
    if not text:
        raise CharrnnError(f"{file}: empty text, nothing to read")
    if max_chars and len(text) > max_chars:
        err.print(f"charrnn: reading the first {max_chars:,} of {len(text):,} characters (--max-chars)",
                  markup=False, highlight=False)
        text = text[:max_chars]
    acts = unit_activations(lm.model, lm.tokenizer, text, layer - 1, kind_name)
    found = search(acts, names, top)
    report = _report(acts, found, chosen, layer, cfg)
    if out is not None:
        from .drawing import write_text_file

        write_text_file(out, neurons_page(acts, found, chosen, report, str(lm.checkpoint.path), file))
        report["html"] = str(out)
    if json_out:
        print_json(report)
        return
    Console(soft_wrap=True, highlight=False).print(_table(report))
    if out is not None:
        err.print(f"charrnn: neurons page written to {out}", markup=False, highlight=False)


def _parse_units(units: str | None, hidden: int) -> list[int]:
    if not units:
        return []
    chosen = []
    for part in units.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) >= hidden:
            raise CharrnnError(f"--units {units}: {part!r} is not a unit of this layer (0 to {hidden - 1})")
        if int(part) not in chosen:
            chosen.append(int(part))
    return chosen


def _report(acts: Any, found: dict, chosen: list[int], layer: int, cfg: Any) -> dict:
    """What the table, the JSON and the page say: the top units per feature, and each chosen
    unit's r with every feature."""
    from ..diagnostics.neurons import FEATURES, correlations, describe

    columns = {name: FEATURES[name](acts.text) for name in found}
    return {
        "layer": layer, "layers": cfg.layers, "cell": cfg.cell, "kind": acts.kind, "units": cfg.hidden_size,
        "chars": len(acts.text),
        "features": {name: {"description": describe(name),
                            "top": [{"unit": u, "r": r} for u, r in best]} for name, best in found.items()},
        "chosen": [{"unit": u, "r": {name: float(correlations(acts.values[:, u : u + 1], col)[0])
                                     for name, col in columns.items()}} for u in chosen],
    }


def _signed(r: float | None) -> str:
    return "-" if r is None or math.isnan(r) else f"{r:+.3f}"


def _table(report: dict) -> Table:
    what = "cell state c" if report["kind"] == "c" else "output h"
    table = Table(title=f"layer {report['layer']} of {report['layers']} ({report['cell'].upper()}, {what}, "
                        f"{report['units']} units), {report['chars']:,} characters", title_justify="left")
    for name, justify in (("feature", "left"), ("unit", "right"), ("r", "right"), ("what the feature is", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, feat in report["features"].items():
        if not feat["top"]:
            table.add_row(name, "-", "-", f"{feat['description']} (constant over this text: no unit to find)")
        for i, row in enumerate(feat["top"]):
            table.add_row(name if i == 0 else "", str(row["unit"]), _signed(row["r"]), feat["description"] if i == 0 else "")
    for row in report["chosen"]:
        best = max(row["r"].items(), key=lambda kv: -1 if math.isnan(kv[1]) else abs(kv[1]), default=None)
        if best is not None:
            table.add_row("(chosen)", str(row["unit"]), _signed(best[1]), f"closest to {best[0]}")
    return table


# --------------------------------------------------------------------------- HTML


def _activation_spans(text: str, values: Any, tips: list[str] | None) -> str:
    """The text with each character's background coloured by ``values`` (C,) scaled to -1..1."""
    scale = float(values.abs().max()) or 1.0
    levels = (values / scale * _LEVELS).round().long().clamp(-_LEVELS, _LEVELS).tolist()
    out = []
    for i, (ch, k) in enumerate(zip(text, levels)):
        tip = f"{float(values[i]):+.3f}" + (tips[i] if tips else "")
        out.append(f'<span class="a{k}" title="{html.escape(tip)}">{html_text(ch)}</span>')
    return "".join(out)


def neurons_page(acts: Any, found: dict, chosen: list[int], report: dict, checkpoint: str, name: str) -> str:
    """A summary table, then a section per drawn unit: each feature's best one, then the chosen."""
    from ..diagnostics.neurons import FEATURES

    css = "\n".join(f".a{k}{{background:{hex_rgb(c)};color:{ink(c)}}}" for k, c in COLOURS.items())
    what = "cell state c" if acts.kind == "c" else "output h"
    rows, sections = [], []
    for fname, feat in report["features"].items():
        tops = ", ".join(f'<a href="#u{r["unit"]}">{r["unit"]}</a> ({r["r"]:+.3f})' for r in feat["top"]) \
            or '<span class="dim">constant over this text: nothing to find</span>'
        rows.append(f"<tr><td><b>{fname}</b></td><td>{html.escape(feat['description'])}</td><td>{tops}</td></tr>")
    drawn: list[tuple[int, str, str | None]] = []  # (unit, heading, feature named in the tooltips)
    for fname, feat in report["features"].items():
        if feat["top"]:
            u, r = feat["top"][0]["unit"], feat["top"][0]["r"]
            drawn.append((u, f"{fname}: unit {u}, r = {r:+.3f}", fname))
    for row in report["chosen"]:
        rs = ", ".join(f"{f} {_signed(r)}" for f, r in row["r"].items())
        drawn.append((row["unit"], f"unit {row['unit']} (chosen): r with {rs}", None))
    seen: set[str] = set()
    for u, heading, fname in drawn:
        anchor = f"u{u}" if f"u{u}" not in seen else ""
        seen.add(f"u{u}")
        values = acts.values[:, u]
        tips = None
        if fname is not None:
            col = FEATURES[fname](acts.text).tolist()
            tips = [f"; {fname} {v:g}" for v in col]
        scale = float(values.abs().max())
        sections.append(f'<h2{f" id={anchor!r}" if anchor else ""}>{html.escape(heading)}</h2>\n'
                        f'<p class="dim">colour: activation / {scale:.3f} (the unit\'s largest |activation| here); '
                        f"range {float(values.min()):+.3f} to {float(values.max()):+.3f}</p>\n"
                        f'<pre class="t">{_activation_spans(acts.text, values, tips)}</pre>')
    swatches = "".join(f'<span class="a{k}">{k / _LEVELS:+.1f}</span>' for k in range(-_LEVELS, _LEVELS + 1, 2))
    body = (f"<h1>Units of layer {report['layer']} of {report['layers']} ({report['cell'].upper()} {what}) "
            f"over {html.escape(name)}</h1>\n"
            f"<p>Model <code>{html.escape(checkpoint)}</code>, {report['units']} units per layer, "
            f"{report['chars']:,} characters. A unit's value after reading each character colours it; r is the "
            f"Pearson correlation of the unit with a feature over the text.</p>\n"
            f"<table><tr><th>feature</th><th>what it is</th><th>best units (r)</th></tr>{''.join(rows)}</table>\n"
            f'<p class="legend">activation / scale: {swatches} <span class="dim">(hover a character for its '
            f"value; \u21b5 marks a newline)</span></p>\n" + "\n".join(sections))
    return html_page(f"neurons: {name}", body, css)
