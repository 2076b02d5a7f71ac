"""Labelled examples for sequence classification (a sentence -> a label).

This module owns everything between a labelled data file and the (ids, lengths, labels)
batches a classifier trains on:

* reading the three layouts users already have: a folder with one text file per label
  (the surnames-by-language layout), fastText lines (``__label__pos a good film``), and
  TSV/CSV files with a header row (GLUE SST-2, most Kaggle sets);
* checking the label sets of the splits, a stratified train/validation split, and
  "balanced" class weights;
* resumable, length-bucketed batches of ids (``batching.EpochBatches``).

Tokenizing is not done here: batching works on token ids the caller produced.
Data problems raise CorpusError naming the file and line; bad option values raise
ConfigError. Neither message names command-line flags: front ends own those.
"""

from __future__ import annotations

import csv
import io
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError, CorpusError
from .batching import EpochBatches
from .io import decode_utf8, open_binary, plain_name

LABEL_PREFIX = "__label__"

# Header names tried, in order, when the caller does not name the columns. Compared
# case-insensitively; the two lists share no name, so a column is never both.
TEXT_COLUMNS = ("sentence", "text", "review", "content", "document", "question", "name",
                "surname", "word", "input", "x")
LABEL_COLUMNS = ("label", "labels", "class", "category", "sentiment", "target", "y",
                 "language", "tag")

@dataclass(frozen=True, order=True)
class Example:
    """One labelled example. ``order=True`` so lists of examples sort (tests, dedup)."""

    text: str
    label: str


# ---------------------------------------------------------------------------- reading


def read_labelled(path: str | os.PathLike, text_column: str | None = None,
                  label_column: str | None = None) -> list[Example]:
    """Read labelled examples from a folder, a fastText file, or a TSV/CSV file.

    * A folder: one UTF-8 file per label, the label being the file name without its
      extension (``Arabic.txt`` -> ``Arabic``), one example per non-empty line. Hidden
      files and subfolders are ignored; files are read in name order.
    * fastText lines (detected when the first non-empty line starts with ``__label__``):
      ``__label__pos a good film``. One label per line: multi-label lines are rejected.
    * TSV or CSV with a header row: ``.tsv`` is tab-separated, ``.csv`` comma-separated,
      anything else is tab-separated if its header line holds a tab. The columns are
      ``text_column`` and ``label_column`` or, when not given, found by common names
      (sentence, text, review, ... / label, class, sentiment, ...).

    Texts and labels are stripped of surrounding whitespace.
    """
    p = Path(path)
    columns = text_column is not None or label_column is not None
    if p.is_dir():
        _no_columns(p, "a folder of label files", columns)
        return _read_folder(p)
    text = _read_utf8(p)
    first = next((line for line in text.split("\n") if line.strip()), None)
    if first is None:
        raise CorpusError(f"{p}: the file is empty")
    if first.lstrip().startswith(LABEL_PREFIX):
        _no_columns(p, f"in fastText format (lines start with '{LABEL_PREFIX}')", columns)
        return _read_fasttext(text, str(p))
    return _read_table(text, str(p), _delimiter(p, first), text_column, label_column)


def _no_columns(path: Path, layout: str, columns: bool) -> None:
    # Silently ignoring a column name would hide a mistake about which file was given.
    if columns:
        raise ConfigError(f"{path}: is {layout}, which has no columns to choose; column "
                          f"names apply only to TSV and CSV files")


def _read_utf8(path: Path) -> str:
    """The text of a UTF-8 file; binary files, bad UTF-8 and I/O failures are CorpusErrors
    (the same messages as every other text charrnn reads: text/io.py)."""
    with open_binary(path) as f:
        try:
            raw = f.read()
        except OSError as e:
            raise CorpusError(f"{path}: cannot read ({e.strerror or e})") from None
    text = decode_utf8(raw, str(path))
    # Spreadsheet programs write a byte-order mark; left in, it would glue itself to the
    # first header name ("\ufeffsentence") and hide the column.
    return text[1:] if text.startswith("\ufeff") else text


def _lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, stripped line) for every non-empty line. Splits on "\\n" only:
    str.splitlines would also split on U+2028 and friends, which may occur inside text."""
    numbered = enumerate((line.strip() for line in text.split("\n")), start=1)
    return [(number, line) for number, line in numbered if line]


def _read_folder(folder: Path) -> list[Example]:
    # Sorted by name so the result (and everything seeded downstream) is deterministic.
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: p.name)
    if not files:
        raise CorpusError(f"{folder}: no label files found (expected one text file per label, "
                          f"e.g. Arabic.txt with one example per line)")
    seen: dict[str, Path] = {}
    examples: list[Example] = []
    for file in files:
        label = plain_name(file).stem  # Arabic.txt and Arabic.txt.gz: Arabic
        if label in seen:
            raise CorpusError(f"{file}: label {label!r} also comes from {seen[label].name}; "
                              f"keep one file per label")
        seen[label] = file
        lines = _lines(_read_utf8(file))
        if not lines:
            raise CorpusError(f"{file}: no examples (the file is empty)")
        examples.extend(Example(line, label) for _, line in lines)
    return examples


def _read_fasttext(text: str, name: str) -> list[Example]:
    examples = []
    for number, line in _lines(text):
        if not line.startswith(LABEL_PREFIX):
            raise CorpusError(f"{name}: line {number}: no '{LABEL_PREFIX}' prefix, but the file "
                              f"is in fastText format (its first line starts with one)")
        parts = line.split(None, 1)
        head, rest = parts[0], (parts[1] if len(parts) > 1 else "")
        label = head[len(LABEL_PREFIX):]
        if not label:
            raise CorpusError(f"{name}: line {number}: empty label after '{LABEL_PREFIX}'")
        if rest.startswith(LABEL_PREFIX):
            raise CorpusError(f"{name}: line {number}: several labels; each example needs exactly "
                              f"one (multi-label classification is not supported)")
        if not rest.strip():
            raise CorpusError(f"{name}: line {number}: label {label!r} but no text")
        examples.append(Example(rest.strip(), label))
    return examples


def _delimiter(path: Path, header_line: str) -> str:
    sniffed = "\t" if "\t" in header_line else ","
    return {".tsv": "\t", ".csv": ","}.get(plain_name(path).suffix.lower(), sniffed)


def _read_table(text: str, name: str, delimiter: str, text_column: str | None,
                label_column: str | None) -> list[Example]:
    # TSV is read without quoting: GLUE SST-2 sentences hold bare '"' characters that a
    # quoting reader would take as the start of a quoted field and run across lines.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    header: list[str] | None = None
    ti = li = -1
    examples = []
    while True:
        # The row's first line: for a CSV field quoted across lines, reader.line_num after
        # reading is its last line, and an unclosed quote would point far past the culprit.
        number = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise CorpusError(f"{name}: line {number}: {e}") from None
        if not any(field.strip() for field in row):
            continue  # blank line
        if header is None:
            header = [field.strip() for field in row]
            ti, li = _columns(header, name, text_column, label_column)
            continue
        if len(row) != len(header):
            # A field spanning lines is most often a quote opened and never closed.
            hint = "; is a quote on this line never closed?" if any("\n" in f for f in row) else ""
            raise CorpusError(f"{name}: line {number}: {len(row)} field(s), but the header has "
                              f"{len(header)} ({', '.join(header)}){hint}")
        sentence, label = row[ti].strip(), row[li].strip()
        if not sentence:
            raise CorpusError(f"{name}: line {number}: empty text (column {header[ti]!r})")
        if not label:
            raise CorpusError(f"{name}: line {number}: empty label (column {header[li]!r})")
        examples.append(Example(sentence, label))
    if not examples:
        raise CorpusError(f"{name}: a header row but no examples")
    return examples


def _columns(header: list[str], name: str, text_column: str | None,
             label_column: str | None) -> tuple[int, int]:
    """Indexes of the text and label columns: the named ones, else found by common names."""
    ti = _named(header, text_column, name) if text_column is not None else -1
    li = _named(header, label_column, name) if label_column is not None else -1
    if ti >= 0 and ti == li:
        raise ConfigError(f"{name}: the text and the label cannot both be column {header[ti]!r}")
    if ti < 0:
        ti = _guess(header, TEXT_COLUMNS, exclude=li)
    if li < 0:
        li = _guess(header, LABEL_COLUMNS, exclude=ti)
    if ti < 0 or li < 0:
        missing = " and ".join(w for w, i in (("text", ti), ("label", li)) if i < 0)
        raise CorpusError(f"{name}: cannot tell which column holds the {missing} (columns: "
                          f"{', '.join(header)}); name the text and label columns, and make "
                          f"sure the first line is a header row")
    return ti, li


def _named(header: list[str], wanted: str, name: str) -> int:
    if wanted in header:
        return header.index(wanted)
    folded = [i for i, h in enumerate(header) if h.casefold() == wanted.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise ConfigError(f"{name}: no column {wanted!r} (columns: {', '.join(header)})")


def _guess(header: list[str], candidates: tuple[str, ...], exclude: int) -> int:
    folded = [h.casefold() for h in header]
    for candidate in candidates:
        for i, h in enumerate(folded):
            if h == candidate and i != exclude:
                return i
    return -1


def strip_label(line: str) -> str:
    """Prediction input may be in the training format: a fastText line
    ``__label__pos good film`` gives ``good film`` (every leading label is dropped);
    any other line is returned unchanged."""
    rest = line.lstrip()
    if not rest.startswith(LABEL_PREFIX):
        return line
    while rest.startswith(LABEL_PREFIX):
        # split(None, 1) also drops the whitespace after the label; inner spacing is kept.
        parts = rest.split(None, 1)
        rest = parts[1] if len(parts) > 1 else ""
    return rest.strip()


# ------------------------------------------------------------- labels and the split


def check_labels(train: list[Example], val: list[Example], train_name: str, val_name: str) -> list[str]:
    """The sorted labels of the training data, after checking the splits can be used."""
    labels = sorted({e.label for e in train})
    if not labels:
        raise CorpusError(f"{train_name}: no training examples")
    if len(labels) < 2:
        raise CorpusError(f"{train_name}: only one label ({labels[0]!r}) in the training data; "
                          f"a classifier needs at least two")
    # A validation label the model cannot output would count as a silent, unfixable error.
    unseen = sorted({e.label for e in val} - set(labels))
    if unseen:
        quoted = ", ".join(repr(label) for label in unseen)
        verb = "does" if len(unseen) == 1 else "do"
        raise CorpusError(f"{val_name}: label{'s' if len(unseen) > 1 else ''} {quoted} {verb} "
                          f"not appear in the training data")
    return labels


def stratified_split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Split off about ``fraction`` of every label's examples for validation.

    Each label gives round(fraction * count) examples, at least one when it has two or
    more and never all of them (a label with one example stays in training). The choice
    is a seeded shuffle, so the split is the same on every run; train and val keep the
    original order of ``examples``.
    """
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"the validation fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    by_label: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        by_label.setdefault(example.label, []).append(i)
    chosen: set[int] = set()
    for label, indices in by_label.items():
        # One generator per label, seeded with the label too: adding or removing examples
        # of one label leaves the split of every other label unchanged.
        rng = random.Random(f"{seed}:{label}")
        shuffled = indices[:]
        rng.shuffle(shuffled)
        count = len(indices)
        n_val = min(max(round(fraction * count), 1), count - 1)
        chosen.update(shuffled[:n_val])
    train = [e for i, e in enumerate(examples) if i not in chosen]
    val = [e for i, e in enumerate(examples) if i in chosen]
    return train, val


def label_counts(examples: list[Example]) -> dict[str, int]:
    """Examples per label, sorted by label."""
    counts = Counter(e.label for e in examples)
    return {label: counts[label] for label in sorted(counts)}


def class_weights(counts: dict[str, int], labels: list[str]) -> torch.Tensor:
    """The "balanced" weights in the order of ``labels``: n / (k * count_c), as scikit-learn
    defines them, so every class contributes the same total weight to the loss."""
    missing = [label for label in labels if counts.get(label, 0) <= 0]
    if missing:
        raise ValueError(f"no examples of label(s) {missing}: cannot weight them")
    n = sum(counts[label] for label in labels)
    k = len(labels)
    return torch.tensor([n / (k * counts[label]) for label in labels], dtype=torch.float32)


# ------------------------------------------------------------------------- batching


def padded(seqs: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad sequences into ids (N, T) with ``pad_id``, T the longest; lengths (N,)."""
    if not seqs:
        raise ValueError("no sequences to pad")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # (N,)
    if int(lengths.min()) == 0:
        # A zero length breaks packed recurrent layers; callers filter empty inputs first.
        raise ValueError("cannot pad an empty sequence (length 0)")
    ids = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)  # (N, T)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return ids, lengths


class LabelledBatches(EpochBatches):
    """Shuffled, optionally length-bucketed batches of labelled token sequences (resumable:
    see ``batching.EpochBatches``)."""

    name = "labelled-batches"

    def __init__(self, ids: list[list[int]], labels: list[int], batch_size: int, seed: int,
                 bucket: bool = True, pad_id: int = 0):
        if len(ids) != len(labels):
            raise ValueError(f"{len(ids)} sequences but {len(labels)} labels")
        empty = next((i for i, seq in enumerate(ids) if len(seq) == 0), None)
        if empty is not None:
            raise ValueError(f"example {empty} has no tokens; filter empty examples before batching")
        super().__init__([len(seq) for seq in ids], batch_size, seed, bucket)
        self.ids, self.labels, self.pad_id = ids, labels, pad_id

    def batch(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch ``index`` of ``epoch``: ids (N, T) padded with pad_id, lengths (N,), labels (N,)."""
        members = super().batch(epoch, index)
        ids, lengths = padded([self.ids[i] for i in members], self.pad_id)  # (N, T), (N,)
        labels = torch.tensor([self.labels[i] for i in members], dtype=torch.long)  # (N,)
        return ids, lengths, labels
