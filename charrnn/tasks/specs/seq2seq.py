"""Sequence to sequence (``--task seq2seq``, many-to-many unaligned): an encoder-decoder
from source<TAB>target pairs."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ...task_configs import ATTENTIONS, Seq2SeqConfig
from ..registry import Option, TaskSpec
from . import best_accuracy_rows, state_of, step_rows, training_row

# With no limit given: this many epochs (the G2P benchmark's setting) ...
DEFAULT_EPOCHS = 20
# ... but at least this many steps: 20 epochs of 800 pairs is 260 steps, which underfits
# (SIGMORPHON 2021 low set, ice and slv dev accuracy 0.60 and 0.40 at 260 steps, 0.82 and
# 0.53 at 780, 0.81 and 0.53 at 1,560).
MIN_DEFAULT_STEPS = 1000
# Its options that a resumed run keeps (its data and tokenizers; attention and input
# feeding are model fields, checked against the run's model).
DATA_OPTIONS = ("teacher_forcing", "label_smoothing", "reverse_target", "source_tokenizer", "target_tokenizer",
                "shared_vocab", "max_length", "strict", "source_normalize", "vocab_size")


@dataclass(frozen=True)
class Seq2SeqState:
    """What an encoder-decoder's checkpoint keeps besides its weights and tokenizers."""

    teacher_forcing: float = 1.0
    label_smoothing: float = 0.0
    reverse_target: bool = False  # the decoder writes targets right to left
    max_length: int = 200  # longer pairs were skipped in training
    length_ratio: float | None = None  # decoding stops at this many target tokens per source token (+ extra)
    skipped_long: dict[str, int] = field(default_factory=dict)


def default_length(train_cfg, batches_per_epoch: int):
    """A run given no limit: DEFAULT_EPOCHS epochs, or the whole epochs that make at least
    MIN_DEFAULT_STEPS steps where the data is small."""
    epochs = max(DEFAULT_EPOCHS, math.ceil(MIN_DEFAULT_STEPS / batches_per_epoch))
    return dataclasses.replace(train_cfg, epochs=epochs)


def setup(run):
    from ...errors import ConfigError
    from ..seq2seq import Seq2SeqTask, prepare_pairs

    path = run.one_file()
    cfg, g = run.train_config, run.given
    o = run.option
    if run.resumed:
        state = state_of(Seq2SeqState, run.checkpoint)
        data = prepare_pairs(path, g.get("val_file"), cfg.val_fraction, cfg.seed, run.checkpoint.tokenizer,
                             max_length=state.max_length)
        task = Seq2SeqTask(data, run.model_config(), cfg, state.teacher_forcing, state.max_length, state.length_ratio,
                           state.label_smoothing, state.reverse_target)
    else:
        src, tgt, normalize = o("source_tokenizer", "char"), o("target_tokenizer", "char"), o("source_normalize", "none")
        source = _init_tokenizer(run, tgt) if "init" in g else None
        if source is not None:  # --init: the LM's tokenizer reads the sources (and the targets when shared)
            src = source.kind
            tgt = src if o("shared_vocab", False) else tgt
        normalize = None if normalize in (None, "none") else normalize.upper()
        if o("shared_vocab", False) and src != tgt:
            raise ConfigError(f"--shared-vocab needs one tokenizer kind on both sides, not --source-tokenizer {src} "
                              f"and --target-tokenizer {tgt}")
        if normalize and src != "char":
            raise ConfigError(f"--source-normalize is for --source-tokenizer char (the other kinds read the text as "
                              f"it is), not {src}")
        # Every process reads the (small) data itself; tokenizer training is deterministic.
        data = prepare_pairs(path, g.get("val_file"), cfg.val_fraction, cfg.seed, None, src, tgt,
                             o("shared_vocab", False), g.get("vocab_size"), o("max_length", 200), o("strict", False),
                             normalize, source)
        task = Seq2SeqTask(data, run.model_config(), cfg, o("teacher_forcing", 1.0), o("max_length", 200),
                           label_smoothing=o("label_smoothing", 0.0), reverse_target=o("reverse_target", False))
        if source is not None:
            if data.tokenizer.shared:
                task.init_names = init_names_shared
            _check_unknown(run, data)
    if run.no_limit_given():
        run.train_config = default_length(run.train_config, task.batches.windows_per_epoch)
    if run.main:
        for split, n in data.skipped.items():
            if n:
                run.on_note(f"skipped {n:,} {split} pair(s) longer than --max-length {task.max_length} tokens "
                            f"(--strict refuses them instead)")
        if data.unknown:
            run.on_note(f"{data.unknown:,} source token(s) of the validation pairs never occur in the training sources")
    return task


def _init_tokenizer(run, target_kind: str):
    """--init RUN: the language model's tokenizer, the source side's (and the target's with
    --shared-vocab); the options that would choose another are refused in one line."""
    from ...errors import ConfigError
    from ...text.tokenizers import load_tokenizer

    g = run.given
    mine = [f"--{n.replace('_', '-')}" for n in ("source_tokenizer", "source_normalize") if n in g]
    if mine:
        raise ConfigError(f"--init brings the language model's tokenizer for the sources: drop {', '.join(mine)}")
    tok = load_tokenizer(g["tokenizer_file"])
    if run.option("shared_vocab", False) and "target_tokenizer" in g and target_kind != tok.kind:
        raise ConfigError(f"--shared-vocab with --init: both sides take the language model's {tok.kind} tokenizer, "
                          f"not --target-tokenizer {target_kind}")
    return tok


def _check_unknown(run, data) -> None:
    """Say how much of the training data the language model's tokenizer does not know (a
    side it knows nothing of is refused)."""
    tok = data.tokenizer
    sides = [("source", tok.source, data.train_src)] + ([("target", tok.target, data.train_tgt)] if tok.shared else [])
    for side, t, ids in sides:
        unk = t.unk_id
        n = 0 if unk is None else sum(s.count(unk) for s in ids)
        total = sum(map(len, ids))
        if n == total:
            from ...errors import ConfigError

            raise ConfigError(f"--init: the language model's tokenizer knows none of the training {side} tokens"
                              + (" (targets in another script or alphabet?): drop --shared-vocab" if side == "target"
                                 else ""))
        if n and run.main:
            run.on_note(f"{n:,} of the {total:,} training {side} tokens are unknown to the language model's "
                        f"tokenizer (--init)")


def init_names(name: str) -> str | None:
    """A language model's tensor -> the encoder-decoder's: the embedding into the source
    embedding (its leading rows: padding comes after the tokens), each recurrent layer into
    the forward direction of the same encoder layer (a bidirectional encoder's second layer
    reads both directions: its leading columns are the forward one's)."""
    if name == "embedding.weight":
        return "src_embedding.weight"
    match = re.fullmatch(r"rnn\.(\w+)_l(\d+)", name)
    return f"encoder.{match.group(2)}.0.{match.group(1)}_l0" if match else None


def init_names_shared(name: str) -> str | tuple[str, ...] | None:
    """With one vocabulary on both sides (--shared-vocab): the encoder as in init_names, and
    the decoder too: the embedding into the target embedding's leading rows (padding, SOS
    and EOS come after the tokens), each recurrent layer into the same decoder layer (the
    first reads the embedding in its leading columns, the attentional vector of input
    feeding after them), the output layer into the generator's leading rows."""
    encoder = init_names(name)
    if name == "embedding.weight":
        return encoder, "tgt_embedding.weight"
    if name.startswith("rnn."):
        return encoder, "decoder." + name[len("rnn."):]
    if name.startswith("decoder."):  # the language model's output layer
        return "generator." + name[len("decoder."):]
    return encoder


def info_rows(ck) -> list[tuple[str, str]]:
    m, mt, tok, state = ck.model_config, ck.metrics, ck.tokenizer, state_of(Seq2SeqState, ck)
    enc = f"{'bidirectional ' if m.bidirectional else ''}{m.layers}x{m.hidden_size} {m.cell.upper()}"
    att = "no attention" if m.attention == "none" else (
        f"{m.attention} attention" + (" with input feeding" if m.input_feeding else ""))
    form = getattr(tok.source, "normalize", None)
    kind = f"{tok.source.kind} ({form})" if form else tok.source.kind
    rows = [("model", f"encoder {enc}, decoder {m.layers}x{m.hidden_size} {m.cell.upper()}, {att}, embedding "
                      f"{m.embedding_dim}, dropout {m.dropout}" + (", tied target weights" if m.tie_weights else "")),
            ("source tokens", f"{kind}, {tok.source.vocab_size} tokens{' (shared vocabulary)' if tok.shared else ''}"),
            ("target tokens", f"{tok.target.kind}, {tok.target.vocab_size} tokens (+ padding, SOS, EOS)"),
            *step_rows(ck)]
    if "val_accuracy" in mt:
        rows.append(("val accuracy", f"{mt['val_accuracy']:.4f} (greedy exact match; token error rate "
                                     f"{mt['val_ter']:.2f}%, loss {mt['val_loss']:.4f} nats)"))
    rows += best_accuracy_rows(ck)
    parts = [f"teacher forcing {state.teacher_forcing:g}"]
    if state.label_smoothing:
        parts.append(f"label smoothing {state.label_smoothing:g}")
    if state.reverse_target:
        parts.append("targets written right to left (--reverse-target)")
    return [*rows, ("decoder training", ", ".join(parts)), training_row(ck)]


def start_line(d: dict[str, Any]) -> tuple[str, str]:
    m = d["model_config"]
    vocab = f"{d['source_tokenizer']} {d['source_vocab']} -> {d['target_tokenizer']} {d['target_vocab']}"
    return (f"encoder-decoder ({'bidirectional ' if m['bidirectional'] else ''}encoder, {m['attention']} attention)",
            f"vocabularies {vocab}{' (shared)' if d['shared_vocab'] else ''}; {d['train_pairs']:,} training and "
            f"{d['val_pairs']:,} validation pairs")


def done_line(d: dict[str, Any]) -> tuple[str, str]:
    return (f"best val accuracy {d['val_accuracy']:.4f} (token error rate {d['val_ter']:.2f}%)",
            f"{d['train_pairs_per_sec']:,.0f} pairs/s")



# The options of this task (charrnn train makes them flags; charrnn.train takes them as keywords).
OPTIONS = (
    Option('attention', str, Seq2SeqConfig().attention, "How the decoder looks at the source at each step: Luong dot (needs --no-bidirectional) or general, Bahdanau additive, or none (the encoder's final state only).", panel='Sequence to sequence', choices=ATTENTIONS),
    Option('input_feeding', bool, Seq2SeqConfig().input_feeding, "Feed the previous step's attentional vector to the decoder with each token (Luong).", panel='Sequence to sequence', flag='--input-feeding/--no-input-feeding'),
    Option('teacher_forcing', float, 1.0, 'Probability of feeding the decoder the gold previous token in training; below 1 it is fed its own prediction otherwise (scheduled sampling).', panel='Sequence to sequence', min=0.0, max=1.0),
    Option('label_smoothing', float, 0.0, 'Give this share of the target probability to the other target tokens, evenly, in the training loss (0.1 is the usual value); validation loss and perplexity stay the plain negative log-likelihood.', panel='Sequence to sequence', min=0.0, max=0.99),
    Option('reverse_target', bool, False, "Train the decoder to write each target right to left (outputs still read left to right): a second model for rescoring a left-to-right model's n-best lists (predict and eval accuracy --rescore).", panel='Sequence to sequence', flag='--reverse-target'),
    Option('source_tokenizer', str, 'char', 'Tokens of the sources: char, space (whitespace-separated symbols, e.g. phones), bpe, unigram, word.', panel='Sequence to sequence', choices=("char", "space", "bpe", "unigram", "word")),
    Option('target_tokenizer', str, 'char', 'Tokens of the targets (as --source-tokenizer).', panel='Sequence to sequence', choices=("char", "space", "bpe", "unigram", "word")),
    Option('source_normalize', str, 'none', 'Bring every source to this Unicode normal form before the char tokenizer reads it, in training and prediction alike: nfd splits precomposed letters into base and marks (Hangul syllables into jamo, Vietnamese tones apart), so equivalent spellings share tokens.', panel='Sequence to sequence', choices=("none", "nfc", "nfd", "nfkc", "nfkd")),
    Option('shared_vocab', bool, False, 'One tokenizer trained on both sides (same language on both; needs the same kind).', panel='Sequence to sequence', flag='--shared-vocab'),
    Option('max_length', int, 200, 'Pairs with more tokens than this on either side are skipped (and counted), or refused with --strict.', panel='Sequence to sequence', min=1),
    Option('strict', bool, False, 'Stop with an error at a pair longer than --max-length instead of skipping it.', panel='Sequence to sequence', flag='--strict'),
)


SPEC = TaskSpec(
    info_title="sequence to sequence (encoder-decoder)",
    name="seq2seq", title="encoder-decoder", description="an encoder-decoder from source<TAB>target pairs",
    model_kind="seq2seq", config=Seq2SeqConfig, setup=setup, api="charrnn.api.seq2seq:Seq2SeqModel",
    model_fields=("cell", "layers", "hidden_size", "embedding_dim", "dropout", "bidirectional", "attention",
                  "input_feeding", "tie_weights"),
    options=OPTIONS, shared=("bidirectional",),
    refuses=("tokenizer", "tokenizer_file", "bptt", "val_max_chars", "replace_invalid"),
    fixed_on_resume=DATA_OPTIONS,
    # Measured on SIGMORPHON 2021 grapheme-to-phoneme data: benchmarks/g2p_seq2seq.py.
    train_defaults={"batch_size": 64, "lr": 3e-3, "eval_interval": 500},
    default_patience=5,  # early stopping unless a step or epoch limit is given
    default_epochs=DEFAULT_EPOCHS, reads="one file of source<TAB>target pairs",
    predict_options=("beam", "n_best", "length_penalty"), init_names=init_names,
    info_rows=info_rows, start_line=start_line, done_line=done_line, export="charrnn.export.tasks:seq2seq",
)
