"""``charrnn train --task seq2seq``: an encoder-decoder from source<TAB>target pairs."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..config import TrainConfig
from ..task_configs import Seq2SeqConfig
from ..errors import ConfigError
from .common import explicit, flag, print_json, warn
from .train_setup import no_limit_given, open_run_dir, task_run, with_display

# The encoder-decoder's architecture options (Seq2SeqConfig fields with a flag of the same name).
MODEL_FIELDS = ("cell", "layers", "hidden_size", "embedding_dim", "dropout", "bidirectional", "attention",
                "input_feeding", "tie_weights")
# Options that mean something to seq2seq only.
SEQ2SEQ_ONLY = ("attention", "input_feeding", "teacher_forcing", "label_smoothing", "reverse_target",
                "source_tokenizer", "target_tokenizer",
                "shared_vocab", "max_length", "strict", "source_normalize")
# Options of other tasks that a seq2seq run refuses.
NOT_SEQ2SEQ = ("tokenizer", "tokenizer_file", "pool", "one_hot", "embeddings", "freeze_embeddings", "class_weights",
               "text_column", "label_column", "bptt", "val_max_chars", "replace_invalid", "tag_column", "crf",
               "char_embedding_dim", "char_hidden_size", "word_dropout")
# Training defaults where they differ from a language model's (measured on SIGMORPHON
# 2021 grapheme-to-phoneme data: see benchmarks/g2p_seq2seq.py).
TRAIN_DEFAULTS = TrainConfig(batch_size=64, lr=3e-3, eval_interval=500)
DEFAULT_EPOCHS = 20  # with no limit given (the G2P benchmark's setting) ...
# ... but at least this many steps: 20 epochs of 800 pairs is 260 steps, which underfits
# (SIGMORPHON 2021 low set, ice and slv dev accuracy 0.60 and 0.40 at 260 steps, 0.82 and
# 0.53 at 780, 0.81 and 0.53 at 1,560).
MIN_DEFAULT_STEPS = 1000


def default_length(train_cfg: TrainConfig, batches_per_epoch: int) -> TrainConfig:
    """A run given no limit: DEFAULT_EPOCHS epochs, or the whole epochs that make at least
    MIN_DEFAULT_STEPS steps where the data is small."""
    epochs = max(DEFAULT_EPOCHS, math.ceil(MIN_DEFAULT_STEPS / batches_per_epoch))
    return dataclasses.replace(train_cfg, epochs=epochs)


@dataclass(frozen=True)
class Seq2SeqOptions:
    source_tokenizer: str
    target_tokenizer: str
    shared_vocab: bool
    teacher_forcing: float
    max_length: int
    strict: bool
    source_normalize: str | None = None  # a Unicode normal form ("NFD", ...) or None
    label_smoothing: float = 0.0
    reverse_target: bool = False


def train_seq2seq(ctx, dist, t0, corpus, vocab_size, out, overwrite, resume, quiet, json_out, val_file,
                  opts: Seq2SeqOptions) -> None:
    from ..tasks.seq2seq import Seq2SeqTask, prepare_pairs
    from ..training import Trainer

    if len(corpus) != 1 or corpus[0] == "-":
        raise ConfigError("--task seq2seq reads one file of source<TAB>target pairs (validation pairs: --val-file)")
    given = [flag(n) for n in explicit(ctx, NOT_SEQ2SEQ)]
    if given:
        raise ConfigError(f"{', '.join(given)}: not for --task seq2seq (its tokenizers are --source-tokenizer and "
                          f"--target-tokenizer)")
    main = dist is None or dist.main
    out, checkpoint, train_cfg, dist = task_run(ctx, dist, corpus, out, resume, overwrite, "seq2seq", MODEL_FIELDS,
                                                TRAIN_DEFAULTS, DEFAULT_EPOCHS)
    if checkpoint is not None:
        fixed = [flag(n) for n in explicit(ctx, SEQ2SEQ_ONLY + ("vocab_size",)) if n not in ("attention", "input_feeding")]
        if fixed:
            raise ConfigError(f"a resumed run keeps its data and tokenizer options: drop {', '.join(fixed)}")
        state = checkpoint.task_state or {}
        data = prepare_pairs(corpus[0], val_file, train_cfg.val_fraction, train_cfg.seed, checkpoint.tokenizer,
                             max_length=int(state.get("max_length", opts.max_length)))
        task = Seq2SeqTask(data, checkpoint.model_config, train_cfg, float(state.get("teacher_forcing", 1.0)),
                           int(state.get("max_length", opts.max_length)), state.get("length_ratio"),
                           float(state.get("label_smoothing", 0.0)), bool(state.get("reverse_target", False)))
    else:
        if opts.shared_vocab and opts.source_tokenizer != opts.target_tokenizer:
            raise ConfigError(f"--shared-vocab needs one tokenizer kind on both sides, not --source-tokenizer "
                              f"{opts.source_tokenizer} and --target-tokenizer {opts.target_tokenizer}")
        if opts.source_normalize and opts.source_tokenizer != "char":
            raise ConfigError(f"--source-normalize is for --source-tokenizer char (the other kinds read the text as "
                              f"it is), not {opts.source_tokenizer}")
        # Every process reads the (small) data itself; tokenizer training is deterministic.
        data = prepare_pairs(corpus[0], val_file, train_cfg.val_fraction, train_cfg.seed, None, opts.source_tokenizer,
                             opts.target_tokenizer, opts.shared_vocab, vocab_size, opts.max_length, opts.strict,
                             opts.source_normalize)
        model_cfg = Seq2SeqConfig(**{**dataclasses.asdict(Seq2SeqConfig()), **explicit(ctx, MODEL_FIELDS)})
        task = Seq2SeqTask(data, model_cfg, train_cfg, opts.teacher_forcing, opts.max_length,
                           label_smoothing=opts.label_smoothing, reverse_target=opts.reverse_target)
    if no_limit_given(ctx, checkpoint):
        train_cfg = default_length(train_cfg, task.batches.windows_per_epoch)
    if main:
        for split, n in data.skipped.items():
            if n:
                warn(f"skipped {n:,} {split} pair(s) longer than --max-length {task.max_length} tokens "
                     f"(--strict refuses them instead)")
        if data.unknown:
            warn(f"{data.unknown:,} source token(s) of the validation pairs never occur in the training sources")
    run_dir = open_run_dir(dist, out, overwrite, resume)
    result = with_display(quiet, main, lambda on_event: Trainer(
        task, train_cfg, run_dir, on_event, t0, checkpoint, dist).run(), ctx.params.get("tensorboard"))
    if json_out and main:
        print_json(result.summary)
