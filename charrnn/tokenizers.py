"""Tokenizers: text <-> integer ids.

One small interface (``Tokenizer``) with one implementation for now, ``CharTokenizer``.
Subword kinds plug in behind the same interface: they only have to encode to an
integer tensor, decode ids back to text, and store their state as JSON-able metadata
plus tensors so that a checkpoint carries the tokenizer with it.

Unknown characters (char tokenizer): the vocabulary is the set of Unicode code points of
the training split, plus id 0, ``UNK_ID``, reserved for any code point outside it. An
unknown character in a prime or an evaluated text is encoded as ``UNK_ID``: the model
reads it as input (so the state moves on), evaluation does not score it and counts it in
``unknown``, and generation never produces it.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import TokenizerError

UNK_ID = 0
UNK_TEXT = "\ufffd"  # what decoding UNK_ID gives back


def _codepoints(text: str) -> torch.Tensor:
    """Code points of ``text`` as an int64 tensor, without a Python object per character."""
    if not text:
        return torch.zeros(0, dtype=torch.int64)
    # UTF-32 holds one 4-byte unit per code point; surrogates cannot appear in valid text,
    # but lone surrogates in a str would fail to encode: keep them as U+FFFD.
    raw = bytearray(text.encode("utf-32-le", errors="replace"))
    return torch.frombuffer(raw, dtype=torch.int32).to(torch.int64)


class Tokenizer:
    """Interface every tokenizer kind implements."""

    kind: str = ""

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> torch.Tensor:
        """Ids of ``text`` as a 1-D int64 tensor."""
        raise NotImplementedError

    def decode(self, ids: Any) -> str:
        raise NotImplementedError

    def token_text(self, token_id: int) -> str:
        """The text of one token (used when streaming generated tokens)."""
        raise NotImplementedError

    @property
    def unk_id(self) -> int | None:
        """Id that stands for unknown input, or None when every input is representable."""
        return None

    @property
    def start_id(self) -> int:
        """Token the model is fed when generation has no prime text."""
        raise NotImplementedError

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """JSON-able metadata and tensors that ``from_state`` rebuilds this tokenizer from."""
        raise NotImplementedError


class CharTokenizer(Tokenizer):
    """One token per Unicode code point seen in the training text; id 0 is unknown."""

    kind = "char"

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars):
            raise TokenizerError("character vocabulary has duplicates")
        self.chars = "".join(sorted(chars))
        if not self.chars:
            raise TokenizerError("cannot build a character vocabulary from empty text")
        # Sorted code points: encoding is a binary search per character, done by torch.
        self._points = _codepoints(self.chars)
        self._index = {c: i + 1 for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        """The vocabulary of ``text``: its distinct code points."""
        if not text:
            raise TokenizerError("cannot build a character vocabulary from empty text")
        return cls("".join(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def start_id(self) -> int:
        # Start as if after a line break, the most natural place for text to begin.
        return self._index.get("\n", 1)

    def encode(self, text: str) -> torch.Tensor:
        points = _codepoints(text)
        pos = torch.searchsorted(self._points, points)
        pos_clamped = pos.clamp(max=len(self.chars) - 1)
        known = self._points[pos_clamped] == points
        return torch.where(known, pos_clamped + 1, torch.full_like(pos, UNK_ID))

    def decode(self, ids: Any) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.token_text(i) for i in ids)

    def token_text(self, token_id: int) -> str:
        if 1 <= token_id <= len(self.chars):
            return self.chars[token_id - 1]
        return UNK_TEXT

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"kind": self.kind, "chars": self.chars}, {}


def train_tokenizer(kind: str, text: str) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(text)
    raise TokenizerError(f"unknown tokenizer kind {kind!r}")


def tokenizer_from_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Tokenizer:
    kind = meta.get("kind")
    if kind == "char":
        chars = meta.get("chars")
        if not isinstance(chars, str):
            raise TokenizerError("stored char tokenizer has no character list")
        return CharTokenizer(chars)
    raise TokenizerError(f"unknown tokenizer kind {kind!r} (made by a newer charrnn?)")
