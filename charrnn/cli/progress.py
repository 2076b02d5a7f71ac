"""Rich rendering of training events on stderr (part of the command layer, not the core).

A live progress bar when stderr is a terminal; in every case one log line per validation
and a closing summary, so logs stay useful when stderr goes to a file.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from ..training.events import Event


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "-:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _count(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


class TrainingDisplay:
    def __init__(self, console: Console, enabled: bool = True):
        self.console = console
        self.enabled = enabled
        # The live bar only makes sense on a terminal; elsewhere the log lines suffice.
        live = enabled and console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]step {task.fields[step]}"),
            BarColumn(bar_width=16),
            TextColumn("{task.percentage:>3.0f}% loss {task.fields[loss]} val {task.fields[val]} bpc "
                       "{task.fields[tps]} tok/s {task.fields[left]} left"),
            console=console,
            transient=False,
            disable=not live,
        )
        self.task = self.progress.add_task("train", total=1000, step=0, loss="-", val="-", tps="-", left="-:--")

    def __enter__(self) -> "TrainingDisplay":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def _log(self, text: str) -> None:
        if self.enabled:
            self.progress.console.print(text, markup=False, highlight=False)

    def handle(self, event: Event) -> None:
        d = event.data
        if event.kind == "start":
            m = d["model_config"]
            limit = []
            if d["planned_steps"]:
                limit.append(f"{d['planned_steps']:,} steps")
            if d["time_budget"]:
                limit.append(f"{d['time_budget']:g} s")
            self._log(
                f"charrnn: {m['layers']}x{m['hidden_size']} {m['cell'].upper()}, {d['params']:,} parameters, "
                f"vocabulary {d['vocab_size']}, on {d['device']} ({d['precision']})"
                f"{' x %d processes' % d['processes'] if d.get('processes', 1) > 1 else ''}; "
                f"{d['train_tokens']:,} training and {d['val_tokens']:,} validation tokens; "
                f"{d['windows_per_epoch']:,} steps per epoch; stopping at {' or '.join(limit)}"
                + (f", in about {_duration(d['predicted_seconds'])}" if d.get("predicted_seconds") and not
                   d["time_budget"] else "")
            )
            sizing = d.get("sizing") or {}
            if sizing.get("auto") and d.get("resumed_from") is None:
                source = "speeds from this machine's cache" if sizing.get("cached") else "speeds just measured"
                self._log(f"charrnn: size: {sizing['reason']}; {source}; --hidden-size fixes the size")
            if d.get("precision_note"):
                self._log(f"charrnn: warning: {d['precision_note']}")
            if d.get("resumed_from") is not None:
                self._log(f"resuming at step {d['resumed_from']:,}")
        elif event.kind == "progress":
            p = max(min(d["progress"], 1.0), 0.0)
            left = event.elapsed * (1 - p) / p if p > 0 else None
            self.progress.update(
                self.task, completed=p * 1000, step=f"{event.step:,}", loss="-" if d["train_loss"] is None else f"{d['train_loss']:.3f}",
                val="-" if d["val_bpc"] is None else f"{d['val_bpc']:.3f}", tps=_count(d["tokens_per_sec"]),
                left=_duration(left),
            )
        elif event.kind == "eval":
            mark = " (best)" if d["improved"] else ""
            self._log(
                f"step {event.step:,} epoch {d['epoch']:.2f} {_duration(event.elapsed)}: "
                f"val loss {d['val_loss']:.4f}, val bpc {d['val_bpc']:.4f}{mark}"
            )
            self.progress.update(self.task, val=f"{d['val_bpc']:.3f}")
        elif event.kind == "skip":
            if d["new_streak"]:  # one line per streak, not per step
                self._log(
                    f"step {event.step:,}: skipped a step with a non-finite loss or gradient ({d['total_skipped']} "
                    f"in all; {d['rollback_after']} in a row roll back to the last checkpoint)"
                )
        elif event.kind == "rollback":
            self._log(
                f"step {event.step:,}: {d['in_a_row']} bad steps in a row; rolled back to the checkpoint of step "
                f"{d['to_step']:,} with the learning rate x{d['lr_factor']:g} (rollback {d['rollback']})"
            )
        elif event.kind == "done":
            self.progress.update(self.task, completed=1000, left="0:00")
            if d.get("resumed_from") is not None and d["steps_this_run"] == 0:
                self._log("nothing to do: the run had already reached its limit (raise --max-steps, --epochs "
                          "or --time-budget to go on)")
            self._log(
                f"done: {event.step:,} steps in {_duration(event.elapsed)}, best val bpc {d['val_bpc']:.4f} "
                f"(step {d['best_step']:,}), {d['train_tokens_per_sec']:,.0f} tokens/s; saved {d['run_dir']}"
            )


class PreparationDisplay:
    """A progress bar for reading and tokenizing a corpus (on a terminal, for large ones)."""

    MIN_BYTES = 32 << 20  # smaller corpora are done before a bar would be worth drawing

    def __init__(self, console: Console, enabled: bool = True):
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.percentage:>3.0f}% of {task.fields[size]}"),
            console=console,
            transient=True,
            disable=not (enabled and console.is_terminal),
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "PreparationDisplay":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, phase: str, done: int, total: int) -> None:
        if total < self.MIN_BYTES:
            return
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(phase, total=total, size=f"{total / 1e6:,.0f} M")
        self.progress.update(self.tasks[phase], completed=done)
