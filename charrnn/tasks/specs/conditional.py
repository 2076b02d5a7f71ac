"""Generation conditioned on a label (``--task conditional``, one-to-many): a generator of
sequences of a chosen label, trained on labelled examples (as a classifier's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...task_configs import ConditionalConfig
from ..registry import Option, TaskSpec
from . import labels_row, state_of, step_rows, tokenizer_row, training_row


@dataclass(frozen=True)
class ConditionalState:
    """What a conditioned generator's checkpoint keeps besides its weights and tokenizer
    (the hashes of its training texts travel as tensors)."""

    labels: list[str] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    longest: int = 50  # tokens of the longest training example: generation stops at twice that and more


def setup(run):
    from ..conditional import ConditionalTask, prepare_conditional

    path = run.one_file()
    cfg, g = run.train_config, run.given
    labels = state_of(ConditionalState, run.checkpoint).labels if run.resumed else None
    # Every process reads the (small) data itself; tokenizer training is deterministic.
    data = prepare_conditional(path, g.get("val_file"), cfg.val_fraction, cfg.seed, run.tokenizer(),
                               g.get("text_column"), g.get("label_column"), labels)
    return ConditionalTask(data, run.model_config(), cfg)


def pretrain_text(run):
    """The training examples' texts, one a line, and the tokenizer the generator would
    train on them (--pretrain)."""
    from ..classify import as_example_text
    from ..conditional import prepare_conditional

    cfg, g = run.train_config, run.given
    data = prepare_conditional(run.one_file(), g.get("val_file"), cfg.val_fraction, cfg.seed, run.tokenizer(),
                               g.get("text_column"), g.get("label_column"))
    return [as_example_text(data.tokenizer.kind, ex.text) for ex in data.train], data.tokenizer


def info_rows(ck) -> list[tuple[str, str]]:
    m, mt, state = ck.model_config, ck.metrics, state_of(ConditionalState, ck)
    rows = [("model", f"{m.layers}x{m.hidden_size} {m.cell.upper()}, embedding {m.embedding_dim}, label embedding "
                      f"{m.label_dim}" + (" (also the initial state)" if m.label_init else "") + f" for {m.num_labels} "
                      f"labels, dropout {m.dropout}" + (", tied weights" if m.tie_weights else "")),
            tokenizer_row(ck), *step_rows(ck)]
    if "val_bpc" in mt:
        rows.append(("val bpc", f"{mt['val_bpc']:.4f} (loss {mt['val_loss']:.4f} nats)"))
    if "best_val_bpc" in mt:
        rows.append(("best val bpc", f"{mt['best_val_bpc']:.4f} at step {mt.get('best_step', '?')}"))
    return [*rows, *labels_row(state.labels, state.label_counts), training_row(ck)]


def start_line(d: dict[str, Any]) -> tuple[str, str]:
    m = d["model_config"]
    return (f"{m['cell'].upper()} generator conditioned on {len(d['labels'])} labels",
            f"{d['train_examples']:,} training and {d['val_examples']:,} validation examples "
            f"({d['train_tokens']:,} and {d['val_tokens']:,} tokens)")


def done_line(d: dict[str, Any]) -> tuple[str, str]:
    return f"best val bpc {d['val_bpc']:.4f}", f"{d['train_tokens_per_sec']:,.0f} tokens/s"



# The options of this task (charrnn train makes them flags; charrnn.train takes them as keywords).
OPTIONS = (
    Option('label_dim', int, ConditionalConfig().label_dim, 'Size of the label embedding fed with every token (--task conditional).', panel='Conditional generation', min=1),
    Option('label_init', bool, ConditionalConfig().label_init, "Also start every layer's hidden state from the label (a learned map of its embedding) instead of zeros (--task conditional).", panel='Conditional generation', flag='--label-init/--no-label-init'),
)


SPEC = TaskSpec(
    info_title="generator conditioned on a label",
    name="conditional", title="label-conditioned generator",
    description="a generator of sequences of a chosen label (labelled examples, as classify)",
    model_kind="conditional", config=ConditionalConfig, setup=setup, api="charrnn.api.conditional:ConditionalModel",
    model_fields=("cell", "layers", "hidden_size", "embedding_dim", "dropout", "tie_weights", "label_dim", "label_init"),
    options=OPTIONS, shared=("text_column", "label_column"),
    refuses=("bptt", "val_max_chars", "replace_invalid"),
    # Measured on word lists of several languages: benchmarks/conditional_words.py.
    train_defaults={"batch_size": 128, "lr": 3e-3, "eval_interval": 500},
    default_patience=5,  # early stopping unless a step or epoch limit is given
    default_epochs=10, reads="one labelled file or folder", serves="completions",
    init_names=lambda name: name, pretrain_text=pretrain_text,  # embedding, recurrent layers and output layer: the same names, larger
    info_rows=info_rows, start_line=start_line, done_line=done_line, export="charrnn.export.tasks:conditional",
)
