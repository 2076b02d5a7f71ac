"""Rich rendering of training events: the command line draws them on stderr, and
``charrnn.train`` in a terminal or a Jupyter notebook (rich renders in both).

A live progress bar when the console is a terminal (or a notebook); in every case one log
line per validation and a closing summary, so logs stay useful when stderr goes to a file.
What a task's start and end lines say comes from its declaration (tasks/registry.py).
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from ..tasks.registry import TaskSpec, get_task
from ..tasks.specs import generic_done, generic_start
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


_SHORT = {"val_bpc": "bpc", "val_accuracy": "acc"}  # the headline figure's unit on the bar
_NAMES = {"val_loss": "val loss", "val_bpc": "val bpc", "val_accuracy": "val accuracy", "val_macro_f1": "macro-F1",
          "val_ter": "token error rate %", "val_unseen_accuracy": "unseen words"}


def _rate(d: dict) -> str:
    if "examples_per_sec" in d:
        return f"{_count(d['examples_per_sec'])} ex/s"
    if "pairs_per_sec" in d:
        return f"{_count(d['pairs_per_sec'])} pairs/s"
    return f"{_count(d['tokens_per_sec'])} tok/s"


def _spec(d: dict) -> TaskSpec:
    return get_task(d.get("task") or "lm")


class TrainingDisplay:
    def __init__(self, console: Console, enabled: bool = True):
        self.console = console
        self.enabled = enabled
        # The live bar only makes sense on a terminal; elsewhere the log lines suffice.
        live = enabled and console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]step {task.fields[step]}"),
            BarColumn(bar_width=16),
            TextColumn("{task.percentage:>3.0f}% loss {task.fields[loss]} val {task.fields[val]} "
                       "{task.fields[tps]} {task.fields[left]} left"),
            console=console,
            transient=False,
            disable=not live,
        )
        self.task = self.progress.add_task("train", total=1000, step=0, loss="-", val="-", tps="-", left="-:--")
        self.preparing: PreparationDisplay | None = None  # the corpus being read, before the start event

    def __enter__(self) -> "TrainingDisplay":
        return self

    def __exit__(self, *exc) -> None:
        self._prepared()
        self.progress.stop()

    def prepare(self, phase: str, done: int, total: int) -> None:
        """Progress of reading and tokenizing a corpus (before training starts)."""
        if self.preparing is None:
            self.preparing = PreparationDisplay(self.console, self.enabled).__enter__()
        self.preparing.update(phase, done, total)

    def _prepared(self) -> None:
        if self.preparing is not None:
            self.preparing.__exit__(None, None, None)
            self.preparing = None

    def note(self, message: str) -> None:
        """A warning of the run (a tokenizer smaller than asked, skipped examples): shown even
        when the display is off, as warnings are."""
        self.console.print(f"charrnn: warning: {message}", style="yellow", markup=False, highlight=False)

    def _log(self, text: str) -> None:
        if self.enabled:
            self.progress.console.print(text, markup=False, highlight=False)

    def _val(self, d: dict) -> str:
        """The headline validation figure, as the bar shows it: "2.104 bpc", "0.853 acc"."""
        value = d.get(d.get("headline", "val_bpc"))
        return "-" if value is None else f"{value:.3f} {_SHORT.get(d.get('headline'), '')}".strip()

    def handle(self, event: Event) -> None:
        d = event.data
        if event.kind == "start":
            self._prepared()
            self.progress.start()
            m = d["model_config"]
            limit = []
            if d["planned_steps"]:
                limit.append(f"{d['planned_steps']:,} steps")
            if d["time_budget"]:
                limit.append(f"{d['time_budget']:g} s")
            spec = _spec(d)
            what, data = (spec.start_line or (lambda d: generic_start(d, spec.title)))(d)
            self._log(
                f"charrnn: {m.get('layers', '?')}x{m.get('hidden_size', '?')} {what}, {d['params']:,} parameters, "
                + (f"vocabulary {d['vocab_size']}, " if "vocab_size" in d else "")
                + f"on {d['device']} ({d['precision']})"
                f"{' x %d processes' % d['processes'] if d.get('processes', 1) > 1 else ''}; "
                f"{data}; "
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
            if d.get("tokenizer_note") and d.get("resumed_from") is None:
                other = "char" if d["tokenizer"] == "word" else "word"
                self._log(f"charrnn: {d['tokenizer_note']} (--tokenizer {other} to change)")
            emb = d.get("embeddings")
            if emb and d.get("resumed_from") is None:
                self._log(f"charrnn: embeddings: {emb['found']:,} of {emb['vocab']:,} vocabulary entries found in "
                          f"{emb['file']}")
            if d.get("init"):
                i = d["init"]
                rows = i.get("rows")
                self._log(f"charrnn: initialised from {i['from']}: {i['whole']} tensors whole, {i['part']} in their "
                          f"leading block" + (f", {rows['found']:,} of {rows['vocab']:,} word embeddings matched by word"
                                              if rows else "") + " (--init)")
            if d.get("resumed_from") is not None:
                self._log(f"resuming at step {d['resumed_from']:,}")
        elif event.kind == "stage":
            self.progress.reset(self.task, total=1000)
            self._log(f"charrnn: stage {d['stage']} of {d['stages']}: {d['what']}")
        elif event.kind == "progress":
            p = max(min(d["progress"], 1.0), 0.0)
            left = event.elapsed * (1 - p) / p if p > 0 else None
            self.progress.update(
                self.task, completed=p * 1000, step=f"{event.step:,}", loss="-" if d["train_loss"] is None else f"{d['train_loss']:.3f}",
                val=self._val(d), tps=_rate(d), left=_duration(left),
            )
        elif event.kind == "eval":
            mark = " (best)" if d["improved"] else ""
            # The figures charrnn's tasks report, in this order, then any other task's own.
            keys = [k for k in _NAMES if k in d] + sorted(k for k in d if k.startswith("val_") and k not in _NAMES)
            figures = "".join(f", {_NAMES.get(k, k.replace('_', ' '))} {d[k]:.4f}" for k in keys
                              if k != "val_loss" and (k in _NAMES or isinstance(d[k], float)))  # not counts
            self._log(
                f"step {event.step:,} epoch {d['epoch']:.2f} {_duration(event.elapsed)}: "
                f"val loss {d['val_loss']:.4f}{figures}{mark}"
            )
            self.progress.update(self.task, val=self._val(d))
            what = d['headline'].replace('val_', '')
            if d.get("annealing"):
                self._log(f"no better validation {what} in {d['stale_evals']} evaluations (--patience): annealing the "
                          f"learning rate over the next {d['anneal_steps']:,} steps, then stopping")
            if d.get("stopped_early"):
                self._log(f"stopping early: annealed after the validation {what} stalled (--patience); the best "
                          f"checkpoint is step {d['best_step']:,}")
        elif event.kind == "average":
            what = d['headline'].replace('val_', '')
            self._log(f"the mean of the weights of the last {d['evaluations']} evaluations (steps {d['from_step']:,}-"
                      f"{d['to_step']:,}): val {what} {d[d['headline']]:.4f}"
                      + (", better: it is the run's model now" if d["kept"] else ", not better: kept the best"))
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
            spec = _spec(d)
            best, rate = (spec.done_line or generic_done)(d)
            self._log(f"done: {event.step:,} steps in {_duration(event.elapsed)}, {best} (step {d['best_step']:,}), "
                      f"{rate}; saved {d['run_dir']}")


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
