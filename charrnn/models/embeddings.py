"""Pretrained word vectors: reading word2vec/GloVe text files and loading them into an embedding.

The text format is one vector per line, ``word v1 v2 ... vD``, separated by single spaces,
optionally preceded by a word2vec header line ``COUNT DIM``. Some files (GloVe 840B) hold
words that contain spaces, so a line is split from the right: the last D fields are the
vector and everything before them is the word. D comes from the header, or else from the
number of fields on the first line. Files ending in ``.gz`` are decompressed on the fly.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, CorpusError


def read_vectors(path: str | os.PathLike, wanted: set[str] | None = None) -> tuple[dict[str, torch.Tensor], int]:
    """The vectors (float32, (D,)) of the words in ``wanted`` (all if None), and D.

    Every line's shape is checked, but only the kept words' numbers are parsed, so that
    picking a few thousand words out of a large file stays quick. When a word occurs more
    than once, its first vector is kept. A header's count must match the number of lines.
    """
    path = Path(path)
    vectors: dict[str, torch.Tensor] = {}
    dim: int | None = None
    declared: int | None = None
    count = 0
    for number, text in _lines(path):
        if not text:
            continue
        if dim is None:
            declared, dim = _first_line(path, number, text)
            if declared is not None:
                continue
        word, values = _split(path, number, text, dim)
        count += 1
        if (wanted is None or word in wanted) and word not in vectors:
            vectors[word] = _parse(path, number, values)
    if dim is None or count == 0:
        raise CorpusError(f"{path}: holds no word vectors")
    if declared is not None and declared != count:
        raise CorpusError(f"{path}: the header announces {declared} vectors but the file holds {count}; is it truncated?")
    return vectors, dim


def init_embedding(embedding: nn.Embedding, words: list[str], path: str | os.PathLike, freeze: bool) -> tuple[int, int]:
    """Copy the vectors of ``words`` (``words[i]`` is the text of token id i) from ``path``
    into the rows of ``embedding``; returns (words found, words).

    Each word is looked up as is, then lowercased (GloVe's vocabulary is lowercase). Rows
    of words not found keep their values. ``freeze`` makes the whole matrix untrainable.
    """
    if len(words) > embedding.num_embeddings:
        raise ValueError(f"{len(words)} words for an embedding of {embedding.num_embeddings} rows")
    path = Path(path)
    dim = _peek_dim(path)  # fail before reading what may be gigabytes
    if dim != embedding.embedding_dim:
        raise ConfigError(
            f"{path}: the vectors have {dim} dimensions, the model's embedding has "
            f"{embedding.embedding_dim}; make the embedding size {dim} or use other vectors"
        )
    vectors, _ = read_vectors(path, set(words) | {w.lower() for w in words})
    rows: list[int] = []
    found: list[torch.Tensor] = []
    for i, word in enumerate(words):
        vec = vectors.get(word)
        if vec is None:
            vec = vectors.get(word.lower())
        if vec is not None:
            rows.append(i)
            found.append(vec)
    weight = embedding.weight  # (V, E)
    if rows:
        with torch.no_grad():
            index = torch.tensor(rows, device=weight.device)
            weight[index] = torch.stack(found).to(device=weight.device, dtype=weight.dtype)  # (found, E)
    weight.requires_grad_(not freeze)
    return len(rows), len(words)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without the line end or trailing spaces), decoded strictly."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise CorpusError(
                        f"{path}: line {number} is not valid UTF-8 (byte {e.start} of the line); "
                        f"word vector text files must be UTF-8"
                    ) from None
                if number == 1:
                    text = text.removeprefix("\ufeff")
                # word2vec's own writer ends every line with a space
                yield number, text.rstrip("\r\n").rstrip(" ")
    except (OSError, EOFError, zlib.error) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise CorpusError(f"{path}: cannot read word vectors: {reason}") from None


def _first_line(path: Path, number: int, text: str) -> tuple[int | None, int]:
    """(declared count, D) from a word2vec header, or (None, D) from a first vector line."""
    fields = text.split(" ")
    if len(fields) == 2 and all(f.isascii() and f.isdigit() for f in fields):
        if int(fields[1]) < 1:
            raise CorpusError(f"{path}: line {number}: the header declares {fields[1]} dimensions")
        return int(fields[0]), int(fields[1])
    if len(fields) < 2:
        raise CorpusError(f"{path}: line {number} has a single field, expected a word and its vector")
    return None, len(fields) - 1


def _peek_dim(path: Path) -> int:
    for number, text in _lines(path):
        if text:
            return _first_line(path, number, text)[1]
    raise CorpusError(f"{path}: holds no word vectors")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split(path: Path, number: int, text: str, dim: int) -> tuple[str, list[str]]:
    """The word and its D number fields. A word may contain spaces (". . ." in GloVe 840B);
    one whose last piece is a number is taken for a line with too many numbers."""
    parts = text.rsplit(" ", dim)
    if len(parts) != dim + 1 or (" " in parts[0] and _is_number(parts[0].rsplit(" ", 1)[1])):
        fields = len(text.split(" "))
        raise CorpusError(f"{path}: line {number} has {fields} fields, expected a word and {dim} numbers")
    return parts[0], parts[1:]


def _parse(path: Path, number: int, values: list[str]) -> torch.Tensor:
    try:
        vec = torch.tensor([float(v) for v in values], dtype=torch.float32)  # (D,)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise CorpusError(f"{path}: line {number}: {bad!r} is not a number") from None
    if not bool(torch.isfinite(vec).all()):
        raise CorpusError(f"{path}: line {number} holds a value that is not a finite float32 number")
    return vec
