"""Architectures of the task models (classifier, tagger, encoder-decoder, conditional
generator): frozen dataclasses like those of ``config``, validated on creation, stored in
every checkpoint of their task and rebuilt from it (``config.from_dict``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .config import RecurrentConfig, check, is_int

POOLS = ("last", "mean", "max", "attention")  # how a classifier pools the outputs over a sequence
ATTENTIONS = ("none", "dot", "general", "additive")  # how a seq2seq decoder looks at the source


@dataclass(frozen=True)
class ClassifierConfig(RecurrentConfig):
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
        check(self.pool in POOLS, f"pool must be one of {', '.join(POOLS)}, not {self.pool!r}")
        for name in ("vocab_size", "num_labels", "layers", "hidden_size", "embedding_dim", "pad_id"):
            check(is_int(getattr(self, name)), f"{name} must be a whole number, not {getattr(self, name)!r}")
        check(self.vocab_size >= 0, f"vocab_size must be >= 0, not {self.vocab_size}")
        check(self.num_labels >= 0, f"num_labels must be >= 0, not {self.num_labels}")
        self._check_recurrent()  # after the whole-number checks: it compares sizes
        check(self.pad_id >= 0, f"pad_id must be >= 0, not {self.pad_id}")
        if self.vocab_size:
            check(self.pad_id < self.vocab_size, f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}")


@dataclass(frozen=True)
class TaggerConfig(RecurrentConfig):
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
        for name in ("word_vocab_size", "char_vocab_size", "num_tags", "layers", "hidden_size", "embedding_dim",
                     "char_embedding_dim", "char_hidden_size"):
            check(is_int(getattr(self, name)), f"{name} must be a whole number, not {getattr(self, name)!r}")
        check(self.word_vocab_size == 0 or self.word_vocab_size >= 2, "word_vocab_size must be >= 2 (words and padding)")
        check(self.char_vocab_size == 0 or self.char_vocab_size >= 2, "char_vocab_size must be >= 2 (characters and padding)")
        check(self.num_tags >= 0, f"num_tags must be >= 0, not {self.num_tags}")
        self._check_recurrent()  # after the whole-number checks: it compares sizes
        check(1 <= self.char_embedding_dim <= 65536,
               f"char_embedding_dim must be between 1 and 65536, not {self.char_embedding_dim}")
        check(0 <= self.char_hidden_size <= 65536,
               f"char_hidden_size must be between 0 and 65536, not {self.char_hidden_size}")

    @property
    def word_pad_id(self) -> int:
        return self.word_vocab_size - 1

    @property
    def char_pad_id(self) -> int:
        return self.char_vocab_size - 1


@dataclass(frozen=True)
class Seq2SeqConfig(RecurrentConfig):
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
    attention: str = "additive"  # Bahdanau: on SIGMORPHON 2021 G2P it beat Luong general (benchmarks/RESULTS.md)
    input_feeding: bool = True  # feed the previous attentional vector with each target token
    dropout: float = 0.3
    tie_weights: bool = False  # the output layer shares the target embedding (needs embedding_dim == hidden_size)
    # A stored config without an attention kind comes from before additive became the default.
    ABSENT: ClassVar[dict[str, Any]] = {"attention": "general"}

    def __post_init__(self) -> None:
        check(self.attention in ATTENTIONS, f"attention must be one of {', '.join(ATTENTIONS)}, not {self.attention!r}")
        for name in ("src_vocab_size", "tgt_vocab_size", "layers", "hidden_size", "embedding_dim"):
            check(is_int(getattr(self, name)), f"{name} must be a whole number, not {getattr(self, name)!r}")
        check(self.src_vocab_size == 0 or self.src_vocab_size >= 2, "src_vocab_size must be >= 2 (tokens and padding)")
        check(self.tgt_vocab_size == 0 or self.tgt_vocab_size >= 4, "tgt_vocab_size must be >= 4 (tokens, padding, SOS, EOS)")
        self._check_recurrent()  # after the whole-number checks: it compares sizes
        check(not (self.attention == "dot" and self.bidirectional),
               "dot attention compares decoder and encoder states of one size: use it with --no-bidirectional, "
               "or take general or additive attention")
        check(not self.tie_weights or self.embedding_dim == self.hidden_size,
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
class ConditionalConfig(RecurrentConfig):
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
        for name in ("vocab_size", "num_labels", "layers", "hidden_size", "embedding_dim", "label_dim"):
            check(is_int(getattr(self, name)), f"{name} must be a whole number, not {getattr(self, name)!r}")
        check(self.vocab_size == 0 or self.vocab_size >= 4, "vocab_size must be >= 4 (tokens, padding, SOS, EOS)")
        check(self.num_labels >= 0, f"num_labels must be >= 0, not {self.num_labels}")
        self._check_recurrent()  # after the whole-number checks: it compares sizes
        check(1 <= self.label_dim <= 65536, f"label_dim must be between 1 and 65536, not {self.label_dim}")
        check(not self.tie_weights or self.embedding_dim == self.hidden_size,
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
