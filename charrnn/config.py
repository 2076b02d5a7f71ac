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

# The names of the recurrent cell kinds, in the order of models/cells.py's table, which
# owns them: its register_cell appends a name here. The configs and the command line check
# names against this list without importing torch (the table's entries need it).
CELLS: list[str] = ["lstm", "gru", "rnn", "mingru", "minlstm"]
# The cells trained by a parallel scan (no recurrent matrix, so no weight drop).
SCAN_CELLS = ("mingru", "minlstm")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
# The learning-rate schedules: "cosine" (linear warmup over warmup_steps, then cosine decay)
# and "slanted" (ULMFiT's slanted triangular: a linear rise over the first tenth of the run,
# then a linear decay; warmup_steps does not apply).
SCHEDULES = ("cosine", "slanted")

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


def check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


class RecurrentConfig:
    """What every recurrent model's config has (ModelConfig and the task models' configs),
    with its checks declared once: each config calls ``_check_recurrent`` from its
    ``__post_init__``.

    The fields are declared by each config, at its place and with its default (layers 2
    for the language model, 1 for the classifier; hidden_size 512, 256 or 128): a
    config's field order is the order of its keys in checkpoints and ``info``, and a base
    dataclass would put its fields first. These annotations say what they mean.
    """

    cell: str  # a name in CELLS
    layers: int  # stacked recurrent layers
    hidden_size: int  # units per layer (per direction where a model reads both ways)
    embedding_dim: int  # the token embedding's size
    dropout: float  # between recurrent layers (and wherever the model says)

    def _check_recurrent(self) -> None:
        check(self.cell in CELLS, f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        check(1 <= self.layers <= 64, f"layers must be between 1 and 64, not {self.layers}")
        check(1 <= self.hidden_size <= 65536, f"hidden_size must be between 1 and 65536, not {self.hidden_size}")
        check(1 <= self.embedding_dim <= 65536, f"embedding_dim must be between 1 and 65536, not {self.embedding_dim}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), not {self.dropout}")


@dataclass(frozen=True)
class ModelConfig(RecurrentConfig):
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
            check(0.0 <= value < 1.0, f"{name} must be in [0, 1), not {value}")
        self._check_recurrent()
        check(not (self.weight_drop and self.cell in SCAN_CELLS),
              f"weight_drop drops recurrent weights, which a {self.cell} cell does not have (its gates read the "
              "input alone): use dropout instead")
        check(self.vocab_size >= 0, "vocab_size must be >= 0")
        if self.tie_weights:
            check(
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
    schedule: str = "cosine"
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
    # Early stopping: after this many evaluations in a row without a better validation
    # score the learning rate is annealed to its floor over as many evaluations again, and
    # the run ends (the best checkpoint is kept); None or 0 trains to the limit.
    patience: int | None = None
    # Stochastic weight averaging: the mean of the weights at the last this many evaluations
    # is scored at the end of the run and becomes the best checkpoint if it scores better;
    # 0 (or 1) is off.
    average_last: int = 0
    # Fine-tuning a model started from a language model (--init, ULMFiT): the learning rate
    # of a layer is lr / layer_lr_decay ** (its distance from the top: the new layers); and
    # with ``unfreeze`` > 0 only the top trains at first, one more layer every ``unfreeze``
    # steps, from the top down. 1.0 and 0 leave every layer at lr from the start.
    layer_lr_decay: float = 1.0
    unfreeze: int = 0
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
        check(1 <= self.batch_size <= 1_000_000, f"batch_size must be >= 1, not {self.batch_size}")
        check(1 <= self.bptt <= 1_000_000, f"bptt must be >= 1, not {self.bptt}")
        check(math.isfinite(self.lr) and self.lr > 0, f"lr must be a positive number, not {self.lr}")
        check(0.0 <= self.min_lr_ratio <= 1.0, f"min_lr_ratio must be in [0, 1], not {self.min_lr_ratio}")
        check(self.warmup_steps >= 0, f"warmup_steps must be >= 0, not {self.warmup_steps}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, not {self.weight_decay}")
        check(self.grad_clip > 0, f"grad_clip must be > 0, not {self.grad_clip}")
        check(math.isfinite(self.ar) and self.ar >= 0, f"ar must be >= 0, not {self.ar}")
        check(math.isfinite(self.tar) and self.tar >= 0, f"tar must be >= 0, not {self.tar}")
        check(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, not {self.max_steps}")
        check(self.epochs is None or self.epochs > 0, f"epochs must be > 0, not {self.epochs}")
        check(math.isfinite(self.layer_lr_decay) and self.layer_lr_decay >= 1.0,
              f"layer_lr_decay must be >= 1 (1 is off), not {self.layer_lr_decay}")
        check(is_int(self.unfreeze) and self.unfreeze >= 0, f"unfreeze must be >= 0 steps (0 is off), not {self.unfreeze}")
        check(self.patience is None or (is_int(self.patience) and self.patience >= 0),
              f"patience must be a whole number of evaluations >= 1 (0 is off), not {self.patience}")
        check(is_int(self.average_last) and 0 <= self.average_last <= 1000,
              f"average_last must be a number of evaluations from 0 (off) to 1000, not {self.average_last}")
        check(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        check(
            self.time_budget is None or self.time_budget > 0,
            f"time_budget must be > 0 seconds, not {self.time_budget}",
        )
        check(self.eval_interval >= 1, f"eval_interval must be >= 1, not {self.eval_interval}")
        check(self.log_interval >= 1, f"log_interval must be >= 1, not {self.log_interval}")
        check(0.0 < self.val_fraction < 1.0, f"val_fraction must be in (0, 1), not {self.val_fraction}")
        check(self.val_max_chars >= 2, f"val_max_chars must be >= 2, not {self.val_max_chars}")
        check(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        check(
            self.precision in PRECISIONS,
            f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}",
        )
        check(self.threads is None or self.threads >= 1, f"threads must be >= 1, not {self.threads}")
        check(self.rollback_after >= 1, f"rollback_after must be >= 1, not {self.rollback_after}")
        check(self.max_rollbacks >= 0, f"max_rollbacks must be >= 0, not {self.max_rollbacks}")
        check(
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
    "max_steps", "epochs", "time_budget", "patience", "average_last", "eval_interval", "log_interval", "device", "precision", "threads",
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


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


ENGINES = ("auto", "torch", "onnx")  # what computes a language model's step (decoding/engines.py)


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
    engine: str = "auto"  # a language model's step: "torch", "onnx" or "auto" (decoding/engines.py)

    def __post_init__(self) -> None:
        check(self.length is None or self.length >= 0, f"length must be >= 0, not {self.length}")
        check(self.max_chars is None or self.max_chars >= 0, f"max_chars must be >= 0, not {self.max_chars}")
        check(
            math.isfinite(self.temperature) and self.temperature > 0,
            f"temperature must be > 0, not {self.temperature}",
        )
        check(self.top_k is None or self.top_k >= 1, f"top_k must be >= 1, not {self.top_k}")
        check(
            self.top_p is None or 0.0 < self.top_p <= 1.0,
            f"top_p must be in (0, 1], not {self.top_p}",
        )
        check(self.min_p is None or 0.0 <= self.min_p <= 1.0, f"min_p must be in [0, 1], not {self.min_p}")
        check(
            math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
            f"repetition_penalty must be > 0 (1 is off), not {self.repetition_penalty}",
        )
        check(self.no_repeat_ngram >= 0, f"no_repeat_ngram must be >= 0, not {self.no_repeat_ngram}")
        check(all(isinstance(s, str) and s for s in self.stop), "stop strings must be non-empty")
        check(self.max_time is None or self.max_time > 0, f"max_time must be > 0 seconds, not {self.max_time}")
        check(self.num_samples >= 1, f"num_samples must be >= 1, not {self.num_samples}")
        check(self.beam >= 0, f"beam must be >= 1, not {self.beam}")
        check(
            math.isfinite(self.length_penalty) and self.length_penalty >= 0,
            f"length_penalty must be >= 0, not {self.length_penalty}",
        )
        check(self.num_return >= 1, f"num_return must be >= 1, not {self.num_return}")
        check(self.engine in ENGINES, f"engine must be {', '.join(ENGINES[:-1])} or {ENGINES[-1]}, not {self.engine!r}")
        if self.beam:
            check(self.num_return <= self.beam, f"num_return ({self.num_return}) cannot exceed beam ({self.beam})")
            check(self.num_samples == 1, "num_samples does not apply to beam search (use num_return)")
        else:
            check(self.num_return == 1, "num_return applies to beam search only (use num_samples)")

    # The controls that reshape a sampling distribution (and greedy, which replaces it): beam
    # search ranks hypotheses by the model's own log-probabilities, so none applies to it.
    SAMPLING_CONTROLS: ClassVar[tuple[str, ...]] = ("temperature", "top_k", "top_p", "min_p", "greedy")

    @classmethod
    def build(cls, spell: Any = str, **options: Any) -> SampleConfig:
        """A config from options where None means "not given" (the ``sample`` command's
        flags, a server request, keywords): a sampling control given with beam search is
        refused in one ConfigError naming them as ``spell`` writes a field ("--top-k" on the
        command line); the error's ``field`` is the first of them."""
        if options.get("beam"):
            given = [f for f in cls.SAMPLING_CONTROLS if options.get(f) not in (None, False)]
            if given:
                error = ConfigError(f"sampling options do not apply to beam search: {', '.join(map(spell, given))}")
                error.field = given[0]
                raise error
        return cls(**{k: v for k, v in options.items() if v is not None})

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
