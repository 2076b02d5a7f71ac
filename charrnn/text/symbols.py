"""Tokenizers for sequence-to-sequence data: space-separated symbols, and source/target pairs.

``SymbolTokenizer`` (kind "space"): the text is a sequence of symbols separated by
whitespace, as phone strings in grapheme-to-phoneme data are (``a b ə t̪ ə``). A symbol
is whatever lies between two runs of whitespace, so a phone written with several code
points ("t͡ʃ", "a̠") is one token. Conventions:

- The vocabulary is the sorted distinct symbols of the training text; id 0, ``UNK_ID``,
  stands for any symbol outside it (decoded as ``UNK_TEXT``, never generated), so
  ``vocab_size`` is the number of symbols plus one.
- Whitespace is not kept: ``encode`` gives the ids of ``text.split()``, and ``decode``
  joins the symbols with single spaces, so ``decode(encode(s)) == " ".join(s.split())``
  for text whose symbols are all known. A line break is whitespace like any other.

``PairTokenizer`` (kind "pair"): the two tokenizers of an encoder-decoder model, one for
the source side and one for the target side, stored together in the single tokenizer
slot of a checkpoint. Both sides may be the same object (a shared vocabulary; ``shared``).
As a ``Tokenizer`` it *is its target side*: ``encode``, ``decode``, ``detokenizer``,
``vocab_size``, ``start_id`` and the rest all delegate to ``target``, since what a model
generates (and what evaluation scores) is target text. A seq2seq model reads its sources
through ``.source`` explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import TokenizerError
from .tokenizer import UNK_ID, UNK_TEXT, Detokenizer, Tokenizer, _id_list

PAIR_KIND = "pair"


class _SymbolDetokenizer(Detokenizer):
    """Symbols of one stream: the first as it is, every later one after a single space."""

    def __init__(self, text_of: Callable[[int], str], started: bool = False):
        self._text_of = text_of
        self._started = started

    def feed(self, token_id: int) -> str:
        text = self._text_of(token_id)
        if self._started:
            return " " + text
        self._started = True
        return text

    def clone(self) -> _SymbolDetokenizer:
        return _SymbolDetokenizer(self._text_of, self._started)


class SymbolTokenizer(Tokenizer):
    """One token per whitespace-separated symbol seen in the training text; id 0 is unknown."""

    kind = "space"

    def __init__(self, symbols: list[str]):
        if not symbols:
            raise TokenizerError("cannot build a symbol vocabulary from text without symbols")
        bad = next((s for s in symbols if not isinstance(s, str) or not s or s.split() != [s]), None)
        if bad is not None:
            raise TokenizerError(f"symbol {bad!r} is empty or holds whitespace")
        if len(set(symbols)) != len(symbols):
            raise TokenizerError("symbol vocabulary has duplicates")
        self.vocabulary: list[str] = sorted(symbols)  # id i + 1 is vocabulary[i]
        self._index = {s: i + 1 for i, s in enumerate(self.vocabulary)}
        self.warnings = []

    @classmethod
    def train(cls, text: str) -> SymbolTokenizer:
        """The vocabulary of ``text``: its distinct whitespace-separated symbols."""
        symbols = set(text.split())
        if not symbols:
            raise TokenizerError("cannot build a symbol vocabulary from text without symbols "
                                 "(it is empty or only whitespace)")
        return cls(list(symbols))

    def symbols(self, text: str) -> list[str]:
        """The symbols of ``text``, cut as ``encode`` cuts them (e.g. for a token error rate)."""
        return text.split()

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary) + 1

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def banned_ids(self) -> list[int]:
        return [UNK_ID]

    @property
    def start_id(self) -> int:
        return 1

    def encode(self, text: str) -> torch.Tensor:
        index = self._index
        return torch.tensor([index.get(s, UNK_ID) for s in text.split()], dtype=torch.int64)

    def encode_lines(self, lines: list[str]) -> list[list[int]]:
        index = self._index
        return [[index.get(s, UNK_ID) for s in line.split()] for line in lines]

    def decode(self, ids: Any) -> str:
        return " ".join([self.token_text(i) for i in _id_list(ids)])

    def detokenizer(self) -> Detokenizer:
        return _SymbolDetokenizer(self.token_text)

    def token_text(self, token_id: int) -> str:
        if 1 <= token_id <= len(self.vocabulary):
            return self.vocabulary[token_id - 1]
        return UNK_TEXT

    def piece(self, token_id: int) -> str:
        return self.token_text(token_id) if token_id != UNK_ID else "<unk>"

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"kind": self.kind, "symbols": list(self.vocabulary)}, {}


class PairTokenizer(Tokenizer):
    """The source and target tokenizers of a seq2seq model; as a Tokenizer, its target."""

    kind = PAIR_KIND

    def __init__(self, source: Tokenizer, target: Tokenizer):
        for side, tok in (("source", source), ("target", target)):
            if not isinstance(tok, Tokenizer):
                raise TokenizerError(f"the {side} side of a pair tokenizer is not a tokenizer")
            if tok.kind == PAIR_KIND:
                raise TokenizerError(f"the {side} side of a pair tokenizer cannot itself be a pair")
        self.source, self.target = source, target
        if self.shared:
            self.warnings = list(source.warnings)
        else:
            self.warnings = [f"source: {w}" for w in source.warnings] + [f"target: {w}" for w in target.warnings]

    @property
    def shared(self) -> bool:
        """Whether both sides are one tokenizer (one vocabulary for sources and targets)."""
        return self.source is self.target

    @property
    def vocab_size(self) -> int:
        return self.target.vocab_size

    def encode(self, text: str) -> torch.Tensor:
        return self.target.encode(text)

    def encode_lines(self, lines: list[str]) -> list[list[int]]:
        return self.target.encode_lines(lines)

    def decode(self, ids: Any) -> str:
        return self.target.decode(ids)

    def detokenizer(self) -> Detokenizer:
        return self.target.detokenizer()

    def token_text(self, token_id: int) -> str:
        return self.target.token_text(token_id)

    def piece(self, token_id: int) -> str:
        return self.target.piece(token_id)

    @property
    def unk_id(self) -> int | None:
        return self.target.unk_id

    @property
    def banned_ids(self) -> list[int]:
        return self.target.banned_ids

    @property
    def start_id(self) -> int:
        return self.target.start_id

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Meta {"kind": "pair", "shared", "source", "target" (absent when shared)}; the
        tensors of each side under "source." and "target." (no "target." when shared)."""
        src_meta, src_tensors = self.source.state()
        meta: dict[str, Any] = {"kind": self.kind, "shared": self.shared, "source": src_meta}
        tensors = {f"source.{k}": v for k, v in src_tensors.items()}
        if not self.shared:
            tgt_meta, tgt_tensors = self.target.state()
            meta["target"] = tgt_meta
            tensors.update({f"target.{k}": v for k, v in tgt_tensors.items()})
        return meta, tensors

    @classmethod
    def from_state(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor],
                   build: Callable[[dict[str, Any], dict[str, torch.Tensor]], Tokenizer]) -> PairTokenizer:
        """Rebuild from ``state()``; ``build`` rebuilds one side (``tokenizer_from_state``)."""
        shared = meta.get("shared")
        if not isinstance(shared, bool):
            raise TokenizerError("stored pair tokenizer is damaged (no 'shared' flag)")
        sides = ("source",) if shared else ("source", "target")
        built: list[Tokenizer] = []
        for side in sides:
            side_meta = meta.get(side)
            if not isinstance(side_meta, dict):
                raise TokenizerError(f"stored pair tokenizer is damaged (no {side} tokenizer)")
            if side_meta.get("kind") == PAIR_KIND:
                raise TokenizerError(f"stored pair tokenizer is damaged (its {side} is a pair)")
            prefix = f"{side}."
            side_tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                built.append(build(side_meta, side_tensors))
            except TokenizerError as e:
                raise TokenizerError(f"pair tokenizer, {side} side: {e}") from None
        return cls(built[0], built[-1])
