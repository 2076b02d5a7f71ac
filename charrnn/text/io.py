"""Reading text: files, standard input ("-"), strict UTF-8 with an offset in the error,
and compressed files.

The corpus reader for training, evaluation and prediction input; every other module
reads user text through here so the same mistakes get the same messages.

A file whose name ends in ``.gz``, ``.bz2`` or ``.xz`` (or ``.zst``, where the zstandard
module is installed) is decompressed as it is read, in the same pieces as a plain file,
so nothing is ever unpacked whole. What a reader decides from a file's name (a ``.tsv``
or ``.conllu`` layout, a label from ``Arabic.txt``) it decides from ``plain_name``, the
name without the compression suffix. Byte offsets in errors count decompressed bytes.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import sys
import zlib
from pathlib import Path
from typing import BinaryIO

from ..errors import CorpusError, InvalidUtf8Error

STDIN = "-"

# suffix -> (format name, the command that decompresses it)
COMPRESSED = {".gz": ("gzip", "gunzip"), ".bz2": ("bzip2", "bunzip2"), ".xz": ("xz", "unxz"),
              ".zst": ("zstd", "unzstd")}
# The first bytes of each format, to name a compressed file whose name does not say so.
_MAGIC = ((b"\x1f\x8b", ".gz"), (b"\xfd7zXZ\x00", ".xz"), (b"\x28\xb5\x2f\xfd", ".zst"))
_BZ2_MAGIC = b"BZh"


def decode_utf8(raw: bytes, name: str, replace_errors: bool = False, offset: int = 0) -> str:
    """Decode ``raw`` as UTF-8 or raise a CorpusError naming ``name`` and the byte offset
    (``raw`` starts at byte ``offset`` of the file, for a file read in pieces)."""
    if offset == 0:
        _not_compressed(raw, name)
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


def _not_compressed(head: bytes, name: str) -> None:
    """A compressed file read as text would be "invalid UTF-8 at offset 1": say what it is."""
    suffix = next((suffix for magic, suffix in _MAGIC if head.startswith(magic)), None)
    if suffix is None and head[:3] == _BZ2_MAGIC and head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P"):
        suffix = ".bz2"
    if suffix is not None:
        kind, tool = COMPRESSED[suffix]
        raise CorpusError(f"{name}: is {kind}-compressed, not text; name it *{suffix} to read it as it is, or "
                          f"decompress it ({tool})")


def compression(path: str | os.PathLike) -> str | None:
    """The compression format a file's name says (``gzip``, ``bzip2``, ``xz``, ``zstd``), or None."""
    entry = COMPRESSED.get(Path(path).suffix.lower())
    return entry[0] if entry else None


def plain_name(path: str | os.PathLike) -> Path:
    """``path`` without its compression suffix: ``train.tsv.gz`` -> ``train.tsv``."""
    p = Path(path)
    return p.with_suffix("") if compression(p) else p


def open_binary(source: str | os.PathLike) -> BinaryIO:
    """Open a corpus file for reading bytes, decompressing it when its name ends in a
    compression suffix; every failure, at opening or at any later read, is one CorpusError line."""
    path = Path(source)
    if path.is_dir():
        raise CorpusError(f"{path}: is a directory, not a text file")
    kind = compression(path)
    zstd = _zstd_module() if kind == "zstd" else None
    if kind == "zstd" and zstd is None:
        raise CorpusError(f"{path}: reading .zst files needs the zstandard module (pip install zstandard), or "
                          f"decompress it (unzstd)")
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except PermissionError:
        raise CorpusError(f"{path}: permission denied") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot read ({e.strerror or e})") from None
    if kind is None:
        return raw
    if kind == "gzip":
        stream = gzip.GzipFile(fileobj=raw, mode="rb")
    elif kind == "bzip2":
        stream = bz2.BZ2File(raw, mode="rb")
    elif kind == "xz":
        stream = lzma.LZMAFile(raw, mode="rb")
    else:
        stream = io.BufferedReader(_ZstdReader(raw, zstd), buffer_size=1 << 16)
    return _Decompressed(stream, raw, str(path), kind)  # type: ignore[return-value]


def disk_position(f: BinaryIO) -> int:
    """Bytes of the file on disk read so far (for a compressed file, of its compressed
    bytes): progress against ``os.path.getsize``."""
    return f.disk_position() if isinstance(f, _Decompressed) else f.tell()


def _zstd_module():
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


class _ZstdReader(io.RawIOBase):
    """The decompressed bytes of a .zst file as a raw stream (all frames, one after
    another), seekable as the standard library's compressed files are: forward by
    reading, backward by starting again."""

    def __init__(self, raw: BinaryIO, zstd):
        self._raw, self._zstd, self._pos = raw, zstd, 0
        self._reader = self._start()

    def _start(self):
        self._raw.seek(0)
        return self._zstd.ZstdDecompressor().stream_reader(self._raw, read_across_frames=True, closefd=False)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._reader.read(len(b))
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("seek from the end of a .zst file")
        if offset < self._pos:
            self._reader, self._pos = self._start(), 0
        while self._pos < offset and self.read(min(offset - self._pos, 1 << 20)):
            pass
        return self._pos


_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, lzma.LZMAError, zlib.error)


class _Decompressed:
    """A decompressing reader whose every failure (a truncated or corrupt file) is one
    CorpusError naming the file, as a plain file's failures are."""

    def __init__(self, stream: BinaryIO, raw: BinaryIO, name: str, kind: str):
        self._stream, self._raw, self.name, self._kind = stream, raw, name, kind
        zstd = _zstd_module() if kind == "zstd" else None
        self._errors = _ERRORS + ((zstd.ZstdError,) if zstd is not None else ())

    def _call(self, method, *args):
        try:
            return method(*args)
        except self._errors as e:
            if isinstance(e, io.UnsupportedOperation):
                raise
            what = "is cut short" if isinstance(e, EOFError) else f"is not valid {self._kind} data ({e})"
            raise CorpusError(f"{self.name}: {what}") from None

    def read(self, size: int = -1) -> bytes:
        return self._call(self._stream.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._call(self._stream.readline, size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._call(self._stream.seek, offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def disk_position(self) -> int:
        return self._raw.tell()

    def readable(self) -> bool:
        return True

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
