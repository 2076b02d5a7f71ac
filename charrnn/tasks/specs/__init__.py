"""The built-in tasks' declarations, one module each (``SPEC``), and what they share.

Each module is light (standard library and config classes only): the command line reads
them before torch is imported. What a task runs is imported inside its functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ...config import from_dict


def state_of(cls: type, checkpoint: Any):
    """A checkpoint's task state as the task's typed dataclass ``cls`` (missing keys take
    the class's defaults: what a run from before the key existed did)."""
    return from_dict(cls, checkpoint.task_state or {})


def as_state(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def embeddings_file(given: dict[str, Any]):
    """The --embeddings file of a new run (a Path) or None, checked before anything is
    written, with --freeze-embeddings, which needs it."""
    from pathlib import Path

    from ...errors import CharrnnError, ConfigError

    path = Path(given["embeddings"]) if given.get("embeddings") is not None else None
    if path is not None and not path.is_file():
        raise CharrnnError(f"{path}: no such word vector file")
    if given.get("freeze_embeddings") and path is None:
        raise ConfigError("--freeze-embeddings needs --embeddings")
    return path


# ----------------------------------------------------------------------------- info rows


def tokenizer_row(ck) -> tuple[str, str]:
    return "tokenizer", f"{ck.tokenizer.kind}, {ck.tokenizer.vocab_size} tokens"


def step_rows(ck) -> list[tuple[str, str]]:
    mt = ck.metrics
    rows = [("step", f"{ck.step:,}" + (f" (epoch {mt['epoch']:.2f})" if "epoch" in mt else ""))]
    if "time" in mt:
        rows.append(("training time", f"{mt['time']:.0f} s"))
    return rows


def best_accuracy_rows(ck) -> list[tuple[str, str]]:
    mt = ck.metrics
    if "best_val_accuracy" in mt:
        return [("best val accuracy", f"{mt['best_val_accuracy']:.4f} at step {mt.get('best_step', '?')}")]
    return []


def labels_row(labels: list[str], counts: dict[str, int]) -> list[tuple[str, str]]:
    if not labels:
        return []
    return [("labels", ", ".join(f"{lab} ({counts[lab]:,})" if lab in counts else lab for lab in labels)
             + "  (training examples)")]


def embeddings_row(report: dict[str, Any] | None, frozen: bool) -> list[tuple[str, str]]:
    if not report:
        return []
    return [("embeddings", f"{report['file']}: {report['found']:,} of {report['vocab']:,} tokens found"
             + (", frozen" if frozen else ""))]


def training_row(ck, bptt: bool = False) -> tuple[str, str]:
    tc = ck.train_config
    return "training", (f"batch {tc.batch_size}{f', bptt {tc.bptt}' if bptt else ''}, lr {tc.lr:g}, warmup "
                        f"{tc.warmup_steps}, grad clip {tc.grad_clip:g}, weight decay {tc.weight_decay:g}, seed {tc.seed}")


def cells(m) -> str:
    return f"{m.layers}x{m.hidden_size} {'bidirectional ' if getattr(m, 'bidirectional', False) else ''}{m.cell.upper()}"


def generic_rows(ck) -> list[tuple[str, str]]:
    """What `info` shows of a task that declares no rows of its own: its model config,
    tokenizer, step and the metrics it stored."""
    rows = [("model", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in dataclasses.asdict(ck.model_config).items())),
            tokenizer_row(ck), *step_rows(ck)]
    rows += [(k.replace("_", " "), f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in ck.metrics.items()
             if k.startswith(("val_", "best_val_"))]
    rows.append(training_row(ck))
    return rows


# ----------------------------------------------------------------------------- progress lines


def generic_start(d: dict[str, Any], title: str) -> tuple[str, str]:
    """(what is trained, on what data) for the start line of a task that declares neither."""
    m = d["model_config"]
    sizes = [f"{v:,} {k.replace('_', ' ')}" for k, v in d.items() if k.startswith(("train_", "val_"))
             and isinstance(v, int) and not isinstance(v, bool)]
    return f"{str(m.get('cell', '')).upper()} {title}".strip(), ", ".join(sizes) or "data read"


def generic_done(d: dict[str, Any]) -> tuple[str, str]:
    """(the best figure, the speed) for the end line of a task that declares neither."""
    key = d.get("headline", "val_loss")
    value = d.get(key)
    best = f"best {key.replace('_', ' ')} {value:.4f}" if isinstance(value, (int, float)) else "done"
    rates = [(k, v) for k, v in d.items() if k.startswith("train_") and k.endswith("_per_sec")]
    rate = f"{rates[0][1]:,.0f} {rates[0][0][len('train_'):-len('_per_sec')]}/s" if rates else ""
    return best, rate
