"""``charrnn train --task tag``: a tagger (one tag per token) from CoNLL-U or token<TAB>tag files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..config import TrainConfig
from ..task_configs import TaggerConfig
from ..errors import CharrnnError, ConfigError
from .common import explicit, flag, print_json
from .train_setup import open_run_dir, task_run, with_display

# The tagger's architecture options (TaggerConfig fields with a flag of the same name).
MODEL_FIELDS = ("cell", "layers", "hidden_size", "embedding_dim", "char_embedding_dim", "char_hidden_size",
                "dropout", "bidirectional", "crf")
# Options that mean something to tagging only.
TAG_ONLY = ("tag_column", "crf", "char_embedding_dim", "char_hidden_size", "word_dropout")
# Options of other tasks that a tagging run refuses.
NOT_TAG = ("tokenizer", "vocab_size", "tokenizer_file", "pool", "one_hot", "class_weights", "text_column",
           "label_column", "bptt", "val_max_chars", "replace_invalid", "tie_weights")
# Training defaults where they differ from a language model's (measured on UD English-GUM:
# see benchmarks/tagging_gum.py).
TRAIN_DEFAULTS = TrainConfig(batch_size=16, lr=2e-3, eval_interval=200)
DEFAULT_EPOCHS = 20  # with no limit given


@dataclass(frozen=True)
class TagOptions:
    tag_column: str | None
    word_dropout: float
    embeddings: Path | None
    freeze_embeddings: bool


def train_tag(ctx, dist, t0, corpus, out, overwrite, resume, quiet, json_out, val_file, opts: TagOptions) -> None:
    from ..tasks.tag import TagTask, TagVocab, prepare_tagged
    from ..training import Trainer

    if len(corpus) != 1 or corpus[0] == "-":
        raise ConfigError("--task tag reads one CoNLL-U or token<TAB>tag file (validation data: --val-file)")
    given = [flag(n) for n in explicit(ctx, NOT_TAG)]
    if given:
        raise ConfigError(f"{', '.join(given)}: not for --task tag (a tagger reads words and their characters)")
    if opts.embeddings is not None and not opts.embeddings.is_file():  # before anything is written
        raise CharrnnError(f"{opts.embeddings}: no such word vector file")
    if opts.freeze_embeddings and opts.embeddings is None:
        raise ConfigError("--freeze-embeddings needs --embeddings")
    main = dist is None or dist.main
    out, checkpoint, train_cfg, dist = task_run(ctx, dist, corpus, out, resume, overwrite, "tag", MODEL_FIELDS,
                                                TRAIN_DEFAULTS, DEFAULT_EPOCHS)
    # Every process reads the (small) data itself.
    if checkpoint is not None:
        fixed = [flag(n) for n in explicit(ctx, ("tag_column", "word_dropout", "embeddings", "freeze_embeddings"))]
        if fixed:
            raise ConfigError(f"a resumed run keeps its data options: drop {', '.join(fixed)}")
        state = checkpoint.task_state or {}
        vocab = TagVocab.from_state(state, checkpoint.tokenizer)
        data = prepare_tagged(corpus[0], val_file, train_cfg.val_fraction, train_cfg.seed, state.get("tag_column"),
                              vocab)
        task = TagTask(data, checkpoint.model_config, train_cfg, float(state.get("word_dropout", 0.0)),
                       freeze=bool(state.get("freeze_embeddings")), embedding_report=state.get("embeddings"))
    else:
        data = prepare_tagged(corpus[0], val_file, train_cfg.val_fraction, train_cfg.seed, opts.tag_column)
        model_cfg = TaggerConfig(**{**dataclasses.asdict(TaggerConfig()), **explicit(ctx, MODEL_FIELDS)})
        task = TagTask(data, model_cfg, train_cfg, opts.word_dropout, opts.embeddings, opts.freeze_embeddings)
    run_dir = open_run_dir(dist, out, overwrite, resume)
    result = with_display(quiet, main, lambda on_event: Trainer(
        task, train_cfg, run_dir, on_event, t0, checkpoint, dist).run(), ctx.params.get("tensorboard"))
    if json_out and main:
        print_json(result.summary)
