"""Sequence classification (``--task classify``, many-to-one): a text in, one label out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...task_configs import POOLS, ClassifierConfig
from ..registry import Option, TaskSpec
from . import best_accuracy_rows, cells, embeddings_file, embeddings_row, labels_row, state_of, step_rows, tokenizer_row, training_row


@dataclass(frozen=True)
class ClassifyState:
    """What a classifier's checkpoint keeps besides its weights and tokenizer."""

    labels: list[str] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)  # training examples per label
    class_weights: str = "none"  # "balanced": the loss weighted by n / (labels * count)
    embeddings: dict[str, Any] | None = None  # what --embeddings found
    freeze_embeddings: bool = False


def setup(run):
    from ...errors import ConfigError
    from ..classify import ClassifyTask, prepare_labelled

    path = run.one_file()
    cfg, g = run.train_config, run.given
    embeddings = embeddings_file(g)
    if embeddings is not None and g.get("one_hot"):
        raise ConfigError("--embeddings initialise a learned embedding: they do not go with --one-hot")
    state = state_of(ClassifyState, run.checkpoint) if run.resumed else None
    # Every process reads the (small) data itself; tokenizer training is deterministic.
    data = prepare_labelled(path, g.get("val_file"), cfg.val_fraction, cfg.seed, run.tokenizer(per_data=True),
                            g.get("text_column"), g.get("label_column"), state.labels if state else None)
    if state is None:
        return ClassifyTask(data, run.model_config(), cfg, balanced=g.get("class_weights") == "balanced",
                            embeddings=embeddings, freeze=bool(g.get("freeze_embeddings")))
    # The run's own choices; the weights come from the checkpoint.
    return ClassifyTask(data, run.model_config(), cfg, balanced=state.class_weights == "balanced",
                        freeze=state.freeze_embeddings, embedding_report=state.embeddings)


def pretrain_text(run):
    """The training examples' texts, one a line, and the tokenizer the classifier would
    train on them (--pretrain)."""
    from ..classify import as_example_text, prepare_labelled

    cfg, g = run.train_config, run.given
    data = prepare_labelled(run.one_file(), g.get("val_file"), cfg.val_fraction, cfg.seed, run.tokenizer(per_data=True),
                            g.get("text_column"), g.get("label_column"))
    if data.tokenizer_note:
        run.on_note(f"{data.tokenizer_note} (--tokenizer to change)")
    return [as_example_text(data.tokenizer.kind, ex.text) for ex in data.train], data.tokenizer


def init_names(name: str) -> str | None:
    """A language model's tensor -> the classifier's: the embedding, and each recurrent
    layer's into the forward direction of the same layer (the output layer is not used)."""
    if name == "embedding.weight":
        return name
    match = re.fullmatch(r"rnn\.(\w+)_l(\d+)", name)
    return f"layers.{match.group(2)}.0.{match.group(1)}_l0" if match else None


def info_rows(ck) -> list[tuple[str, str]]:
    m, mt, state = ck.model_config, ck.metrics, state_of(ClassifyState, ck)
    inp = "one-hot input" if m.one_hot else f"embedding {m.embedding_dim}"
    rows = [("model", f"{cells(m)}, {inp}, {m.pool} pooling, dropout {m.dropout}, {m.num_labels} labels"),
            tokenizer_row(ck), *step_rows(ck)]
    if "val_accuracy" in mt:
        rows.append(("val accuracy", f"{mt['val_accuracy']:.4f} (macro-F1 {mt.get('val_macro_f1', float('nan')):.4f}, "
                                     f"loss {mt['val_loss']:.4f} nats)"))
    rows += best_accuracy_rows(ck) + labels_row(state.labels, state.label_counts)
    rows += embeddings_row(state.embeddings, state.freeze_embeddings)
    return [*rows, training_row(ck)]


def start_line(d: dict[str, Any]) -> tuple[str, str]:
    m = d["model_config"]
    return (f"{'bidirectional ' if m['bidirectional'] else ''}{m['cell'].upper()} classifier ({m['pool']} pooling, "
            f"{len(d['labels'])} labels)",
            f"{d['train_examples']:,} training and {d['val_examples']:,} validation examples")


def done_line(d: dict[str, Any]) -> tuple[str, str]:
    return (f"best val accuracy {d['val_accuracy']:.4f} (macro-F1 {d['val_macro_f1']:.4f})",
            f"{d['train_examples_per_sec']:,.0f} examples/s")



# The options of this task (charrnn train makes them flags; charrnn.train takes them as keywords).
OPTIONS = (
    Option('bidirectional', bool, ClassifierConfig().bidirectional, 'Read each example (classify), source (seq2seq encoder) or sentence (tag) in both directions (not a language model).', panel='Model', flag='--bidirectional/--no-bidirectional'),
    Option('pool', str, ClassifierConfig().pool, 'How the outputs over an example become one vector: last state (of each direction), mean, max, or learned attention (classify).', panel='Classification', choices=POOLS),
    Option('one_hot', bool, ClassifierConfig().one_hot, 'Feed each token as a one-hot vector instead of a learned embedding (classify).', panel='Classification', flag='--one-hot'),
    Option('embeddings', Path, None, 'Initialise the token embeddings from word vectors in word2vec/GloVe text format (.gz too); --embedding-dim must match them (classify).', panel='Classification'),
    Option('freeze_embeddings', bool, False, 'Keep the --embeddings vectors fixed during training (classify).', panel='Classification', flag='--freeze-embeddings'),
    Option('class_weights', str, 'none', "balanced: weight each label's loss by n / (labels * its count), for skewed label sets (classify).", panel='Classification', choices=("none", "balanced")),
    Option('text_column', str, None, 'Column with the text in a TSV/CSV file [default: found from names such as text, sentence] (classify).', panel='Classification', show_default=False),
    Option('label_column', str, None, 'Column with the label in a TSV/CSV file [default: found from names such as label, class] (classify).', panel='Classification', show_default=False),
)


SPEC = TaskSpec(
    name="classify", title="classifier", description="a label per example (sequence classification)",
    model_kind="classifier", config=ClassifierConfig, setup=setup, api="charrnn.api.classify:Classifier",
    model_fields=("cell", "layers", "hidden_size", "embedding_dim", "dropout", "bidirectional", "pool", "one_hot"),
    options=OPTIONS, refuses=("bptt", "val_max_chars"),
    fixed_on_resume=("embeddings", "freeze_embeddings", "class_weights"),
    train_defaults={"lr": 2e-3, "eval_interval": 500},  # measured on SST-2: benchmarks/sst2_classify.py
    default_patience=5,  # early stopping unless a step or epoch limit is given
    default_epochs=3,  # with no limit given (a BiLSTM on SST-2 peaks on the test set within 2-3 epochs)
    reads="one labelled file or folder", predict_options=("top_k",), init_names=init_names, pretrain_text=pretrain_text,
    info_rows=info_rows, start_line=start_line, done_line=done_line, export="charrnn.export.tasks:classify",
)
