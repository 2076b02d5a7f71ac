"""Tagged sentences for sequence tagging (a token -> its tag: part of speech, NER).

This module owns the files a tagger reads and writes:

* ``read_tagged``: training and evaluation data, as (tokens, tags) sentences;
* ``read_blocks``: prediction input in CoNLL form, read sentence by sentence as it comes
  (standard input too), each kept as the text it was so ``Block.write`` can give it back
  with one column set to the predicted tags and every other byte unchanged;
* ``is_conll``: whether prediction input is CoNLL or plain text (one sentence a line).

Two formats, told apart by the first token line (the first line that is not blank, a
comment or ``-DOCSTART-``):

* CoNLL-U (https://universaldependencies.org/format.html): exactly 10 tab-separated
  fields whose ID is a word number ``3``, a multiword range ``1-2`` or an empty node
  ``8.1``. Only word lines are tokens: a multiword line carries no tags (its words do)
  and empty nodes are not part of the token sequence; both are kept as they are. The
  token is FORM; the tag column is named (case-insensitive) or numbered, default UPOS.
* Columns (CoNLL-2003 style): the token first, the tag in the last column (or the
  numbered one, ``"2"`` for the second). If the first token line holds a tab the fields
  are tab-separated; otherwise runs of spaces and tabs separate them (CoNLL-2003 itself:
  ``EU NNP B-NP B-ORG``). ``-DOCSTART-`` lines are skipped.

Decisions, shared by both readers:

* Lines end in "\\n" or "\\r\\n"; the last line may have no ending. A byte-order mark
  at the start of the input is ignored for reading and kept for writing.
* A line holding only spaces and tabs is blank. A blank line ends a sentence; more blank
  lines in a row are allowed. A sentence at the end of the input needs no blank line.
  In CoNLL-U a comment line right after a word line starts a new sentence as well (the
  blank line was forgotten); in the columns format it is a token line (``#hashtag O``).
* Lines starting with '#' before a sentence's first token line are comments, in both
  formats (so a columns file cannot start a sentence with a token that starts with '#').
  Comments followed by no token line are "a sentence with no tokens": an error.
* Spaces and tabs around a field and at the end of a line are ignored when reading (a
  trailing tab does not make an empty column) and kept when writing.
* Every token line must have as many columns as the first one (CoNLL-U: 10).
* ``read_tagged`` wants a tag on every token; a tag '_' is an ordinary tag, except that a
  tag column that is '_' on every token is unannotated: an error. ``read_blocks`` lets
  tags be absent: '_', an empty field, or token-only (one column) lines.
* Errors are one CorpusError (data) or ConfigError (tag column) line naming the file and
  the line; missing, binary, compressed (under a plain name) or non-UTF-8 input gives the
  messages of text/io.py, which also reads .gz, .bz2, .xz and .zst files.

A Block is one sentence of the input with everything around it, so that joining the
blocks gives the input back: the lines before its first token line that belong to no
earlier block (comments, ``-DOCSTART-``, extra blank lines), its token lines (and any
multiword and empty-node lines) and the blank line that ends it. A block is yielded as
soon as that blank line is read, so an interactive user sees each sentence tagged when
it ends. Lines after the last sentence (extra blank lines, a last ``-DOCSTART-``) come
as a last block with no tokens: ``write([])`` gives them back; callers skip the model
for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import ConfigError, CorpusError
from .io import decode_utf8, open_binary, plain_name

CONLLU_COLUMNS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
TAG_COLUMNS = CONLLU_COLUMNS[2:]  # ID and FORM are the word itself, never its tag
DEFAULT_CONLLU_COLUMN = "UPOS"
DOCSTART = "-DOCSTART-"
CONLL_SUFFIXES = (".conllu", ".conll")
BOM = "\ufeff"

SPACE = " \t\r"  # what surrounds fields; a stray "\r" before "\n" counts as trailing space
_CONLLU_ID = re.compile(r"\d+(?:-\d+|\.\d+)?")  # 3, 1-2 (multiword token), 8.1 (empty node)
_FIELD = re.compile(r"[^ \t\r]+")  # one field of a space-separated line


@dataclass
class Sentence:
    """One tagged sentence: tokens[i] has tags[i]."""

    tokens: list[str]
    tags: list[str]
    line: int  # 1-based line number of its first token line (for messages)


@dataclass
class Block:
    """One sentence of an input file as it was, for predicting and writing back."""

    lines: list[str]  # raw lines, each with its own ending; "".join(lines) is the input
    rows: list[int]  # indices into lines of the token lines (not comments, multiword ranges or empty nodes)
    tokens: list[str]  # the token of each row
    column: int = 1  # 0-based index of the tag column; past a line's last column: append one
    separator: str = "\t"  # "\t", or " " where runs of spaces separate the columns (also what is appended)

    def write(self, tags: list[str]) -> str:
        """The block with the tag column of each token row set to tags[i] and every other
        byte unchanged. A row without the tag column (a token-only line) gets the
        separator and the tag appended, before any trailing spaces."""
        if len(tags) != len(self.rows):
            raise ValueError(f"{len(tags)} tags for a block of {len(self.rows)} tokens")
        bad = "\t\r\n" + (" " if self.separator == " " else "")  # would split or end the line
        out = list(self.lines)
        for row, tag in zip(self.rows, tags):
            if not tag or any(c in bad for c in tag):
                raise ValueError(f"cannot write the tag {tag!r}: it is empty or holds a separator")
            out[row] = _set_column(self.lines[row], self.column, tag, self.separator)
        return "".join(out)


def _set_column(line: str, column: int, tag: str, separator: str) -> str:
    ending = "\r\n" if line.endswith("\r\n") else "\n" if line.endswith("\n") else ""
    body = line[: len(line) - len(ending)]
    core = body.rstrip(SPACE)
    trail = body[len(core):]
    if separator == "\t":
        fields = core.split("\t")
        if column >= len(fields):
            return core + "\t" + tag + trail + ending
        old = fields[column]
        lead = old[: len(old) - len(old.lstrip(SPACE))]
        rest = old[len(lead):]
        fields[column] = lead + tag + rest[len(rest.rstrip(SPACE)):]  # spaces around the field stay
        return "\t".join(fields) + trail + ending
    spans = [m.span() for m in _FIELD.finditer(core)]
    if column >= len(spans):
        return core + " " + tag + trail + ending
    start, end = spans[column]
    return core[:start] + tag + core[end:] + trail + ending


# ---------------------------------------------------------------------------- reading


def read_tagged(path: str | os.PathLike, tag_column: str | None = None) -> list[Sentence]:
    """The tagged sentences of a CoNLL-U or columns file, in file order.

    tag_column: for CoNLL-U a column name (case-insensitive), any but ID and FORM, or its
    1-based number; default UPOS. For columns files a 1-based number as a string ("2"
    takes the second column); default the last column."""
    p = Path(path)
    reader = _Reader(str(p), tag_column, strict=True)
    with open_binary(p) as f:
        sentences = [Sentence(block.tokens, tags, line)
                     for block, tags, line in reader.blocks(_decoded_lines(f, str(p), False))
                     if block.rows]
    if all(tag == "_" for s in sentences for tag in s.tags):
        column = reader.column_name()
        raise CorpusError(f"{p}: line {sentences[0].line}: the {column} column is '_' on every token, so "
                          f"the file has no {column} tags; choose another tag column")
    return sentences


def read_blocks(stream: BinaryIO, name: str, tag_column: str | None = None,
                replace_errors: bool = False) -> Iterator[Block]:
    """Prediction input in CoNLL form, block by block as lines arrive (the stream is never
    read ahead of the blank line that ends a sentence, so standard input works).

    ``stream`` may be any iterable of byte lines, e.g. ``itertools.chain([peeked], f)``
    for a caller that looked at the first line. Format detection, tag_column and errors
    are those of read_tagged, except that tags may be absent ('_', empty, or token-only
    lines), and a columns file's tag column may also be one past its last column, to
    add a column (a token-only file's default). Errors are raised when the line that
    causes them is read, after the blocks before it were yielded."""
    reader = _Reader(name, tag_column, strict=False)
    for block, _, _ in reader.blocks(_decoded_lines(stream, name, replace_errors)):
        yield block


def is_conll(first_line: str, name: str) -> bool:
    """Whether prediction input is CoNLL (a '.conllu' or '.conll' name, or a first
    non-blank line holding a tab or starting with '#') or plain text (one sentence a
    line, tokens separated by spaces)."""
    if plain_name(str(name)).suffix.lower() in CONLL_SUFFIXES:  # train.conllu.gz too
        return True
    line = first_line.removeprefix(BOM)
    return "\t" in line or line.lstrip().startswith("#")


def _decoded_lines(stream: Iterable[bytes], name: str, replace_errors: bool) -> Iterator[tuple[int, str]]:
    """(1-based line number, line with its ending) for each line, decoded as it comes."""
    offset = 0
    try:
        for number, raw in enumerate(stream, start=1):
            # Offsets count from the start of the input, so an error points into the file.
            yield number, decode_utf8(raw, name, replace_errors, offset)
            offset += len(raw)
    except OSError as e:
        raise CorpusError(f"{name}: cannot read ({e.strerror or e})") from None


class _Reader:
    """Numbered lines -> blocks. The first token line fixes the format, the column count
    and the tag column; every later line is checked against them."""

    def __init__(self, name: str, tag_column: str | None, strict: bool):
        self.name, self.tag_column, self.strict = name, tag_column, strict
        self.conllu: bool | None = None  # None until the first token line
        self.split = "\t"  # how fields are split: "\t", or " " for runs of spaces and tabs
        self.ncols = 0
        self.token = 0  # index of the token column (FORM in CoNLL-U)
        self.column = 0  # index of the tag column; == ncols means "append one"
        self.first = 0  # line number of the first token line

    def blocks(self, numbered: Iterable[tuple[int, str]]) -> Iterator[tuple[Block, list[str], int]]:
        """(block, tags as read, line of its first token) per sentence; a tag is "" where absent."""
        lines: list[str] = []
        rows: list[int] = []
        tokens: list[str] = []
        tags: list[str] = []
        started = 0  # line of the block's first token-like line (words, multiword, empty nodes)
        comment = 0  # line of the first comment of a sentence not started yet
        first_row = 0  # line of the block's first word line
        last = 0  # number of lines read
        sentences = 0

        def done() -> tuple[Block, list[str], int]:
            nonlocal lines, rows, tokens, tags, started, comment, sentences
            if not tokens:
                self._no_tokens(started or comment)
            out = (self._block(lines, rows, tokens), tags, first_row)
            lines, rows, tokens, tags, started, comment = [], [], [], [], 0, 0
            sentences += 1
            return out

        for number, text in numbered:
            last = number
            content = text.rstrip("\r\n")
            if number == 1:
                content = content.removeprefix(BOM)
            stripped = content.strip(SPACE)
            if not stripped:  # blank: ends a sentence, or sits between two
                lines.append(text)
                if started:
                    yield done()
                elif comment:
                    self._no_tokens(comment)
                continue
            if stripped.startswith("#") and (not started or self.conllu):
                if started:  # CoNLL-U: a comment after word lines starts the next sentence
                    yield done()
                comment = comment or number
                lines.append(text)
                continue
            if self.conllu is not True and stripped.split(None, 1)[0] == DOCSTART:
                if started:
                    yield done()
                lines.append(text)
                continue
            word = self._token_line(number, content)
            started = started or number
            if word is not None:
                first_row = first_row if tokens else number
                rows.append(len(lines))
                tokens.append(word[0])
                tags.append(word[1])
            lines.append(text)
        if started or comment:
            yield done()
        elif not sentences:
            what = "the file is empty" if not last else f"only blank lines or {DOCSTART}"
            raise CorpusError(f"{self.name}: no sentences ({what})")
        elif lines:  # what follows the last sentence, kept so that writing gives it back
            yield self._block(lines, [], []), [], 0

    def _block(self, lines: list[str], rows: list[int], tokens: list[str]) -> Block:
        # A token-only file shows no separator: a tab is appended, the CoNLL default.
        separator = " " if self.split == " " and self.ncols > 1 else "\t"
        return Block(lines, rows, tokens, self.column, separator)

    def _no_tokens(self, line: int) -> None:
        what = "comment lines only"
        if self.conllu:  # multiword and empty-node lines are no tokens either
            what = "comment, multiword or empty-node lines but no word line"
        raise CorpusError(f"{self.name}: line {line}: a sentence with no tokens ({what})")

    def _token_line(self, number: int, content: str) -> tuple[str, str] | None:
        """(token, tag) of a token line, "" for an absent tag; None for a CoNLL-U multiword
        or empty-node line."""
        body = content.rstrip(SPACE)
        if self.conllu is None:
            self._detect(number, body)
        where = f"{self.name}: line {number}"
        if self.conllu:
            fields = body.split("\t")
            if len(fields) != 10:
                raise CorpusError(f"{where}: {len(fields)} tab-separated columns, expected 10 "
                                  f"(CoNLL-U, like line {self.first})")
            word_id = fields[0].strip(SPACE)
            if not _CONLLU_ID.fullmatch(word_id):
                raise CorpusError(f"{where}: ID {word_id!r} is not a word number (3), a multiword "
                                  f"range (1-2) or an empty node (8.1)")
            if not word_id.isdigit():
                return None
        else:
            fields = body.split("\t") if self.split == "\t" else _FIELD.findall(body)
            if len(fields) != self.ncols:
                how = "" if self.split == "\t" else ", split at runs of spaces as it has no tab"
                raise CorpusError(f"{where}: {len(fields)} column(s), expected {self.ncols} like "
                                  f"the first token line (line {self.first}{how})")
        token = fields[self.token].strip(SPACE)
        tag = fields[self.column].strip(SPACE) if self.column < len(fields) else ""
        if not token:
            raise CorpusError(f"{where}: empty token ({self._name(self.token)})")
        if not tag and self.strict:
            raise CorpusError(f"{where}: empty tag ({self.column_name()})")
        return token, tag

    def _detect(self, number: int, body: str) -> None:
        self.first = number
        fields = body.split("\t")
        if len(fields) == 10 and _CONLLU_ID.fullmatch(fields[0].strip(SPACE)):
            self.conllu, self.ncols, self.token = True, 10, 1
            self.column = self._conllu_column()
            return
        self.conllu = False
        self.split = "\t" if "\t" in body else " "
        self.ncols = len(fields) if self.split == "\t" else len(_FIELD.findall(body))
        if self.strict and self.ncols == 1:
            raise CorpusError(f"{self.name}: line {number}: one column; a tagged file has "
                              f"token<TAB>tag lines or CoNLL-U")
        self.column = self._columns_column()

    def _conllu_column(self) -> int:
        given = DEFAULT_CONLLU_COLUMN if self.tag_column is None else str(self.tag_column).strip()
        choices = ", ".join(TAG_COLUMNS)
        where = f"{self.name}: is CoNLL-U (line {self.first})"
        if given.isdigit() and 3 <= int(given) <= 10:
            return int(given) - 1
        if given.upper() in TAG_COLUMNS:
            return CONLLU_COLUMNS.index(given.upper())
        if given.upper() in ("ID", "FORM", "1", "2"):
            raise ConfigError(f"{where}: {given!r} is the word itself, not a tag column; "
                              f"choose one of {choices}")
        raise ConfigError(f"{where}, which has no column {given!r}; choose one of {choices}")

    def _columns_column(self) -> int:
        # read_blocks may add a column: one past the last, and the default for token-only files.
        top = self.ncols if self.strict else self.ncols + 1
        if self.tag_column is None:
            return max(self.ncols - 1, 1)
        given = str(self.tag_column).strip()
        where = f"{self.name}: line {self.first}"
        valid = f"2 to {top}" if top > 2 else "2"
        more = "" if self.strict else f", {top} adding a column"
        if not given.isdigit():
            raise ConfigError(f"{where}: a columns file (CoNLL-2003 style) has no column names; give "
                              f"the tag column by number, not {given!r}: {valid}{more}")
        n = int(given)
        if n == 1:
            raise ConfigError(f"{where}: column 1 holds the tokens, not tags; choose {valid}{more}")
        if not 2 <= n <= top:
            raise ConfigError(f"{where}: tag column {n} is out of range: the file has {self.ncols} "
                              f"column(s); choose {valid}{more}")
        return n - 1

    def _name(self, index: int) -> str:
        return CONLLU_COLUMNS[index] if self.conllu else f"column {index + 1}"

    def column_name(self) -> str:
        """The tag column as messages name it: UPOS, or "column 4"."""
        return self._name(self.column)
