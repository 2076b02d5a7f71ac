"""``charrnn eval perplexity --dynamic``: the options of dynamic evaluation and its report.

The static score is computed as always; the dynamic one (tasks/dynamic.py) is added next
to it, with the change and the time it took.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Annotated, Any

import typer

from ..tasks.dynamic import DynamicConfig

_D = DynamicConfig()
PANEL = "Dynamic evaluation"


class Rule(str, Enum):
    rms = "rms"
    sgd = "sgd"


DynamicOpt = Annotated[bool, typer.Option("--dynamic", help="Also score with dynamic evaluation: after each segment is scored, one gradient step on it adapts the weights to the text read so far (Krause et al. 2018); never looks ahead. Reports both scores. One stream unless --streams is given (each stream then adapts its own copy).", rich_help_panel=PANEL)]
LrOpt = Annotated[float, typer.Option("--dynamic-lr", min=0.0, help="Step size of the adaptation.", rich_help_panel=PANEL)]
DecayOpt = Annotated[float, typer.Option("--dynamic-decay", min=0.0, max=0.999, help="Pull towards the trained weights per segment (0: none).", rich_help_panel=PANEL)]
SegmentOpt = Annotated[int, typer.Option("--dynamic-segment", min=1, help="Tokens scored between two updates.", rich_help_panel=PANEL)]
RuleOpt = Annotated[Rule, typer.Option("--dynamic-rule", help="rms: gradient over the root of its running mean square (RMSprop's scaling); sgd: the plain gradient.", rich_help_panel=PANEL)]


def config(lr: float, decay: float, segment: int, rule: Rule) -> DynamicConfig:
    return DynamicConfig(lr=lr, decay=decay, segment=segment, rule=rule.value)


def score(lm: Any, text: str, cfg: DynamicConfig, streams: int, static: Any) -> tuple[Any, dict[str, Any]]:
    """The dynamic result, and what the report adds: its figures next to the static ones."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from .app import err

    bar = Progress(TextColumn("dynamic evaluation"), BarColumn(bar_width=24),
                   TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn(), console=err, transient=True,
                   disable=not err.is_terminal)
    t = time.perf_counter()
    with bar:
        task = bar.add_task("dynamic", total=None)
        result = lm.evaluate_dynamic(text, cfg, streams=streams,
                                     progress=lambda done, total: bar.update(task, completed=done, total=total))
    secs = time.perf_counter() - t
    change = (result.bpc - static.bpc) / static.bpc * 100 if static.bpc else float("nan")
    extra = {"dynamic": {**result.as_dict(), "seconds": secs,
                         "seconds_per_100k_chars": secs / max(result.chars, 1) * 1e5, "streams": streams,
                         "change_percent": change, "settings": cfg.__dict__.copy()}}
    return result, extra


def rows(extra: dict[str, Any]) -> list[tuple[str, str]]:
    d = extra["dynamic"]
    return [
        ("dynamic: bits per character", f"{d['bpc']:.4f}"),
        ("dynamic: perplexity (per token)", f"{d['perplexity']:.4f}"),
        ("dynamic vs static bpc", f"{d['change_percent']:+.2f}%"),
        ("dynamic: seconds per 100k chars", f"{d['seconds_per_100k_chars']:.1f}"),
    ]


DEFAULTS = dict(lr=_D.lr, decay=_D.decay, segment=_D.segment, rule=Rule(_D.rule))
