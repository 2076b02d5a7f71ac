"""Corpus preparation: stream text files into compact token ids, cached and memory-mapped.

A corpus of hundreds of megabytes never exists in memory as one Python string. Files
are read in chunks of a few megabytes cut at character boundaries:

    pass 1  hash the bytes, check them (NUL, UTF-8), count characters and collect the
            characters of each chunk -> the train/validation split point (the last
            ``val_fraction`` of the characters, as ``split_text`` does) and, for the char
            tokenizer, the vocabulary of the training part
    pass 2  encode chunk by chunk (cut at line ends, so subword tokenizers see whole
            lines) and append the ids, 2 or 4 bytes each, to a cache file

Compressed files (``.gz``, ``.bz2``, ``.xz``, ``.zst``: text/io.py) are streamed the same
way, decompressed piece by piece. The cache key is made of the decompressed bytes, so a
compressed copy of a corpus finds the ids of the plain file; progress is counted in bytes
on disk, so a compressed file's bar ends at its own size.

The cache file is keyed by the corpus bytes, the tokenizer and the split, so a second run
on the same corpus skips pass 2; it lives in ``$XDG_CACHE_HOME/charrnn/ids`` (any file
there can be deleted at any time). Training memory-maps it: memory follows the ids the
steps touch, not the corpus size. Standard input and small inputs go through the same
code with the text in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from ..errors import CorpusError
from ..files import atomic_write, cache_root
from .char import CharTokenizer
from .io import STDIN, decode_utf8, disk_position, open_binary, read_corpus, read_text
from .streams import compact, split_point, split_text
from .tokenizer import Tokenizer

CHUNK_BYTES = 1 << 18  # bytes read at a time: bounds the transient memory of both passes (measured: 4 MB
# chunks peaked at 1.4 GB RSS on a 200 MB corpus, 1 MB at 660 MB, 256 KB at 440 MB, no slower)
SAMPLE_CHARS = 64 << 20  # characters of training text a subword tokenizer is trained on, at most
CACHE_VERSION = 1

Progress = Callable[[str, int, int], None]  # (phase, done, total) in bytes


@dataclass
class Corpus:
    """Token ids of the training and validation text, and the tokenizer that made them."""

    train: torch.Tensor  # 1-D compact ids; memory-mapped when prepared from files
    val: torch.Tensor
    tokenizer: Tokenizer
    fingerprint: str  # digest of the ids; a resumed run must see the same
    val_text_chars: int  # characters of the validation text (bits per character need them)
    cached: bool = False  # True when pass 2 was skipped thanks to the cache

    @classmethod
    def from_texts(cls, train_text: str, val_text: str, tokenizer: Tokenizer | None = None) -> Corpus:
        tok = tokenizer or CharTokenizer.train(train_text)
        train = compact(tok.encode(train_text), tok.vocab_size)
        val = compact(tok.encode(val_text), tok.vocab_size)
        return cls(train, val, tok, fingerprint(train, val), len(val_text))


def _hasher(dtype: torch.dtype):
    h = hashlib.sha256()
    h.update(str(dtype).encode())
    return h


def _digest(ids: torch.Tensor) -> str:
    h = _hasher(ids.dtype)
    h.update(ids.contiguous().numpy().tobytes())
    return h.hexdigest()


def _combine(train_digest: str, val_digest: str) -> str:
    return hashlib.sha256(f"{train_digest}|{val_digest}".encode()).hexdigest()[:32]


def fingerprint(train: torch.Tensor, val: torch.Tensor) -> str:
    """A digest of the token ids (dtype and values), the same however they were produced."""
    return _combine(_digest(train), _digest(val))


def default_cache_dir() -> Path:
    return cache_root() / "ids"


# --------------------------------------------------------------------------- reading


def _chunks(source: str | os.PathLike, size: int) -> Iterator[tuple[int, bytes, int]]:
    """(byte offset, bytes, bytes read from disk so far) pieces of a file, each ending on a
    UTF-8 character boundary. Offsets count the (decompressed) text's bytes."""
    offset, carry = 0, b""
    with open_binary(source) as f:
        while True:
            block = f.read(size)
            data = carry + block
            if not block:
                if data:
                    yield offset, data, disk_position(f)
                return
            # Hold back an incomplete multi-byte character at the end (at most 3 bytes).
            cut = len(data)
            for back in range(1, min(4, len(data)) + 1):
                b = data[-back]
                if b < 0x80:  # ASCII: complete
                    break
                if b >= 0xC0:  # a lead byte: complete only if its sequence is
                    need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
                    if back < need:
                        cut = len(data) - back
                    break
            carry = data[cut:]
            if cut:
                yield offset, data[:cut], disk_position(f)
                offset += cut


@dataclass
class _Scan:
    digest: str
    chars: int
    chunk_chars: list[int]  # characters per chunk, in order over all sources
    chunk_sets: list[str]  # the distinct characters of each chunk
    chunk_places: list[tuple[str, int, int]]  # (file, byte offset, byte length) of each chunk
    total_bytes: int


def _scan(sources: list[str], replace: bool, on_progress: Progress | None) -> _Scan:
    total = sum(os.path.getsize(s) for s in sources)
    h = hashlib.sha256()
    counts: list[int] = []
    sets: list[str] = []
    places: list[tuple[str, int, int]] = []
    done = 0  # bytes on disk of the files before this one
    for s in sources:
        length = 0
        for offset, raw, on_disk in _chunks(s, CHUNK_BYTES):
            h.update(raw)
            text = decode_utf8(raw, str(s), replace, offset)
            counts.append(len(text))
            sets.append("".join(set(text)))
            places.append((s, offset, len(raw)))
            length = offset + len(raw)
            if on_progress:
                on_progress("reading", done + on_disk, total)
        # File boundaries are part of the key: each file's (decompressed) length after its
        # bytes, so a plain file and its compressed copy give the same key.
        h.update(f"\0{length}\0".encode())
        done += os.path.getsize(s)
    return _Scan(h.hexdigest(), sum(counts), counts, sets, places, total)


def _texts(sources: list[str], replace: bool) -> Iterator[str]:
    for s in sources:
        for offset, raw, _ in _chunks(s, CHUNK_BYTES):
            yield decode_utf8(raw, str(s), replace, offset)


# --------------------------------------------------------------------------- preparing


def prepare_corpus(
    sources: list[str],
    *,
    val_fraction: float = 0.1,
    val_max_chars: int | None = None,
    val_source: str | None = None,
    replace_errors: bool = False,
    tokenizer: Tokenizer | Callable[[str], Tokenizer] | None = None,
    cache_dir: Path | None = None,
    on_progress: Progress | None = None,
    stdin: BinaryIO | None = None,
) -> Corpus:
    """Token ids of ``sources`` (files, or "-" for stdin), split and tokenized.

    The validation text is the last ``val_fraction`` of the characters, at most
    ``val_max_chars`` of them. ``tokenizer``: None trains a char tokenizer on the training part; a callable is called
    with the training text (at most SAMPLE_CHARS of it) and returns a trained tokenizer;
    a Tokenizer is used as it is. ``val_source`` replaces the split: all of ``sources``
    is training text and ``val_source`` (read whole) the validation text.
    """
    if not sources:
        raise CorpusError("no corpus given")
    if any(str(s) == STDIN for s in sources):
        # A stream cannot be read twice: take it whole.
        text = read_corpus(sources, replace_errors, stdin)
        if val_source is not None:
            train_text, val_text = text, read_text(val_source, replace_errors, stdin)
        else:
            train_text, val_text = split_text(text, val_fraction, val_max_chars)
        return Corpus.from_texts(train_text, val_text, _resolve(tokenizer, train_text))

    sources = [str(s) for s in sources]
    for s in sources:
        open_binary(s).close()  # the first unreadable file is the error, before any work
    scan = _scan(sources, replace_errors, on_progress)
    if scan.chars == 0:
        raise CorpusError(f"{', '.join(sources)}: the corpus is empty")
    val_text = None
    if val_source is not None:
        val_text = read_text(val_source, replace_errors, stdin)
        n_train = scan.chars
    else:
        n_train = split_point(scan.chars, val_fraction, val_max_chars)

    tok = _tokenizer_for(tokenizer, scan, n_train, sources, replace_errors)
    tok_meta, tok_tensors = tok.state()
    th = hashlib.sha256(json.dumps(tok_meta, sort_keys=True).encode())
    for k in sorted(tok_tensors):
        th.update(k.encode())
        th.update(tok_tensors[k].contiguous().numpy().tobytes())
    key_src = f"v{CACHE_VERSION}|{scan.digest}|{th.hexdigest()}|{n_train}|{int(replace_errors)}"
    key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
    dtype = compact(torch.zeros(0, dtype=torch.long), tok.vocab_size).dtype

    cache_dir = cache_dir or default_cache_dir()
    cached = _load_cached(cache_dir, key, dtype)
    if cached is None:
        ids, n_train_ids, train_digest, val_digest = _encode_to_cache(
            cache_dir, key, sources, replace_errors, tok, dtype, n_train, scan.chars, on_progress)
    else:
        ids, n_train_ids, train_digest, val_digest = cached
    train = ids[:n_train_ids]
    if val_text is not None:
        val = compact(tok.encode(val_text), tok.vocab_size)
        val_digest = _digest(val)
        val_chars = len(val_text)
    else:
        val = ids[n_train_ids:].clone()  # small: keep it in memory
        val_chars = scan.chars - n_train
    return Corpus(train, val, tok, _combine(train_digest, val_digest), val_chars, cached is not None)


def _resolve(tokenizer, train_text: str) -> Tokenizer:
    if tokenizer is None:
        return CharTokenizer.train(train_text)
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    return tokenizer(train_text)


def _tokenizer_for(tokenizer, scan: _Scan, n_train: int, sources: list[str], replace: bool) -> Tokenizer:
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    if tokenizer is None:
        # The characters of the training part: whole chunks from pass 1, and the part of
        # the chunk that holds the split point read again.
        chars: set[str] = set()
        seen = 0
        for i, (count, distinct) in enumerate(zip(scan.chunk_chars, scan.chunk_sets)):
            if seen + count <= n_train:
                chars.update(distinct)
                seen += count
                continue
            if seen < n_train:
                name, offset, length = scan.chunk_places[i]
                with open_binary(name) as f:
                    f.seek(offset)
                    chars.update(decode_utf8(f.read(length), name, replace, offset)[: n_train - seen])
            break
        return CharTokenizer("".join(chars))
    # A subword tokenizer learns from (a prefix of) the training text.
    limit = min(n_train, SAMPLE_CHARS)
    parts, got = [], 0
    for text in _texts(sources, replace):
        parts.append(text[: limit - got])
        got += len(parts[-1])
        if got >= limit:
            break
    return tokenizer("".join(parts))


def _paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return cache_dir / f"{key}.ids", cache_dir / f"{key}.json"


def _load_cached(cache_dir: Path, key: str, dtype: torch.dtype):
    """(ids, training id count, digests) of a complete cache entry, or None."""
    ids_path, meta_path = _paths(cache_dir, key)
    try:
        meta = json.loads(meta_path.read_text())
        n = int(meta["tokens"])
        if meta.get("version") != CACHE_VERSION or meta.get("dtype") != str(dtype):
            return None
        if ids_path.stat().st_size != n * _itemsize(dtype):
            return None
        ids = torch.from_file(str(ids_path), shared=False, size=n, dtype=dtype)
        return ids, int(meta["train_tokens"]), str(meta["train_digest"]), str(meta["val_digest"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None


def _itemsize(dtype: torch.dtype) -> int:
    return torch.zeros(0, dtype=dtype).element_size()


def _line_pieces(texts: Iterator[str], n_train: int) -> Iterator[tuple[str, bool]]:
    """(text, is_training) pieces cut at line ends, and exactly at the split point."""
    seen, carry = 0, ""
    for text in texts:
        text = carry + text
        start = seen - len(carry)
        if start < n_train < start + len(text):  # the split point falls in here
            cut = n_train - start
            yield text[:cut], True
            text, start = text[cut:], n_train
        end = text.rfind("\n") + 1
        if end == 0 and len(text) < 4 * CHUNK_BYTES:  # no line end yet: wait for one
            carry = text
        else:
            end = end or len(text)
            yield text[:end], start < n_train
            carry = text[end:]
        seen = start + len(text)
    if carry:
        yield carry, seen - len(carry) < n_train


def _encode_to_cache(cache_dir: Path, key: str, sources: list[str], replace: bool, tok: Tokenizer,
                     dtype: torch.dtype, n_train: int, total_chars: int, on_progress: Progress | None):
    """Pass 2: encode the pieces and write the ids file, then its metadata (which marks
    the entry complete); return the memory-mapped ids, the training id count and digests."""

    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CorpusError(f"cannot create the id cache {cache_dir}: {e.strerror or e}") from None
    ids_path, meta_path = _paths(cache_dir, key)
    hashes = {True: _hasher(dtype), False: _hasher(dtype)}  # training part, validation part
    nbytes = {True: 0, False: 0}
    done = 0

    def encode(piece: tuple[str, bool]) -> tuple[bytes, bool, int]:
        text, is_train = piece
        return compact(tok.encode(text), tok.vocab_size).numpy().tobytes(), is_train, len(text)

    def write(tmp: str) -> None:
        nonlocal done
        with open(tmp, "wb") as f, ThreadPoolExecutor(max_workers=2) as pool:
            # Two pieces in flight: torch's encoding releases the GIL, so decoding the next
            # piece overlaps with encoding this one. Results are written in order.
            pending = []
            pieces = _line_pieces(_texts(sources, replace), n_train)
            while True:
                piece = next(pieces, None)
                if piece is not None:
                    pending.append(pool.submit(encode, piece))
                if pending and (len(pending) >= 2 or piece is None):
                    data, is_train, n_chars = pending.pop(0).result()
                    hashes[is_train].update(data)
                    nbytes[is_train] += len(data)
                    f.write(data)
                    done += n_chars
                    if on_progress:
                        on_progress("tokenizing", done, total_chars)
                elif piece is None:
                    break

    try:
        atomic_write(ids_path, write)
    except OSError as e:
        raise CorpusError(f"cannot write the id cache {ids_path}: {e.strerror or e}") from None
    size = _itemsize(dtype)
    n_train_ids, n_ids = nbytes[True] // size, (nbytes[True] + nbytes[False]) // size
    meta = {"version": CACHE_VERSION, "tokens": n_ids, "train_tokens": n_train_ids, "dtype": str(dtype),
            "train_digest": hashes[True].hexdigest(), "val_digest": hashes[False].hexdigest(),
            "sources": [os.path.abspath(s) for s in sources]}
    try:
        atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta)))
    except OSError as e:
        raise CorpusError(f"cannot write the id cache {meta_path}: {e.strerror or e}") from None
    ids = torch.from_file(str(ids_path), shared=False, size=n_ids, dtype=dtype)
    return ids, n_train_ids, meta["train_digest"], meta["val_digest"]


