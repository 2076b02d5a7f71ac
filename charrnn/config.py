"""Frozen configuration dataclasses: one per concern, stdlib only.

The same names are used at every layer: ``--hidden-size`` on the command line is
``ModelConfig.hidden_size`` here and ``model_config.hidden_size`` inside a checkpoint.
Defaults are declared once, here; the command layer reads them from these classes.
Validation lives in ``__post_init__`` so that a config that exists is a valid one,
whichever front end built it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import ConfigError, ResumeMismatchError

CELLS = ("lstm", "gru", "rnn")
POOLS = ("last", "mean", "max", "attention")  # how a classifier pools the outputs over a sequence
ATTENTIONS = ("none", "dot", "general", "additive")  # how a seq2seq decoder looks at the source
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")

# With no --max-steps, --epochs or --time-budget, training runs this many epochs (measured
# on tinyshakespeare with a 2x512 LSTM: 10 epochs overfit, best 2.072 at epoch 8) ...
DEFAULT_EPOCHS = 6.0
# ... or, when the command line measured the speed (sizing.py), as many steps as fit in
# about this many seconds, if those are fewer: a run given no limit ends in a time the
# start line can say.
DEFAULT_SECONDS = 600.0

# Tokens generated when neither a length nor a character limit is given.
DEFAULT_LENGTH = 500

# Vocabulary sizes of the SentencePiece tokenizer kinds, byte and special tokens included.
# Measured with the default model on WikiText-2 (test bpc after 60 s and 180 s of
# training); see README "Tokenizers".
DEFAULT_VOCAB_SIZE = {"bpe": 2048, "unigram": 2048, "word": 8192}


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the recurrent language model (everything needed to rebuild it)."""

    vocab_size: int = 0  # set from the tokenizer, never by hand
    cell: str = "lstm"
    layers: int = 2
    hidden_size: int = 512
    embedding_dim: int = 64
    dropout: float = 0.1  # between recurrent layers and before the output layer
    tie_weights: bool = False
    # Regularisation from AWD-LSTM (models/regularize.py); all off by default (measured on
    # the CPU budgets, benchmarks/RESULTS.md "Regularisation"). Older checkpoints lack
    # these keys and load with them off, which is the model they were trained as.
    weight_drop: float = 0.0  # DropConnect on the hidden-to-hidden matrices
    input_dropout: float = 0.0  # dropout on the embedded input
    embedding_dropout: float = 0.0  # whole token types dropped from the embedding
    variational: bool = False  # dropout masks shared by all time steps of a window
    # Checkpoints written before these fields existed trained without them.
    ABSENT: ClassVar[dict[str, Any]] = {"weight_drop": 0.0, "input_dropout": 0.0, "embedding_dropout": 0.0,
                                        "variational": False}

    def __post_init__(self) -> None:
        for name in ("weight_drop", "input_dropout", "embedding_dropout"):
            value = getattr(self, name)
            _check(0.0 <= value < 1.0, f"{name} must be in [0, 1), not {value}")
        _check(self.cell in CELLS, f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        _check(self.vocab_size >= 0, "vocab_size must be >= 0")
        _check(1 <= self.layers <= 64, f"layers must be between 1 and 64, not {self.layers}")
        _check(1 <= self.hidden_size <= 65536, f"hidden_size must be between 1 and 65536, not {self.hidden_size}")
        _check(1 <= self.embedding_dim <= 65536, f"embedding_dim must be between 1 and 65536, not {self.embedding_dim}")
        _check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), not {self.dropout}")
        if self.tie_weights:
            _check(
                self.embedding_dim == self.hidden_size,
                f"tie_weights needs embedding_dim == hidden_size "
                f"(got {self.embedding_dim} and {self.hidden_size})",
            )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data layout, stopping and evaluation settings of a training run."""

    batch_size: int = 32
    bptt: int = 128
    lr: float = 3e-3
    min_lr_ratio: float = 0.02  # the schedule decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # Activation regularisation of a language model (AWD-LSTM): ar * mean(dropped output^2)
    # and tar * mean((h_t - h_{t-1})^2) over the top layer's outputs, added to the loss
    # (the train loss reported stays the cross-entropy alone). Other tasks ignore them.
    # Measured at 2,000 steps of the 300 s default model on tinyshakespeare: val bpc 2.1848
    # without, 2.1264 with 1 and 1 (-2.7%, same speed); see benchmarks/RESULTS.md.
    ar: float = 1.0
    tar: float = 1.0
    ABSENT: ClassVar[dict[str, Any]] = {"ar": 0.0, "tar": 0.0}  # runs from before they existed had none
    max_steps: int | None = None
    epochs: float | None = None
    time_budget: float | None = None  # seconds of wall time, final evaluation and save included
    eval_interval: int = 500  # steps between validations
    log_interval: int = 10  # steps between progress reports (each costs one host sync)
    val_fraction: float = 0.1
    # ... but at most this many characters: validation time stays bounded on big corpora
    # (1M characters take about 10 s to score on a 2-core CPU with the default model).
    val_max_chars: int = 1_000_000
    seed: int = 1337
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None  # CPU threads for torch; None keeps torch's default
    # Divergence policy: a step whose loss or gradient is not finite is skipped (it never
    # reaches the weights); after ``rollback_after`` such steps in a row the weights and
    # optimizer state go back to the last checkpoint and the learning rate is multiplied by
    # ``rollback_lr_factor``; the run stops with an error after ``max_rollbacks`` rollbacks.
    rollback_after: int = 8
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5

    def __post_init__(self) -> None:
        _check(1 <= self.batch_size <= 1_000_000, f"batch_size must be >= 1, not {self.batch_size}")
        _check(1 <= self.bptt <= 1_000_000, f"bptt must be >= 1, not {self.bptt}")
        _check(math.isfinite(self.lr) and self.lr > 0, f"lr must be a positive number, not {self.lr}")
        _check(0.0 <= self.min_lr_ratio <= 1.0, f"min_lr_ratio must be in [0, 1], not {self.min_lr_ratio}")
        _check(self.warmup_steps >= 0, f"warmup_steps must be >= 0, not {self.warmup_steps}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, not {self.weight_decay}")
        _check(self.grad_clip > 0, f"grad_clip must be > 0, not {self.grad_clip}")
        _check(math.isfinite(self.ar) and self.ar >= 0, f"ar must be >= 0, not {self.ar}")
        _check(math.isfinite(self.tar) and self.tar >= 0, f"tar must be >= 0, not {self.tar}")
        _check(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, not {self.max_steps}")
        _check(self.epochs is None or self.epochs > 0, f"epochs must be > 0, not {self.epochs}")
        _check(
            self.time_budget is None or self.time_budget > 0,
            f"time_budget must be > 0 seconds, not {self.time_budget}",
        )
        _check(self.eval_interval >= 1, f"eval_interval must be >= 1, not {self.eval_interval}")
        _check(self.log_interval >= 1, f"log_interval must be >= 1, not {self.log_interval}")
        _check(0.0 < self.val_fraction < 1.0, f"val_fraction must be in (0, 1), not {self.val_fraction}")
        _check(self.val_max_chars >= 2, f"val_max_chars must be >= 2, not {self.val_max_chars}")
        _check(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        _check(
            self.precision in PRECISIONS,
            f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}",
        )
        _check(self.threads is None or self.threads >= 1, f"threads must be >= 1, not {self.threads}")
        _check(self.rollback_after >= 1, f"rollback_after must be >= 1, not {self.rollback_after}")
        _check(self.max_rollbacks >= 0, f"max_rollbacks must be >= 0, not {self.max_rollbacks}")
        _check(
            0.0 < self.rollback_lr_factor <= 1.0,
            f"rollback_lr_factor must be in (0, 1], not {self.rollback_lr_factor}",
        )

    @property
    def effective_epochs(self) -> float | None:
        """The epoch limit in force: the default one only when no other limit is set."""
        if self.epochs is None and self.max_steps is None and self.time_budget is None:
            return DEFAULT_EPOCHS
        return self.epochs


# What may differ when a run is resumed: its limits, reporting, hardware and divergence
# policy. Everything else (architecture, data layout, optimiser, seed) is fixed by the run.
RESUME_CHANGEABLE = frozenset({
    "max_steps", "epochs", "time_budget", "eval_interval", "log_interval", "device", "precision", "threads",
    "rollback_after", "max_rollbacks", "rollback_lr_factor",
})


def resume_train_config(saved: TrainConfig, given: dict[str, Any]) -> TrainConfig:
    """The config of a resumed run: ``saved`` with the changeable fields of ``given``.

    ``given`` holds only what the user set explicitly. A fixed field given with a value
    other than the saved one raises ResumeMismatchError naming it.
    """
    mismatch = [(k, getattr(saved, k), v) for k, v in given.items()
                if k not in RESUME_CHANGEABLE and getattr(saved, k) != v]
    if mismatch:
        raise ResumeMismatchError(mismatch)
    return dataclasses.replace(saved, **{k: v for k, v in given.items() if k in RESUME_CHANGEABLE})


def check_model_matches(saved: ModelConfig, given: dict[str, Any]) -> None:
    """Raise ResumeMismatchError when an explicitly given architecture field differs."""
    mismatch = [(k, getattr(saved, k), v) for k, v in given.items() if getattr(saved, k) != v]
    if mismatch:
        raise ResumeMismatchError(mismatch)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture of the sequence classifier (everything needed to rebuild it)."""

    vocab_size: int = 0  # set from the tokenizer
    num_labels: int = 0  # set from the data
    cell: str = "lstm"
    layers: int = 1
    hidden_size: int = 256
    embedding_dim: int = 128
    bidirectional: bool = True
    pool: str = "max"
    dropout: float = 0.3
    one_hot: bool = False  # input is each token's one-hot vector: no embedding, input size = vocab_size
    pad_id: int = 0

    def __post_init__(self) -> None:
        _check(self.cell in CELLS, f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        _check(self.pool in POOLS, f"pool must be one of {', '.join(POOLS)}, not {self.pool!r}")
        for name in ("vocab_size", "num_labels", "layers", "hidden_size", "embedding_dim", "pad_id"):
            _check(_is_int(getattr(self, name)), f"{name} must be a whole number, not {getattr(self, name)!r}")
        _check(self.vocab_size >= 0, f"vocab_size must be >= 0, not {self.vocab_size}")
        _check(self.num_labels >= 0, f"num_labels must be >= 0, not {self.num_labels}")
        _check(1 <= self.layers <= 64, f"layers must be between 1 and 64, not {self.layers}")
        _check(1 <= self.hidden_size <= 65536, f"hidden_size must be between 1 and 65536, not {self.hidden_size}")
        _check(1 <= self.embedding_dim <= 65536, f"embedding_dim must be between 1 and 65536, not {self.embedding_dim}")
        _check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), not {self.dropout}")
        _check(self.pad_id >= 0, f"pad_id must be >= 0, not {self.pad_id}")
        if self.vocab_size:
            _check(self.pad_id < self.vocab_size, f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}")


@dataclass(frozen=True)
class TaggerConfig:
    """Architecture of the sequence tagger (everything needed to rebuild it).

    Word ids: the word vocabulary's (0 is the unknown word) plus padding, the last id.
    Character ids: the character vocabulary's (0 is unknown) plus padding, the last id.
    """

    word_vocab_size: int = 0  # set from the training words
    char_vocab_size: int = 0  # set from the training characters
    num_tags: int = 0  # set from the data
    cell: str = "lstm"
    layers: int = 1
    hidden_size: int = 128  # per direction
    embedding_dim: int = 100  # word embedding
    char_embedding_dim: int = 32
    char_hidden_size: int = 64  # per direction of the character encoder; 0: no character encoder
    bidirectional: bool = True
    dropout: float = 0.33
    crf: bool = False

    def __post_init__(self) -> None:
        _check(self.cell in CELLS, f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        for name in ("word_vocab_size", "char_vocab_size", "num_tags", "layers", "hidden_size", "embedding_dim",
                     "char_embedding_dim", "char_hidden_size"):
            _check(_is_int(getattr(self, name)), f"{name} must be a whole number, not {getattr(self, name)!r}")
        _check(self.word_vocab_size == 0 or self.word_vocab_size >= 2, "word_vocab_size must be >= 2 (words and padding)")
        _check(self.char_vocab_size == 0 or self.char_vocab_size >= 2, "char_vocab_size must be >= 2 (characters and padding)")
        _check(self.num_tags >= 0, f"num_tags must be >= 0, not {self.num_tags}")
        _check(1 <= self.layers <= 64, f"layers must be between 1 and 64, not {self.layers}")
        _check(1 <= self.hidden_size <= 65536, f"hidden_size must be between 1 and 65536, not {self.hidden_size}")
        _check(1 <= self.embedding_dim <= 65536, f"embedding_dim must be between 1 and 65536, not {self.embedding_dim}")
        _check(1 <= self.char_embedding_dim <= 65536,
               f"char_embedding_dim must be between 1 and 65536, not {self.char_embedding_dim}")
        _check(0 <= self.char_hidden_size <= 65536,
               f"char_hidden_size must be between 0 and 65536, not {self.char_hidden_size}")
        _check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), not {self.dropout}")

    @property
    def word_pad_id(self) -> int:
        return self.word_vocab_size - 1

    @property
    def char_pad_id(self) -> int:
        return self.char_vocab_size - 1


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Architecture of the encoder-decoder (everything needed to rebuild it).

    Vocabularies are the tokenizers' plus ids of their own: the source adds padding (its
    last id); the target adds padding, SOS and EOS (its last three ids, in that order).
    """

    src_vocab_size: int = 0  # set from the tokenizers: source tokens + 1
    tgt_vocab_size: int = 0  # target tokens + 3
    cell: str = "lstm"
    layers: int = 1  # of the encoder and of the decoder
    hidden_size: int = 256  # of each encoder direction and of the decoder
    embedding_dim: int = 128
    bidirectional: bool = True  # encoder; the decoder starts from a learned bridge then
    attention: str = "general"
    input_feeding: bool = True  # feed the previous attentional vector with each target token
    dropout: float = 0.3
    tie_weights: bool = False  # the output layer shares the target embedding (needs embedding_dim == hidden_size)

    def __post_init__(self) -> None:
        _check(self.cell in CELLS, f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        _check(self.attention in ATTENTIONS, f"attention must be one of {', '.join(ATTENTIONS)}, not {self.attention!r}")
        for name in ("src_vocab_size", "tgt_vocab_size", "layers", "hidden_size", "embedding_dim"):
            _check(_is_int(getattr(self, name)), f"{name} must be a whole number, not {getattr(self, name)!r}")
        _check(self.src_vocab_size == 0 or self.src_vocab_size >= 2, "src_vocab_size must be >= 2 (tokens and padding)")
        _check(self.tgt_vocab_size == 0 or self.tgt_vocab_size >= 4, "tgt_vocab_size must be >= 4 (tokens, padding, SOS, EOS)")
        _check(1 <= self.layers <= 64, f"layers must be between 1 and 64, not {self.layers}")
        _check(1 <= self.hidden_size <= 65536, f"hidden_size must be between 1 and 65536, not {self.hidden_size}")
        _check(1 <= self.embedding_dim <= 65536, f"embedding_dim must be between 1 and 65536, not {self.embedding_dim}")
        _check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), not {self.dropout}")
        _check(not (self.attention == "dot" and self.bidirectional),
               "dot attention compares decoder and encoder states of one size: use it with --no-bidirectional, "
               "or take general or additive attention")
        _check(not self.tie_weights or self.embedding_dim == self.hidden_size,
               f"tie_weights needs embedding_dim == hidden_size ({self.embedding_dim} != {self.hidden_size})")

    @property
    def src_pad_id(self) -> int:
        return self.src_vocab_size - 1

    @property
    def tgt_pad_id(self) -> int:
        return self.tgt_vocab_size - 3

    @property
    def sos_id(self) -> int:
        return self.tgt_vocab_size - 2

    @property
    def eos_id(self) -> int:
        return self.tgt_vocab_size - 1


@dataclass(frozen=True)
class ConditionalConfig:
    """Architecture of the label-conditioned generator (everything needed to rebuild it).

    The vocabulary is the tokenizer's plus padding, SOS and EOS (its last three ids, in
    that order), as a seq2seq target's. The label is a learned embedding fed with every
    token; with ``label_init`` it also sets the initial hidden state of every layer.
    """

    vocab_size: int = 0  # set from the tokenizer: tokens + 3
    num_labels: int = 0  # set from the data
    cell: str = "lstm"
    layers: int = 2
    hidden_size: int = 128  # 2x128 LSTM: about 18k tokens/s training on one thread of a 2-core EPYC
    embedding_dim: int = 64
    label_dim: int = 32
    # True: h0 of every layer = tanh(W label + b). Off by default: on 5 languages' word lists
    # (4000 words each, 2x128 LSTM, 4 epochs, 2 seeds) it made no difference to the
    # validation bpc (3.218 with, 3.217 without; the seeds differ by 0.02-0.07).
    label_init: bool = False
    dropout: float = 0.1
    tie_weights: bool = False  # the output layer shares the token embedding (needs embedding_dim == hidden_size)

    def __post_init__(self) -> None:
        _check(self.cell in CELLS, f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        for name in ("vocab_size", "num_labels", "layers", "hidden_size", "embedding_dim", "label_dim"):
            _check(_is_int(getattr(self, name)), f"{name} must be a whole number, not {getattr(self, name)!r}")
        _check(self.vocab_size == 0 or self.vocab_size >= 4, "vocab_size must be >= 4 (tokens, padding, SOS, EOS)")
        _check(self.num_labels >= 0, f"num_labels must be >= 0, not {self.num_labels}")
        _check(1 <= self.layers <= 64, f"layers must be between 1 and 64, not {self.layers}")
        _check(1 <= self.hidden_size <= 65536, f"hidden_size must be between 1 and 65536, not {self.hidden_size}")
        _check(1 <= self.embedding_dim <= 65536, f"embedding_dim must be between 1 and 65536, not {self.embedding_dim}")
        _check(1 <= self.label_dim <= 65536, f"label_dim must be between 1 and 65536, not {self.label_dim}")
        _check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), not {self.dropout}")
        _check(not self.tie_weights or self.embedding_dim == self.hidden_size,
               f"tie_weights needs embedding_dim == hidden_size ({self.embedding_dim} != {self.hidden_size})")

    @property
    def pad_id(self) -> int:
        return self.vocab_size - 3

    @property
    def sos_id(self) -> int:
        return self.vocab_size - 2

    @property
    def eos_id(self) -> int:
        return self.vocab_size - 1


@dataclass(frozen=True)
class SampleConfig:
    """How to choose each next token during generation.

    Sampling (the default) draws from the model's distribution reshaped by temperature,
    top-k, top-p and min-p; ``greedy`` takes the most likely token; ``beam`` > 0 runs beam
    search, which ranks hypotheses by the model's log-probabilities (the sampling controls
    do not apply to it). Repetition penalty, no-repeat n-grams, stop strings, length and
    max_time apply to every strategy.

    Length: ``length`` counts generated tokens (a char model's tokens are characters);
    ``max_chars`` ends the text at that many characters. With max_chars and no length,
    the token count is set high enough never to end the text first (``max_tokens``).
    """

    length: int | None = None  # tokens to generate; None: DEFAULT_LENGTH, see max_tokens
    max_chars: int | None = None  # the text ends at this many characters
    temperature: float = 0.8
    greedy: bool = False
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None  # keep tokens with probability >= min_p * the top probability
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the prime or output
    no_repeat_ngram: int = 0  # > 0: never produce an n-gram of this size twice
    stop: tuple[str, ...] = ()  # output ends before the first occurrence of any of these
    max_time: float | None = None  # seconds
    seed: int | None = None  # sample i of a batch uses seed + i
    num_samples: int = 1
    beam: int = 0  # 0: no beam search; K >= 1: beam search with K beams (1 is greedy)
    length_penalty: float = 1.0  # beam scores are divided by length ** length_penalty
    num_return: int = 1  # beam search: how many of the best finished hypotheses to return

    def __post_init__(self) -> None:
        _check(self.length is None or self.length >= 0, f"length must be >= 0, not {self.length}")
        _check(self.max_chars is None or self.max_chars >= 0, f"max_chars must be >= 0, not {self.max_chars}")
        _check(
            math.isfinite(self.temperature) and self.temperature > 0,
            f"temperature must be > 0, not {self.temperature}",
        )
        _check(self.top_k is None or self.top_k >= 1, f"top_k must be >= 1, not {self.top_k}")
        _check(
            self.top_p is None or 0.0 < self.top_p <= 1.0,
            f"top_p must be in (0, 1], not {self.top_p}",
        )
        _check(self.min_p is None or 0.0 <= self.min_p <= 1.0, f"min_p must be in [0, 1], not {self.min_p}")
        _check(
            math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
            f"repetition_penalty must be > 0 (1 is off), not {self.repetition_penalty}",
        )
        _check(self.no_repeat_ngram >= 0, f"no_repeat_ngram must be >= 0, not {self.no_repeat_ngram}")
        _check(all(isinstance(s, str) and s for s in self.stop), "stop strings must be non-empty")
        _check(self.max_time is None or self.max_time > 0, f"max_time must be > 0 seconds, not {self.max_time}")
        _check(self.num_samples >= 1, f"num_samples must be >= 1, not {self.num_samples}")
        _check(self.beam >= 0, f"beam must be >= 1, not {self.beam}")
        _check(
            math.isfinite(self.length_penalty) and self.length_penalty >= 0,
            f"length_penalty must be >= 0, not {self.length_penalty}",
        )
        _check(self.num_return >= 1, f"num_return must be >= 1, not {self.num_return}")
        if self.beam:
            _check(self.num_return <= self.beam, f"num_return ({self.num_return}) cannot exceed beam ({self.beam})")
            _check(self.num_samples == 1, "num_samples does not apply to beam search (use num_return)")
        else:
            _check(self.num_return == 1, "num_return applies to beam search only (use num_samples)")

    @property
    def max_tokens(self) -> int:
        """The number of tokens generation stops at. With only max_chars set: 4 per
        character and 3 more, because every token that generation may produce adds at
        least one byte of text, and at most 4 bytes make a character (or a U+FFFD)."""
        if self.length is not None:
            return self.length
        if self.max_chars is not None:
            return 4 * self.max_chars + 3
        return DEFAULT_LENGTH


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a config from a stored dict, ignoring keys this version does not know. A key
    the stored dict lacks (written before the field existed) takes the value in the class's
    ``ABSENT`` (what a run of that time did), else the field's default."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{**getattr(cls, "ABSENT", {}), **{k: v for k, v in data.items() if k in names}})
