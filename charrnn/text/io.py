"""Reading text: files, standard input ("-"), strict UTF-8 with an offset in the error.

The corpus reader for training, evaluation and prediction input; every other module
reads user text through here so the same mistakes get the same messages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO

from ..errors import CorpusError, InvalidUtf8Error

STDIN = "-"


def decode_utf8(raw: bytes, name: str, replace_errors: bool = False, offset: int = 0) -> str:
    """Decode ``raw`` as UTF-8 or raise a CorpusError naming ``name`` and the byte offset
    (``raw`` starts at byte ``offset`` of the file, for a file read in pieces)."""
    if not replace_errors:
        nul = raw.find(b"\x00")
        if nul >= 0:
            raise CorpusError(f"{name}: looks like a binary file (NUL byte at offset {offset + nul}), not text")
    try:
        return raw.decode("utf-8", errors="replace" if replace_errors else "strict")
    except UnicodeDecodeError as e:
        raise InvalidUtf8Error(name, offset + e.start, raw[e.start]) from None


def read_text(source: str | os.PathLike, replace_errors: bool = False, stdin: BinaryIO | None = None) -> str:
    """Read one UTF-8 text file, or standard input when ``source`` is ``-``."""
    if str(source) == STDIN:
        if stdin is None and sys.stdin is None:  # started with stdin closed (e.g. `<&-`)
            raise CorpusError("standard input is closed: nothing to read from '-'")
        stream = stdin if stdin is not None else sys.stdin.buffer
        try:
            raw = stream.read()
        except (OSError, ValueError) as e:
            raise CorpusError(f"cannot read standard input: {e}") from None
        return decode_utf8(raw, "<stdin>", replace_errors)
    path = Path(source)
    with open_binary(path) as f:
        try:
            raw = f.read()
        except OSError as e:
            raise CorpusError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_utf8(raw, str(path), replace_errors)


def open_binary(source: str | os.PathLike) -> BinaryIO:
    """Open a corpus file for reading bytes; every failure is one CorpusError line."""
    path = Path(source)
    if path.is_dir():
        raise CorpusError(f"{path}: is a directory, not a text file")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except PermissionError:
        raise CorpusError(f"{path}: permission denied") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot read ({e.strerror or e})") from None


def read_corpus(sources: list[str], replace_errors: bool = False, stdin: BinaryIO | None = None) -> str:
    """The texts of ``sources`` concatenated in order; an empty result is an error."""
    if not sources:
        raise CorpusError("no corpus given")
    if sum(1 for s in sources if str(s) == STDIN) > 1:
        raise CorpusError("standard input ('-') can be given only once")
    texts = [read_text(s, replace_errors, stdin) for s in sources]
    text = "".join(texts)
    if not text:
        names = ", ".join("<stdin>" if str(s) == STDIN else str(s) for s in sources)
        raise CorpusError(f"{names}: the corpus is empty")
    return text
