"""Drawing surprisal (``charrnn eval perplexity --show / --html``): the text coloured by how
many bits the language model spent on each character, in the terminal (rich) or as a
self-contained HTML page; and the page skeleton and colour ramps the ``inspect`` pages share.

The numbers come from ``diagnostics.surprisal`` (bits per character: a subword's bits are
spread evenly over its characters, see there); this module only colours them. Colours
run from white (0 bits: certain) through yellow and orange to dark red (8 bits or more);
the first token's characters (context only) are grey and unknown characters (never seen
in training, not scored) blue.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.style import Style
from rich.text import Text

from ..errors import CharrnnError

SCALE_MAX = 8.0  # bits: the darkest colour means this many or more
STEP = 0.5  # bits per colour class
# Stops of the ramp (bits, RGB): ColorBrewer YlOrRd, white at 0.
_STOPS = [(0.0, (255, 255, 255)), (1.0, (255, 237, 160)), (2.0, (254, 217, 118)), (3.0, (254, 178, 76)),
          (4.0, (253, 141, 60)), (5.0, (252, 78, 42)), (6.0, (227, 26, 28)), (8.0, (128, 0, 38))]
CONTEXT_RGB, UNKNOWN_RGB = (150, 150, 150), (158, 202, 225)

ShowOpt = Annotated[bool, typer.Option("--show", help="Language models: print the text coloured by each character's surprisal (white 0 bits ... dark red 8+ bits; colours when stdout is a terminal or FORCE_COLOR is set) before the figures; with --json, each token's bits in the JSON instead.", rich_help_panel="Surprisal")]
HtmlOpt = Annotated[Optional[Path], typer.Option("--html", help="Language models: write the text coloured by surprisal to this self-contained HTML page (a tooltip per character: its bits and the model's likeliest guesses).", show_default=False, rich_help_panel="Surprisal")]
ShowCharsOpt = Annotated[int, typer.Option(min=0, help="--show and --html colour the first this many characters (scored on their own from the start, one stream); 0 for all. The figures are always of the whole text.", rich_help_panel="Surprisal")]


def ramp(stops: list[tuple[float, tuple[int, int, int]]], x: float) -> tuple[int, int, int]:
    """The colour at ``x`` on a piecewise-linear ramp (clamped to its ends)."""
    if x <= stops[0][0]:
        return stops[0][1]
    for (x0, c0), (x1, c1) in zip(stops, stops[1:]):
        if x <= x1:
            w = (x - x0) / (x1 - x0)
            return tuple(round(a + (b - a) * w) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return stops[-1][1]


def hex_rgb(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def ink(rgb: tuple[int, int, int]) -> str:
    """Black or white, whichever reads better on ``rgb``."""
    r, g, b = rgb
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 120 else "#ffffff"


CLASSES = int(SCALE_MAX / STEP) + 1  # s0 .. s16
COLOURS = [ramp(_STOPS, k * STEP) for k in range(CLASSES)]


def bits_class(bits: float) -> int:
    """The colour class of a surprisal: round to the nearest STEP, capped at SCALE_MAX."""
    return min(CLASSES - 1, max(0, round(bits / STEP)))


def check(model: Any, checkpoint: Path, show: bool, page: Path | None) -> None:
    """Before any work: the flags are for language models, and the page's folder exists."""
    from ..api import LanguageModel

    if not (show or page):
        return
    if not isinstance(model, LanguageModel):
        task = getattr(getattr(model, "checkpoint", None), "task", "other")
        raise CharrnnError(f"{checkpoint}: --show and --html colour a language model's surprisal; this is a {task} model")
    if page is not None and (page.is_dir() or not page.parent.is_dir()):
        raise CharrnnError(f"{page}: {'is a directory' if page.is_dir() else 'no such directory: ' + str(page.parent)}")


def render(lm: Any, text: str, result: Any, *, show: bool, page: Path | None, limit: int, json_out: bool,
           name: str) -> dict:
    """Score the first ``limit`` characters of ``text`` token by token and draw them: print
    the coloured text (``show``, not with ``json_out``) and write the page. Returns what goes
    into the JSON: the tokens' bits (with ``show``) and the page's path."""
    from ..diagnostics.surprisal import surprisal

    shown = text if limit == 0 else text[:limit]
    s = surprisal(lm.model, lm.tokenizer, shown)
    note = f"the first {len(shown):,} of {len(text):,} characters" if len(shown) < len(text) else ""
    extra: dict = {}
    if page is not None:
        from .drawing import write_text_file

        write_text_file(page, surprisal_page(s, lm.tokenizer, name, str(lm.checkpoint.path), result, note))
        extra["html"] = str(page)
    if show and json_out:
        extra["surprisal"] = {"chars": len(shown), "bpc": s.bpc, "tokens": [
            {"text": s.text[a:b], "bits": None if math.isnan(bits) else bits, "unknown": bool(u)}
            for a, b, bits, u in zip(s.spans.starts.tolist(), s.spans.ends.tolist(), s.bits.tolist(), s.unknown.tolist())]}
    elif show:
        console = Console(soft_wrap=True, highlight=False)
        console.print(legend())
        if note:
            console.print(f"{note} (--show-chars); their bpc {s.bpc:.4f}", style="dim", markup=False)
        console.print(coloured(s))
    if page is not None and not json_out:
        from .app import err

        err.print(f"charrnn: surprisal page written to {page}", markup=False, highlight=False)
    return extra


def _groups(s: Any):
    """(start, end, first token, last token, bits per char or NaN) for each run of characters
    that one token group completes (see diagnostics.surprisal)."""
    sp = s.spans
    per_char = s.char_bits()
    first = 0
    for t, (a, b) in enumerate(zip(sp.starts.tolist(), sp.ends.tolist())):
        if b > a:
            yield a, b, first, t, float(per_char[a])
            first = t + 1


def coloured(s: Any) -> Text:
    """The text as rich Text, each token group's background coloured by its bits per char."""
    out = Text(end="" if s.text.endswith("\n") else "\n")
    styles = [Style(color=ink(c), bgcolor=hex_rgb(c)) for c in COLOURS]
    context, unknown = Style(color=hex_rgb(CONTEXT_RGB), italic=True), Style(color="black", bgcolor=hex_rgb(UNKNOWN_RGB))
    for a, b, first, last, bits in _groups(s):
        if math.isnan(bits):
            style = unknown if bool(s.unknown[last]) else context
        else:
            style = styles[bits_class(bits)]
        out.append(s.text[a:b], style)
    return out


def legend() -> Text:
    """One line: the colour of 0, 1, ... 8+ bits, and of the characters not scored."""
    out = Text("surprisal, bits per character: ")
    for k in range(0, CLASSES, 2):
        label = f"{k * STEP:g}" + ("+" if k == CLASSES - 1 else "")
        out.append(f" {label} ", Style(color=ink(COLOURS[k]), bgcolor=hex_rgb(COLOURS[k])))
    out.append("  ")
    out.append(" context ", Style(color=hex_rgb(CONTEXT_RGB), italic=True))
    out.append(" ")
    out.append(" unknown ", Style(color="black", bgcolor=hex_rgb(UNKNOWN_RGB)))
    return out


# --------------------------------------------------------------------------- HTML

PAGE_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:90em}
h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.6em}
pre.t{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:14px;line-height:1.55;white-space:pre-wrap;
overflow-wrap:anywhere;border:1px solid #ddd;padding:.6em;background:#fff}
pre.t span{border-radius:2px}
i.nl::before{content:"\\21b5";color:#999;font-style:normal}
.legend span{display:inline-block;padding:0 .45em;font-family:ui-monospace,monospace;font-size:13px}
table{border-collapse:collapse}td,th{padding:.15em .7em;text-align:left;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}.dim{color:#777}"""


def html_page(title: str, body: str, css: str = "") -> str:
    """A self-contained page: inline CSS, no scripts, no external assets."""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            f"<style>{PAGE_CSS}\n{css}</style></head>\n<body>\n{body}\n</body></html>\n")


def html_text(text: str) -> str:
    """Escaped text for inside <pre>; a newline gets a visible mark (CSS, not copied)."""
    return html.escape(text, quote=False).replace("\n", '<i class="nl"></i>\n')


def show_piece(piece: str) -> str:
    """A token's text for a tooltip: quoted, with a newline and a space made visible."""
    return '"' + piece.replace("\n", "\u21b5").replace(" ", "\u2423") + '"'


def surprisal_page(s: Any, tokenizer: Any, name: str, checkpoint: str, result: Any, note: str) -> str:
    """The text with each token group a span coloured by its bits per character, a tooltip
    with the token(s), the bits and the model's likeliest predictions."""
    css = "\n".join(f".s{k}{{background:{hex_rgb(c)};color:{ink(c)}}}" for k, c in enumerate(COLOURS))
    css += (f"\n.ctx{{color:{hex_rgb(CONTEXT_RGB)};font-style:italic}}"
            f"\n.unk{{background:{hex_rgb(UNKNOWN_RGB)};outline:1px dotted #333}}")
    spans = []
    for a, b, first, last, bits in _groups(s):
        pieces = "".join(tokenizer.piece(int(i)) for i in s.ids[first : last + 1].tolist())
        group_bits = float(s.bits[first : last + 1].nansum()) if not math.isnan(bits) else math.nan
        if math.isnan(bits):
            cls = "unk" if bool(s.unknown[last]) else "ctx"
            tip = f"{show_piece(pieces)}: " + ("unknown (never seen in training), not scored" if cls == "unk"
                                               else "context (the first token), not scored")
        else:
            cls = f"s{bits_class(bits)}"
            tip = f"{show_piece(pieces)}: {group_bits:.2f} bits" + (f" ({bits:.2f} per char)" if b - a > 1 else "")
            guesses = [f"{show_piece(tokenizer.piece(int(i)))} {p:.0%}" for i, p in
                       zip(s.top_ids[first].tolist(), s.top_probs[first].tolist()) if i >= 0]
            if guesses:
                tip += "\nlikeliest: " + ", ".join(guesses)
        spans.append(f'<span class="{cls}" title="{html.escape(tip)}">{html_text(s.text[a:b])}</span>')
    swatches = "".join(f'<span class="s{k}">{k * STEP:g}{"+" if k == CLASSES - 1 else ""}</span>'
                       for k in range(0, CLASSES, 2))
    shown = note or f"all {len(s.text):,} characters"
    body = (f"<h1>Surprisal of {html.escape(name)}</h1>\n"
            f'<p>Model <code>{html.escape(checkpoint)}</code> ({html.escape(tokenizer.kind)} tokenizer). '
            f"Shown: {html.escape(shown)}, scored from the start as one stream: "
            f"<b>{s.bpc:.4f} bits per character</b> over {s.chars:,} scored characters ({s.tokens:,} tokens). "
            f"Whole text ({result.chars:,} scored characters): {result.bpc:.4f} bpc, perplexity {result.perplexity:.3f} "
            f"per token.</p>\n"
            f'<p class="legend">bits per character: {swatches} <span class="ctx">context</span> '
            f'<span class="unk">unknown</span> <span class="dim">(hover a character: its bits and the likeliest '
            f"guesses; \u21b5 marks a newline)</span></p>\n"
            f'<pre class="t">{"".join(spans)}</pre>')
    return html_page(f"surprisal: {name}", body, css)
