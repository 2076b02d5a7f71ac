"""charrnn_regress: a task plugin that lives outside charrnn, as a user's own package would.

Many-to-one regression: a text in, one number out (``--task regress``). The training data
is one file of ``text<TAB>number`` lines; the model reads the text with a recurrent stack,
averages its outputs over the text and maps that to one number; the loss is the mean
squared error of the targets (normalised by the training targets' mean and spread);
validation reports MSE and Pearson's r in the targets' own unit.

The package registers through its entry point (``charrnn_regress-0.1.dist-info``)::

    [charrnn.tasks]
    regress = charrnn_regress:SPEC

This module holds the declaration only (standard library and charrnn's light registry),
as charrnn's own ``tasks/specs`` do: the command line reads every task's spec when it
builds its options. What needs torch (the model, the task, the API class) is in ``task.py``,
named below by "module:attribute" strings and imported when used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from charrnn.config import CELLS
from charrnn.errors import ConfigError
from charrnn.tasks.registry import Option, TaskSpec

__version__ = "0.1"


@dataclass(frozen=True)
class RegressorConfig:
    """Architecture of the sequence regressor (everything needed to rebuild it)."""

    vocab_size: int = 0  # set from the tokenizer
    cell: str = "lstm"
    layers: int = 1
    hidden_size: int = 64
    embedding_dim: int = 32
    dropout: float = 0.0
    pad_id: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "layers", "hidden_size", "embedding_dim", "pad_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be a whole number, not {value!r}")
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        if self.vocab_size < 0:
            raise ConfigError(f"vocab_size must be >= 0, not {self.vocab_size}")
        for name in ("layers", "hidden_size", "embedding_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, not {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.pad_id < 0 or (self.vocab_size and self.pad_id >= self.vocab_size):
            raise ConfigError(f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}")


# ----------------------------------------------------------------------------- what a person reads


def info_rows(ck) -> list[tuple[str, str]]:
    m, mt, st = ck.model_config, ck.metrics, ck.task_state or {}
    rows = [("model", f"{m.layers}x{m.hidden_size} {m.cell.upper()}, embedding {m.embedding_dim}, mean pooling, "
                      f"dropout {m.dropout}, one number out"),
            ("tokenizer", f"{ck.tokenizer.kind}, {ck.tokenizer.vocab_size} tokens"),
            ("step", f"{ck.step:,}")]
    if "val_mse" in mt:
        rows.append(("val MSE", f"{mt['val_mse']:.4f} (Pearson r {mt.get('val_pearson', float('nan')):.4f})"))
    if "best_val_mse" in mt:
        rows.append(("best val MSE", f"{mt['best_val_mse']:.4f} at step {mt.get('best_step', '?')}"))
    if st:
        rows.append(("targets", f"mean {st['mean']:.4f}, std {st['std']:.4f} (times {st['target_scale']:g}), "
                                f"{st['loss']} loss, {st['train_examples']:,} training examples"))
    return rows


def start_line(d: dict[str, Any]) -> tuple[str, str]:
    m = d["model_config"]
    return (f"{m['cell'].upper()} regressor ({d['loss']} loss)",
            f"{d['train_examples']:,} training and {d['val_examples']:,} validation examples")


def done_line(d: dict[str, Any]) -> tuple[str, str]:
    return (f"best val MSE {d['val_mse']:.4f} (Pearson r {d['val_pearson']:.4f})",
            f"{d['train_examples_per_sec']:,.0f} examples/s")


SPEC = TaskSpec(
    name="regress", title="regressor", description="a number per example (many-to-one regression)",
    model_kind="regressor", config=RegressorConfig, setup="charrnn_regress.task:setup",
    api="charrnn_regress.task:Regressor", model="charrnn_regress.task:SequenceRegressor",
    model_fields=("cell", "layers", "hidden_size", "embedding_dim", "dropout"),
    options=(
        Option("target_scale", float, 1.0, "Multiply every target by this before training; predictions come out in "
               "the scaled unit (100: fractions as percentages) (regress).", panel="Regression", min=0.0),
        Option("loss", str, "mse", "The training loss on the normalised targets: mse, or huber (less pulled by "
               "outliers); validation reports MSE either way (regress).", panel="Regression", choices=("mse", "huber")),
    ),
    refuses=("bptt", "val_max_chars", "replace_invalid", "tokenizer", "vocab_size", "tokenizer_file"),
    fixed_on_resume=("target_scale", "loss"),
    train_defaults={"lr": 3e-3, "eval_interval": 200},
    default_epochs=5,
    reads="one file of text<TAB>number lines",
    serves="predict", predict_options=(),
    info_rows=info_rows, start_line=start_line, done_line=done_line,
)
