"""The character tokenizer (kind "char"): one token per Unicode code point.

Unknown characters: the vocabulary is the set of Unicode code points of the training
split, plus id 0, ``UNK_ID``, reserved for any code point outside it. An unknown
character in a prime or an evaluated text is encoded as ``UNK_ID``: the model reads it as
input (so the state moves on), evaluation does not score it and counts it in
``unknown``, and generation never produces it.

Unicode normalization (``normalize``, optional): the tokenizer first brings every text it
reads, the training text included, to one normal form (NFC, NFD, NFKC or NFKD), so that
equivalent spellings get the same ids. NFD splits precomposed letters into a base and its
combining marks (Hangul syllables into their jamo, "ệ" into e + two marks), which gives a
model of spellings far fewer, far better-trained symbols. ``decode`` composes its text
again (NFD -> NFC, NFKD -> NFKC); single tokens stay as they are.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import torch

from ..errors import TokenizerError
from .tokenizer import UNK_ID, UNK_TEXT, Detokenizer, TextDetokenizer, Tokenizer, _codepoints, _id_list


NORMAL_FORMS = ("NFC", "NFD", "NFKC", "NFKD")
COMPOSED = {"NFD": "NFC", "NFKD": "NFKC"}  # what decode composes a decomposed form's text back to


def _form(normalize: str | None) -> str | None:
    if normalize is not None and normalize not in NORMAL_FORMS:
        raise TokenizerError(f"unknown Unicode normal form {normalize!r} (one of {', '.join(NORMAL_FORMS)})")
    return normalize


class CharTokenizer(Tokenizer):
    """One token per Unicode code point seen in the training text; id 0 is unknown."""

    kind = "char"

    def __init__(self, chars: str, normalize: str | None = None):
        self.normalize = _form(normalize)
        if len(set(chars)) != len(chars):
            raise TokenizerError("character vocabulary has duplicates")
        self.chars = "".join(sorted(chars))
        if not self.chars:
            raise TokenizerError("cannot build a character vocabulary from empty text")
        # Sorted code points: encoding is a binary search per character, done by torch.
        self._points = _codepoints(self.chars)
        self._index = {c: i + 1 for i, c in enumerate(self.chars)}
        self.warnings = []

    @classmethod
    def train(cls, text: str, normalize: str | None = None) -> CharTokenizer:
        """The vocabulary of ``text`` (in normal form ``normalize``): its distinct code points."""
        if not text:
            raise TokenizerError("cannot build a character vocabulary from empty text")
        if _form(normalize):
            text = unicodedata.normalize(normalize, text)
        return cls("".join(set(text)), normalize)

    def _normal(self, text: str) -> str:
        return unicodedata.normalize(self.normalize, text) if self.normalize else text

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def banned_ids(self) -> list[int]:
        return [UNK_ID]

    @property
    def start_id(self) -> int:
        # Start as if after a line break, the most natural place for text to begin.
        return self._index.get("\n", 1)

    def encode(self, text: str) -> torch.Tensor:
        return self._ids(_codepoints(self._normal(text)))

    def _ids(self, points: torch.Tensor) -> torch.Tensor:
        pos = torch.searchsorted(self._points, points)
        pos_clamped = pos.clamp(max=len(self.chars) - 1)
        known = self._points[pos_clamped] == points
        return torch.where(known, pos_clamped + 1, torch.full_like(pos, UNK_ID))

    def encode_lines(self, lines: list[str]) -> list[list[int]]:
        if self.normalize:
            lines = [self._normal(line) for line in lines]
        points = _codepoints("".join(lines))  # one id per character: split by line lengths
        ids = self._ids(points)
        return [t.tolist() for t in torch.split(ids, [len(line) for line in lines])]

    def decode(self, ids: Any) -> str:
        text = "".join([self.token_text(i) for i in _id_list(ids)])
        return unicodedata.normalize(COMPOSED[self.normalize], text) if self.normalize in COMPOSED else text

    def detokenizer(self) -> Detokenizer:
        return TextDetokenizer(self.token_text)

    def token_text(self, token_id: int) -> str:
        if 1 <= token_id <= len(self.chars):
            return self.chars[token_id - 1]
        return UNK_TEXT

    def piece(self, token_id: int) -> str:
        return self.token_text(token_id) if token_id != UNK_ID else "<unk>"

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta = {"kind": self.kind, "chars": self.chars}
        if self.normalize:
            meta["normalize"] = self.normalize  # absent (None) in checkpoints from before it existed
        return meta, {}
