"""The language model task (``--task lm``, the default): text in, the next token out, over
truncated-BPTT windows of parallel streams; scored in bits per character."""

from __future__ import annotations

from typing import Any

from ...config import ModelConfig, TrainConfig
from ..registry import Option, TaskSpec
from . import cells, step_rows, tokenizer_row, training_row

REGULARISATION = ("weight_drop", "input_dropout", "embedding_dropout", "variational")  # AWD-LSTM, ModelConfig


def setup(run):
    """The corpus prepared (rank 0 first; the others with its tokenizer), the model sized
    for this machine and the limits, and the task."""
    from ..lm import LanguageModelTask
    from ...text.corpora import resolve_corpus
    from ...text.prepare import prepare_corpus

    cfg = run.train_config
    run.main_first(lambda: [resolve_corpus(c) for c in run.corpus])  # downloads once, on rank 0
    sources = run.each(lambda: [resolve_corpus(c) for c in run.corpus])
    val_file = run.given.get("val_file")

    def prepare(tok, on_progress=None):
        return prepare_corpus(sources, val_fraction=cfg.val_fraction, val_max_chars=cfg.val_max_chars,
                              replace_errors=bool(run.given.get("replace_invalid")), tokenizer=tok,
                              val_source=resolve_corpus(val_file) if val_file is not None else None,
                              on_progress=on_progress)

    data = run.main_first(lambda: prepare(run.tokenizer(), run.on_prepare))
    data = run.same_data(data, prepare)
    model_cfg = run.size_model(data, run.model_config())
    return LanguageModelTask(data, model_cfg, run.train_config)


def regularisation(m, tc) -> str:
    """The AWD-LSTM options that are on, as the options name them ("" if none)."""
    parts = [f"{name.replace('_', ' ')} {getattr(src, name):g}" for src, name in
             ((m, "weight_drop"), (m, "input_dropout"), (m, "embedding_dropout"), (tc, "ar"), (tc, "tar"))
             if getattr(src, name, 0.0)]
    if getattr(m, "variational", False):
        parts.append("variational dropout")
    return ", ".join(parts)


def info_rows(ck) -> list[tuple[str, str]]:
    m, mt = ck.model_config, ck.metrics
    rows = [("model", f"{cells(m)}, embedding {m.embedding_dim}, dropout {m.dropout}"
             + (", tied weights" if m.tie_weights else "")), tokenizer_row(ck), *step_rows(ck)]
    if "val_bpc" in mt:
        rows.append(("val bpc", f"{mt['val_bpc']:.4f} (loss {mt['val_loss']:.4f} nats)"))
    if "best_val_bpc" in mt:
        rows.append(("best val bpc", f"{mt['best_val_bpc']:.4f} at step {mt.get('best_step', '?')}"))
    rows.append(training_row(ck, bptt=True))
    if regularisation(m, ck.train_config):
        rows.append(("regularisation", regularisation(m, ck.train_config)))
    return rows


def start_line(d: dict[str, Any]) -> tuple[str, str]:
    return d["model_config"]["cell"].upper(), f"{d['train_tokens']:,} training and {d['val_tokens']:,} validation tokens"


def done_line(d: dict[str, Any]) -> tuple[str, str]:
    return f"best val bpc {d['val_bpc']:.4f}", f"{d['train_tokens_per_sec']:,.0f} tokens/s"



# The options of this task (charrnn train makes them flags; charrnn.train takes them as keywords).
OPTIONS = (
    Option('weight_drop', float, ModelConfig().weight_drop, 'DropConnect on the hidden-to-hidden matrices: one mask per training window (AWD-LSTM; language model).', panel='Regularisation', min=0.0, max=0.99),
    Option('input_dropout', float, ModelConfig().input_dropout, 'Dropout on the embedded input (language model).', panel='Regularisation', min=0.0, max=0.99),
    Option('embedding_dropout', float, ModelConfig().embedding_dropout, 'Drop whole token types from the embedding for a window (language model).', panel='Regularisation', min=0.0, max=0.99),
    Option('variational', bool, ModelConfig().variational, 'Variational (locked) dropout: --dropout and --input-dropout masks shared by every time step of a window (language model).', panel='Regularisation', flag='--variational/--no-variational'),
    Option('ar', float, TrainConfig().ar, "Activation regularisation: add this times the mean square of the top layer's (dropped) outputs to the loss (language model; not the scan cells mingru and minlstm, whose outputs are normalised).", panel='Regularisation', min=0.0),
    Option('tar', float, TrainConfig().tar, "Temporal activation regularisation: add this times the mean square of the change of the top layer's outputs from one step to the next (language model; not the scan cells).", panel='Regularisation', min=0.0),
)


SPEC = TaskSpec(
    name="lm", title="language model", description="a language model of the text",
    model_kind="lm", config=ModelConfig, setup=setup, api="charrnn.api.lm:LanguageModel",
    model_fields=("cell", "layers", "hidden_size", "embedding_dim", "dropout", "tie_weights", *REGULARISATION),
    options=OPTIONS, reads="text files, '-' or registered corpora", one_file=False, sizes_model=True,
    serves="completions", init_names=lambda name: name, info_rows=info_rows, start_line=start_line, done_line=done_line, export="charrnn.export.tasks:lm",
)
