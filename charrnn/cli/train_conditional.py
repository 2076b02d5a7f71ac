"""``charrnn train --task conditional``: a generator conditioned on a label, from labelled examples."""

from __future__ import annotations

import dataclasses

from ..config import TrainConfig
from ..task_configs import ConditionalConfig
from ..errors import ConfigError
from .common import explicit, flag, print_json
from .train_seq2seq import SEQ2SEQ_ONLY
from .train_setup import open_run_dir, task_run, tokenizer_spec, with_display

# The generator's architecture options (ConditionalConfig fields with a flag of the same name).
MODEL_FIELDS = ("cell", "layers", "hidden_size", "embedding_dim", "dropout", "tie_weights", "label_dim", "label_init")
# Options that mean something to conditioned generation only.
CONDITIONAL_ONLY = ("label_dim", "label_init")
# Options of other tasks that a conditional run refuses.
NOT_CONDITIONAL = ("bidirectional", "pool", "one_hot", "embeddings", "freeze_embeddings", "class_weights", "bptt",
                   "val_max_chars", "replace_invalid", *SEQ2SEQ_ONLY)
# Training defaults where they differ from a language model's (measured on word lists of
# several languages: see benchmarks/conditional_words.py).
DEFAULTS = ConditionalConfig()
TRAIN_DEFAULTS = TrainConfig(batch_size=128, lr=3e-3, eval_interval=500)
DEFAULT_EPOCHS = 10  # with no limit given


def train_conditional(ctx, dist, t0, corpus, tokenizer, vocab_size, tokenizer_file, out, overwrite, resume, quiet,
                      json_out, val_file, text_column, label_column) -> None:
    from ..tasks.conditional import ConditionalTask, prepare_conditional
    from ..training import Trainer

    if len(corpus) != 1 or corpus[0] == "-":
        raise ConfigError("--task conditional reads one labelled file or folder (validation data: --val-file)")
    given = [flag(n) for n in explicit(ctx, NOT_CONDITIONAL)]
    if given:
        raise ConfigError(f"{', '.join(given)}: not for --task conditional")
    main = dist is None or dist.main
    out, checkpoint, train_cfg, dist = task_run(ctx, dist, corpus, out, resume, overwrite, "conditional", MODEL_FIELDS,
                                                TRAIN_DEFAULTS, DEFAULT_EPOCHS)
    labels = (checkpoint.task_state or {}).get("labels") if checkpoint is not None else None
    # Every process reads the (small) data itself; tokenizer training is deterministic.
    data = prepare_conditional(corpus[0], val_file, train_cfg.val_fraction, train_cfg.seed,
                               tokenizer_spec(tokenizer, vocab_size, tokenizer_file, checkpoint), text_column,
                               label_column, labels)
    if checkpoint is not None:
        model_cfg = checkpoint.model_config
    else:
        model_cfg = ConditionalConfig(**{**dataclasses.asdict(ConditionalConfig()), **explicit(ctx, MODEL_FIELDS)})
    task = ConditionalTask(data, model_cfg, train_cfg)
    run_dir = open_run_dir(dist, out, overwrite, resume)
    result = with_display(quiet, main, lambda on_event: Trainer(
        task, train_cfg, run_dir, on_event, t0, checkpoint, dist).run(), ctx.params.get("tensorboard"))
    if json_out and main:
        print_json(result.summary)
