"""Source/target pairs for sequence-to-sequence models (e.g. a word -> its phones).

This module owns everything between a pair file and the padded batches an encoder-decoder
trains on:

* reading pair files: UTF-8, one ``source<TAB>target`` per line (the SIGMORPHON
  grapheme-to-phoneme layout, ``абажура\\ta b ə ʒ u ɾ ə``). "\\r\\n" endings and a
  byte-order mark are accepted, blank lines skipped, each side stripped of surrounding
  whitespace; anything else wrong is one CorpusError naming ``FILE:LINE``;
* reading prediction input as it comes (a file or standard input; a pair file works too);
* grouping references: the same source on several lines means several correct targets;
* resumable, length-bucketed batches of id pairs (``batching.EpochBatches``).

Tokenizing is not done here: batching works on token ids the caller produced, with any
start/end tokens already in them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from ..errors import CorpusError
from .io import STDIN, decode_utf8, open_binary
from .batching import EpochBatches
from .labelled import padded

BOM = "\ufeff"


@dataclass(frozen=True)
class Pair:
    """One example: a source text, its target text, and its 1-based line in the file."""

    source: str
    target: str
    line: int


# ---------------------------------------------------------------------------- reading


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """The pairs of a UTF-8 ``source<TAB>target`` file, in file order (duplicates kept)."""
    p = Path(path)
    with open_binary(p) as f:
        try:
            raw = f.read()
        except OSError as e:
            raise CorpusError(f"{p}: cannot read ({e.strerror or e})") from None
    text = decode_utf8(raw, str(p))
    if text.startswith(BOM):
        text = text[1:]
    pairs = []
    # Split on "\n" only: str.splitlines would also split on U+2028 and friends.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        where = f"{p}:{number}"
        columns = line.split("\t")
        if len(columns) == 1:
            raise CorpusError(f"{where}: no tab between source and target")
        if len(columns) != 2:
            raise CorpusError(f"{where}: {len(columns)} tab-separated columns, expected 2 (source<TAB>target)")
        source, target = columns[0].strip(), columns[1].strip()
        if not source:
            raise CorpusError(f"{where}: empty source")
        if not target:
            raise CorpusError(f"{where}: empty target")
        pairs.append(Pair(source, target, number))
    if not pairs:
        why = "the file is empty" if not text else "only blank lines"
        raise CorpusError(f"{p}: no source<TAB>target pairs ({why})")
    return pairs


def read_sources(path: str | os.PathLike, replace_errors: bool = False,
                 stdin: BinaryIO | None = None) -> Iterator[str]:
    """The sources to predict from: one per line of a file, or of standard input when
    ``path`` is "-" (``stdin``, default ``sys.stdin.buffer``), read lazily as lines come.

    A line holding a tab gives its part before the first tab, so a pair file can be given
    as it is. Every line gives one source, stripped of surrounding whitespace: a blank line
    gives "" (the caller decides what an empty source yields). The file is opened at once,
    so a missing file is an error here and not at the first line.
    """
    if str(path) == STDIN:
        if stdin is None and sys.stdin is None:  # started with stdin closed (e.g. `<&-`)
            raise CorpusError("standard input is closed: nothing to read from '-'")
        stream = stdin if stdin is not None else sys.stdin.buffer
        return _sources(stream, "<stdin>", replace_errors, close=False)
    return _sources(open_binary(path), str(path), replace_errors, close=True)


def _sources(stream: BinaryIO, name: str, replace_errors: bool, close: bool) -> Iterator[str]:
    offset = 0
    try:
        for raw in stream:  # one line at a time, as soon as it is complete
            text = decode_utf8(raw, name, replace_errors, offset)
            if offset == 0 and text.startswith(BOM):
                text = text[1:]
            offset += len(raw)
            yield text.rstrip("\r\n").split("\t", 1)[0].strip()
    except OSError as e:
        raise CorpusError(f"{name}: cannot read ({e.strerror or e})") from None
    finally:
        if close:
            stream.close()


def group_references(pairs: list[Pair]) -> tuple[list[str], list[list[str]]]:
    """Distinct sources in first-seen order, and for each every target given for it (in
    file order, duplicates kept): all of them count as correct answers."""
    by_source: dict[str, list[str]] = {}
    for pair in pairs:
        by_source.setdefault(pair.source, []).append(pair.target)
    return list(by_source), list(by_source.values())


# ------------------------------------------------------------------------- batching


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class PairBatches(EpochBatches):
    """Shuffled, optionally length-bucketed batches of (source ids, target ids) pairs
    (resumable: see ``batching.EpochBatches``); the sort key is the source length, then
    the target's."""

    name = "pair-batches"

    def __init__(self, src_ids: list[list[int]], tgt_ids: list[list[int]], batch_size: int, seed: int,
                 src_pad: int, tgt_pad: int, bucket: bool = True):
        if len(src_ids) != len(tgt_ids):
            raise ValueError(f"{len(src_ids)} sources but {len(tgt_ids)} targets")
        if not src_ids:
            raise ValueError("no pairs to batch")
        for side, seqs in (("source", src_ids), ("target", tgt_ids)):
            empty = next((i for i, seq in enumerate(seqs) if len(seq) == 0), None)
            if empty is not None:
                raise ValueError(f"pair {empty} has no {side} tokens; filter empty pairs before batching")
        # Sort key for bucketing: source length first (the encoder's padding), then target.
        super().__init__([(len(s), len(t)) for s, t in zip(src_ids, tgt_ids)], batch_size, seed, bucket)
        self.src_ids, self.tgt_ids = src_ids, tgt_ids
        self.src_pad, self.tgt_pad = src_pad, tgt_pad

    def batch(self, epoch: int, index: int) -> Batch:
        """Batch ``index`` of ``epoch``: src (N, S) padded with src_pad, src_len (N,),
        tgt (N, T) padded with tgt_pad, tgt_len (N,); all int64."""
        members = super().batch(epoch, index)
        src, src_len = padded([self.src_ids[i] for i in members], self.src_pad)  # (N, S), (N,)
        tgt, tgt_len = padded([self.tgt_ids[i] for i in members], self.tgt_pad)  # (N, T), (N,)
        return src, src_len, tgt, tgt_len
