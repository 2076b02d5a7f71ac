"""The tokenizer interface: text <-> integer ids, and incremental decoding.

Implementations: ``char.CharTokenizer`` (kind "char") and
``sentencepiece.SentencePieceTokenizer`` (kinds "bpe", "unigram", "word"), and for
sequence-to-sequence models ``symbols.SymbolTokenizer`` (kind "space", whitespace-separated
symbols) and ``symbols.PairTokenizer`` (kind "pair", a source and a target tokenizer in one
checkpoint slot); ``tokenizers`` builds, stores and loads them by kind. A tokenizer stores its state as JSON-able metadata
plus tensors, so a checkpoint (or a tokenizer file) carries the tokenizer with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

UNK_ID = 0
UNK_TEXT = "\ufffd"  # what decoding UNK_ID gives back

KINDS = ("char", "bpe", "unigram", "word")
SUBWORD_KINDS = ("bpe", "unigram", "word")
# Kinds for one side of a seq2seq model ("space" splits at whitespace: phones, tags).
SEQ2SEQ_KINDS = ("char", "space", "bpe", "unigram", "word")


def _codepoints(text: str) -> torch.Tensor:
    """Code points of ``text`` as an int64 tensor, without a Python object per character."""
    if not text:
        return torch.zeros(0, dtype=torch.int64)
    # UTF-32 holds one 4-byte unit per code point; surrogates cannot appear in valid text,
    # but lone surrogates in a str would fail to encode: keep them as U+FFFD.
    raw = bytearray(text.encode("utf-32-le", errors="replace"))
    return torch.frombuffer(raw, dtype=torch.int32).to(torch.int64)


def _id_list(ids: Any) -> list[int]:
    if isinstance(ids, torch.Tensor):
        return ids.view(-1).tolist()
    return [int(i) for i in ids]


# --------------------------------------------------------------------------- detokenizers




class Detokenizer:
    """Turns one stream of token ids into text, incrementally (one per generated row).

    ``feed(id)`` returns the text that token completes: often its own text, but "" for a
    byte token that starts a character not finished yet, and the held bytes plus more when
    it finishes one. ``flush()`` ends the stream (held bytes become U+FFFD). Bytes in an
    order that is not valid UTF-8 come out as U+FFFD; feeding never fails.
    """

    pending: bool = False  # bytes are held back that do not make a whole character yet

    def feed(self, token_id: int) -> str:
        raise NotImplementedError

    def flush(self) -> str:
        return ""

    def clone(self) -> Detokenizer:
        """An independent copy in the same state (beam search branches)."""
        return self


class TextDetokenizer(Detokenizer):
    """For tokenizers whose every token is whole text: one lookup per token, no state."""

    def __init__(self, text_of: Callable[[int], str]):
        self.feed = text_of  # type: ignore[method-assign]  # the lookup itself: no extra call


# --------------------------------------------------------------------------- interface


class Tokenizer:
    """Interface every tokenizer kind implements."""

    kind: str = ""
    warnings: list[str]  # notes from training for the user (e.g. a capped vocabulary); not stored

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> torch.Tensor:
        """Ids of ``text`` as a 1-D int64 tensor."""
        raise NotImplementedError

    def encode_lines(self, lines: list[str]) -> list[list[int]]:
        """Ids of each of ``lines`` (texts without "\\n"), in one pass where possible."""
        return [self.encode(line).tolist() for line in lines]

    def decode(self, ids: Any) -> str:
        det = self.detokenizer()
        return "".join([det.feed(i) for i in _id_list(ids)]) + det.flush()

    def detokenizer(self) -> Detokenizer:
        """A fresh incremental decoder for one stream of generated ids."""
        raise NotImplementedError

    def token_text(self, token_id: int) -> str:
        """The text of one token decoded on its own (a lone byte token gives U+FFFD)."""
        return self.decode([token_id])

    def piece(self, token_id: int) -> str:
        """The vocabulary entry of one token, for display (e.g. "▁the", "<0xE2>")."""
        return self.token_text(token_id)

    @property
    def unk_id(self) -> int | None:
        """Id that stands for unknown input, or None when every input is representable."""
        return None

    @property
    def banned_ids(self) -> list[int]:
        """Ids that generation must never produce (they stand for no text)."""
        return []

    @property
    def start_id(self) -> int:
        """Token the model is fed when generation has no prime text."""
        raise NotImplementedError

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """JSON-able metadata and tensors that ``tokenizer_from_state`` rebuilds this from."""
        raise NotImplementedError
