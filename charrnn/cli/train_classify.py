"""``charrnn train --task classify``: a sequence classifier from labelled examples."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..config import TrainConfig
from ..task_configs import ClassifierConfig
from ..errors import CharrnnError, ConfigError
from .common import TokenizerKind, explicit, print_json
from .train_setup import open_run_dir, task_run, tokenizer_for_training, tokenizer_spec, with_display

# The classifier's architecture options (ClassifierConfig fields with a flag of the same name).
MODEL_FIELDS = ("cell", "layers", "hidden_size", "embedding_dim", "dropout", "bidirectional", "pool", "one_hot")
# Options that mean nothing to a language model.
CLASSIFY_ONLY = ("bidirectional", "pool", "one_hot", "embeddings", "freeze_embeddings", "class_weights",
                 "text_column", "label_column")
# Training defaults of a classifier where they differ from a language model's (measured on
# SST-2: see benchmarks/sst2_classify.py).
TRAIN_DEFAULTS = TrainConfig(lr=2e-3, eval_interval=500)
DEFAULT_EPOCHS = 3  # with no limit given (a BiLSTM on SST-2 peaks on the test set within 2-3 epochs)


@dataclass(frozen=True)
class ClassifyOptions:
    text_column: str | None
    label_column: str | None
    embeddings: Path | None
    freeze_embeddings: bool
    balanced: bool


def train_classify(ctx, dist, t0, corpus, tokenizer, vocab_size, tokenizer_file, out, overwrite, resume, quiet,
                   json_out, val_file, opts: ClassifyOptions) -> None:
    from ..tasks.classify import ClassifyTask, prepare_labelled
    from ..training import Trainer

    if len(corpus) != 1 or corpus[0] == "-":
        raise ConfigError("--task classify reads one labelled file or folder (validation data: --val-file)")
    if "tie_weights" in explicit(ctx, ["tie_weights"]):
        raise ConfigError("--tie-weights is for language models (a classifier's output is its labels)")
    if opts.embeddings is not None and not opts.embeddings.is_file():  # before anything is written
        raise CharrnnError(f"{opts.embeddings}: no such word vector file")
    if opts.freeze_embeddings and opts.embeddings is None:
        raise ConfigError("--freeze-embeddings needs --embeddings")
    if opts.embeddings is not None and explicit(ctx, ["one_hot"]).get("one_hot"):
        raise ConfigError("--embeddings initialise a learned embedding: they do not go with --one-hot")
    main = dist is None or dist.main
    out, checkpoint, train_cfg, dist = task_run(ctx, dist, corpus, out, resume, overwrite, "classify", MODEL_FIELDS,
                                                TRAIN_DEFAULTS, DEFAULT_EPOCHS)
    labels = (checkpoint.task_state or {}).get("labels") if checkpoint is not None else None
    # Every process reads the (small) data itself; tokenizer training is deterministic.
    data = prepare_labelled(corpus[0], val_file, train_cfg.val_fraction, train_cfg.seed,
                            _tokenizer(tokenizer, vocab_size, tokenizer_file, checkpoint),
                            opts.text_column, opts.label_column, labels)
    if checkpoint is not None:
        model_cfg = checkpoint.model_config
    else:
        model_cfg = ClassifierConfig(**{**dataclasses.asdict(ClassifierConfig()), **explicit(ctx, MODEL_FIELDS)})
    if checkpoint is None:
        task = ClassifyTask(data, model_cfg, train_cfg, balanced=opts.balanced, embeddings=opts.embeddings,
                            freeze=opts.freeze_embeddings)
    else:  # the run's own choices; the weights come from the checkpoint
        if any(n in explicit(ctx, CLASSIFY_ONLY) for n in ("embeddings", "freeze_embeddings", "class_weights")):
            raise ConfigError("a resumed run keeps its --embeddings, --freeze-embeddings and --class-weights")
        state = checkpoint.task_state or {}
        task = ClassifyTask(data, model_cfg, train_cfg, balanced=state.get("class_weights") == "balanced",
                            freeze=bool(state.get("freeze_embeddings")), embedding_report=state.get("embeddings"))
    run_dir = open_run_dir(dist, out, overwrite, resume)
    result = with_display(quiet, main, lambda on_event: Trainer(
        task, train_cfg, run_dir, on_event, t0, checkpoint, dist).run(), ctx.params.get("tensorboard"))
    if json_out and main:
        print_json(result.summary)


def _tokenizer(kind, vocab_size, tokenizer_file, checkpoint):
    """As for a language model, except that no tokenizer kind means the classifier's default
    for the data (word for sentences, char for names), also with --vocab-size alone, and
    --tokenizer char trains a char tokenizer."""
    if checkpoint is None and tokenizer_file is None and (kind is not None or vocab_size is not None):
        return lambda text, default: tokenizer_for_training(kind or TokenizerKind(default), vocab_size, None, text,
                                                            False)
    return tokenizer_spec(kind, vocab_size, tokenizer_file, checkpoint)
