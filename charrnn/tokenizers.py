"""Tokenizers: text <-> integer ids.

One small interface (``Tokenizer``) with two implementations:

- ``CharTokenizer`` (kind "char"): one token per Unicode code point of the training split.
- ``SentencePieceTokenizer`` (kinds "bpe", "unigram", "word"): a SentencePiece model
  trained in memory on the training split, with byte fallback, so that every Unicode text
  encodes and decodes back to itself exactly; no input is ever unknown.

Both store their state as JSON-able metadata plus tensors, so a checkpoint (or a
tokenizer file, ``save_tokenizer``) carries the tokenizer with it.

Unknown characters (char tokenizer): the vocabulary is the set of Unicode code points of
the training split, plus id 0, ``UNK_ID``, reserved for any code point outside it. An
unknown character in a prime or an evaluated text is encoded as ``UNK_ID``: the model
reads it as input (so the state moves on), evaluation does not score it and counts it in
``unknown``, and generation never produces it.

How SentencePiece sees text here (all chosen so that decode(encode(s)) == s):

- Identity normalization, no dummy prefix, no removal of extra spaces. SentencePiece
  writes a space as the meta symbol U+2581 ("▁") inside pieces, e.g. "▁the".
- Vocabulary layout: 0 unknown (never produced), 1 ``LITERAL_PIECE``, 2 ``SPACE_PIECE``,
  3 newline, 4..259 the 256 byte tokens, then the learned pieces.
- SentencePiece works on lines: the text is split at "\n", every line is encoded on its
  own (all in one batch call), and the lines are joined by the newline token (a
  user-defined symbol). Tokens never span a line break.
- A literal U+2581 in the input would come back as a space, so it is cut out before
  SentencePiece sees the text and stands for itself as the control token
  ``LITERAL_PIECE``.
- Lines longer than ``chunk`` characters are cut before a space (a hard cut only where a
  ``chunk``-long run has no space). Pieces never cross a space, so cutting there gives the
  same tokens as encoding the whole line; it keeps training sentences under
  SentencePiece's length limit (longer ones would be dropped from training silently) and
  bounds the work per call.
- Characters outside the vocabulary (the rarest 0.05% of the training characters, and all
  unseen ones) are spelled as their UTF-8 bytes, one token each.
- Unknown-word policy of the word kind: a word outside its vocabulary (the most frequent
  space-separated words of the training split; a word at the start of a line, with no
  space before it, is a different word) is spelled as bytes too, its leading space as the
  one token ``SPACE_PIECE``. Nothing is ever unknown.
- Decoding concatenates the bytes of the pieces, decodes them as UTF-8 with invalid or
  incomplete sequences replaced by U+FFFD (only generated text can have them), and turns
  "▁" back into spaces. ``Detokenizer`` does the same one token at a time for generation.

Training is deterministic: one trainer thread (the result depends on the thread count)
and no sampling of sentences, so the same text and options give the same model, byte for
byte.
"""

from __future__ import annotations

import codecs
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from .config import DEFAULT_VOCAB_SIZE
from .errors import ConfigError, TokenizerError

UNK_ID = 0
UNK_TEXT = "\ufffd"  # what decoding UNK_ID gives back

KINDS = ("char", "bpe", "unigram", "word")
SUBWORD_KINDS = ("bpe", "unigram", "word")

SPACE_MARK = "\u2581"  # SentencePiece's meta symbol for a space
LITERAL_PIECE = "<U+2581>"  # control token standing for a literal U+2581 in the text
SPACE_PIECE = "<space>"  # control token for a space in a word spelled as bytes (word kind)
NEWLINE_PIECE = "\n"
RESERVED = 4 + 256  # unknown, literal U+2581, space, newline, 256 bytes
CHUNK = 1024  # characters per SentencePiece call at most (see the module docstring)
CHARACTER_COVERAGE = 0.9995  # characters rarer than this are spelled as bytes

_SURROGATE = re.compile("[\ud800-\udfff]")

TOKENIZER_FORMAT = "charrnn-tokenizer"
TOKENIZER_FORMAT_VERSION = 1


def _codepoints(text: str) -> torch.Tensor:
    """Code points of ``text`` as an int64 tensor, without a Python object per character."""
    if not text:
        return torch.zeros(0, dtype=torch.int64)
    # UTF-32 holds one 4-byte unit per code point; surrogates cannot appear in valid text,
    # but lone surrogates in a str would fail to encode: keep them as U+FFFD.
    raw = bytearray(text.encode("utf-32-le", errors="replace"))
    return torch.frombuffer(raw, dtype=torch.int32).to(torch.int64)


def _id_list(ids: Any) -> list[int]:
    if isinstance(ids, torch.Tensor):
        return ids.view(-1).tolist()
    return [int(i) for i in ids]


# --------------------------------------------------------------------------- detokenizers


class Detokenizer:
    """Turns one stream of token ids into text, incrementally (one per generated row).

    ``feed(id)`` returns the text that token completes: often its own text, but "" for a
    byte token that starts a character not finished yet, and the held bytes plus more when
    it finishes one. ``flush()`` ends the stream (held bytes become U+FFFD). Bytes in an
    order that is not valid UTF-8 come out as U+FFFD; feeding never fails.
    """

    pending: bool = False  # bytes are held back that do not make a whole character yet

    def feed(self, token_id: int) -> str:
        raise NotImplementedError

    def flush(self) -> str:
        return ""

    def clone(self) -> Detokenizer:
        """An independent copy in the same state (beam search branches)."""
        return self


class TextDetokenizer(Detokenizer):
    """For tokenizers whose every token is whole text: one lookup per token, no state."""

    def __init__(self, text_of: Callable[[int], str]):
        self.feed = text_of  # type: ignore[method-assign]  # the lookup itself: no extra call


class _ByteDetokenizer(Detokenizer):
    """SentencePiece ids -> text: piece bytes through an incremental UTF-8 decoder.

    ``texts[i]`` is the text of a token that is whole UTF-8 on its own (None for byte
    tokens and the literal U+2581 token); while nothing is held back such a token is a
    lookup, like a character tokenizer. ``raw[i]`` are its bytes as SentencePiece writes
    them (spaces as U+2581).
    """

    def __init__(self, texts: list[str | None], raw: list[bytes], literal_id: int):
        self._texts, self._raw, self._literal = texts, raw, literal_id
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending = False

    def feed(self, token_id: int) -> str:
        text = self._texts[token_id]
        if text is not None and not self.pending:
            return text
        if token_id == self._literal:
            out = self._utf8.decode(b"", True)  # held bytes cannot continue: U+FFFD
            self._utf8.reset()
            self.pending = False
            return out.replace(SPACE_MARK, " ") + SPACE_MARK
        out = self._utf8.decode(self._raw[token_id])
        self.pending = bool(self._utf8.getstate()[0])
        return out.replace(SPACE_MARK, " ")

    def flush(self) -> str:
        out = self._utf8.decode(b"", True)
        self._utf8.reset()
        self.pending = False
        return out.replace(SPACE_MARK, " ")

    def clone(self) -> _ByteDetokenizer:
        other = _ByteDetokenizer(self._texts, self._raw, self._literal)
        other._utf8.setstate(self._utf8.getstate())
        other.pending = self.pending
        return other


# --------------------------------------------------------------------------- interface


class Tokenizer:
    """Interface every tokenizer kind implements."""

    kind: str = ""
    warnings: list[str]  # notes from training for the user (e.g. a capped vocabulary); not stored

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> torch.Tensor:
        """Ids of ``text`` as a 1-D int64 tensor."""
        raise NotImplementedError

    def encode_lines(self, lines: list[str]) -> list[list[int]]:
        """Ids of each of ``lines`` (texts without "\\n"), in one pass where possible."""
        return [self.encode(line).tolist() for line in lines]

    def decode(self, ids: Any) -> str:
        det = self.detokenizer()
        return "".join([det.feed(i) for i in _id_list(ids)]) + det.flush()

    def detokenizer(self) -> Detokenizer:
        """A fresh incremental decoder for one stream of generated ids."""
        raise NotImplementedError

    def token_text(self, token_id: int) -> str:
        """The text of one token decoded on its own (a lone byte token gives U+FFFD)."""
        return self.decode([token_id])

    def piece(self, token_id: int) -> str:
        """The vocabulary entry of one token, for display (e.g. "▁the", "<0xE2>")."""
        return self.token_text(token_id)

    @property
    def unk_id(self) -> int | None:
        """Id that stands for unknown input, or None when every input is representable."""
        return None

    @property
    def banned_ids(self) -> list[int]:
        """Ids that generation must never produce (they stand for no text)."""
        return []

    @property
    def start_id(self) -> int:
        """Token the model is fed when generation has no prime text."""
        raise NotImplementedError

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """JSON-able metadata and tensors that ``tokenizer_from_state`` rebuilds this from."""
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
        self.warnings = []

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
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
    def banned_ids(self) -> list[int]:
        return [UNK_ID]

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

    def encode_lines(self, lines: list[str]) -> list[list[int]]:
        ids = self.encode("".join(lines))  # one id per character: split by line lengths
        return [t.tolist() for t in torch.split(ids, [len(line) for line in lines])]

    def decode(self, ids: Any) -> str:
        return "".join([self.token_text(i) for i in _id_list(ids)])

    def detokenizer(self) -> Detokenizer:
        return TextDetokenizer(self.token_text)

    def token_text(self, token_id: int) -> str:
        if 1 <= token_id <= len(self.chars):
            return self.chars[token_id - 1]
        return UNK_TEXT

    def piece(self, token_id: int) -> str:
        return self.token_text(token_id) if token_id != UNK_ID else "<unk>"

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"kind": self.kind, "chars": self.chars}, {}


# --------------------------------------------------------------------------- SentencePiece


def _chunks(line: str, size: int) -> Iterator[str]:
    """``line`` in pieces of at most ``size`` characters, each cut just before a space
    where the window has one (the space starts the next piece, as SentencePiece's "▁")."""
    start = 0
    while len(line) - start > size:
        cut = line.rfind(" ", start + 1, start + size + 1)
        if cut < 0:
            cut = start + size
        yield line[start:cut]
        start = cut
    yield line[start:]


def _segments(text: str, chunk: int, literal_id: int, newline_id: int) -> tuple[list[str], list[int]]:
    """Split ``text`` into the strings SentencePiece encodes, and the id that follows each
    one (-1: none). Lines end with the newline id, literal U+2581s are the literal id."""
    segs: list[str] = []
    after: list[int] = []
    for line in text.split("\n"):
        parts = line.split(SPACE_MARK) if SPACE_MARK in line else (line,)
        for part in parts:
            if len(part) <= chunk:
                segs.append(part)
                after.append(-1)
            else:
                for piece in _chunks(part, chunk):
                    segs.append(piece)
                    after.append(-1)
            after[-1] = literal_id
        after[-1] = newline_id
    after[-1] = -1
    return segs, after


def _min_vocab_error(kind: str, asked: int, needed: int | None) -> ConfigError:
    if kind == "word":
        why = f"at least {RESERVED + 2} ({RESERVED + 1} byte and special tokens and one word)"
    elif needed is None:
        why = f"{RESERVED} byte and special tokens plus one per character of the text"
    else:
        why = f"at least {needed} ({RESERVED} byte and special tokens and {needed - RESERVED} characters)"
    return ConfigError(f"vocab_size {asked} is too small for a {kind} tokenizer of this text: it needs {why}")


def _train_proto(kind: str, sentences: Iterable[str], vocab_size: int, chunk: int) -> bytes:
    """Train a SentencePiece model in memory (no files); return its serialized proto."""
    import sentencepiece as spm

    out = io.BytesIO()
    options: dict[str, Any] = {
        "model_type": kind,
        "vocab_size": vocab_size,
        "hard_vocab_limit": False,  # a text with too few distinct pieces gives a smaller vocabulary
        "byte_fallback": True,
        "character_coverage": CHARACTER_COVERAGE,
        "normalization_rule_name": "identity",
        "remove_extra_whitespaces": False,
        "add_dummy_prefix": False,
        "unk_id": UNK_ID,
        "bos_id": -1,
        "eos_id": -1,
        "pad_id": -1,
        "control_symbols": [LITERAL_PIECE, SPACE_PIECE],
        "user_defined_symbols": [NEWLINE_PIECE],
        "max_sentence_length": 4 * chunk + 16,  # bytes; segments are at most ``chunk`` characters
        "num_threads": 1,  # the trained model depends on the thread count: keep it fixed
        "minloglevel": 2,  # errors only; they come back as exceptions, nothing is printed
    }
    if kind != "word":
        # A text with few spaces would otherwise spell "▁" as three byte tokens.
        options["required_chars"] = SPACE_MARK
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=out, **options)
    except RuntimeError as e:
        message = str(e)
        if "smaller than required_chars" in message:
            m = re.search(r"(\d+) vs (\d+)", message)
            raise _min_vocab_error(kind, vocab_size, int(m.group(2)) if m else None) from None
        first = message.strip().splitlines()[0] if message.strip() else type(e).__name__
        raise TokenizerError(f"sentencepiece could not train a {kind} tokenizer on this text ({first})") from None
    return out.getvalue()


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model (bpe, unigram or word) with byte fallback; see the module
    docstring for how text is cut and put back together."""

    def __init__(self, kind: str, proto: bytes, requested_vocab_size: int | None = None, chunk: int = CHUNK):
        import sentencepiece as spm

        if kind not in SUBWORD_KINDS:
            raise TokenizerError(f"unknown sentencepiece tokenizer kind {kind!r}")
        if not isinstance(chunk, int) or chunk < 1:
            raise TokenizerError(f"bad chunk size {chunk!r} in a stored {kind} tokenizer")
        self.kind, self.proto, self.chunk = kind, bytes(proto), chunk
        self.requested_vocab_size = requested_vocab_size
        self.warnings = []
        try:
            if not self.proto:  # the binding takes an empty proto for "no model yet"
                raise RuntimeError("empty")
            sp = spm.SentencePieceProcessor(model_proto=self.proto)
        except (RuntimeError, ValueError, TypeError):
            raise TokenizerError(f"the stored {kind} tokenizer model is damaged (not a SentencePiece model)") from None
        self._sp = sp
        n = sp.get_piece_size()
        self.literal_id = sp.piece_to_id(LITERAL_PIECE)
        self.space_id = sp.piece_to_id(SPACE_PIECE)
        self.newline_id = sp.piece_to_id(NEWLINE_PIECE)
        self._byte_id = [sp.piece_to_id(f"<0x{b:02X}>") for b in range(256)]
        if ((self.literal_id, self.space_id, self.newline_id) != (1, 2, 3) or sp.unk_id() != UNK_ID
                or not (sp.is_control(1) and sp.is_control(2)) or not all(sp.is_byte(i) for i in self._byte_id)):
            raise TokenizerError(f"the stored {kind} tokenizer model was not made by charrnn (special tokens differ)")
        texts: list[str | None] = []
        raw: list[bytes] = []
        for i in range(n):
            piece = sp.id_to_piece(i)
            if sp.is_byte(i):  # "<0xE2>"
                texts.append(None)
                raw.append(bytes([int(piece[3:5], 16)]))
            elif i == self.literal_id:
                texts.append(None)
                raw.append(b"")
            elif i == UNK_ID:
                texts.append(UNK_TEXT)
                raw.append(UNK_TEXT.encode())
            elif i == self.space_id:
                texts.append(" ")
                raw.append(SPACE_MARK.encode())
            else:
                texts.append(piece.replace(SPACE_MARK, " "))
                raw.append(piece.encode("utf-8"))
        self._texts, self._raw = texts, raw
        self._pieces = [sp.id_to_piece(i) for i in range(n)]
        # The word kind spells a word outside its vocabulary as bytes, "▁" included; the
        # three bytes of "▁" become the one space token (``_join_spaces``).
        self._spell_spaces = kind == "word"
        # Never generated, because encoding never gives them: unknown (byte fallback), the
        # space token outside the word kind (there "▁" is always a piece of its own), and
        # pieces with a line break other than the newline token (encoding works on lines;
        # the word trainer adds one, "▁\n").
        self._banned = [UNK_ID] + ([] if self._spell_spaces else [self.space_id]) + [
            i for i in range(n) if i != self.newline_id and "\n" in self._pieces[i] and not sp.is_byte(i)]

    def _join_spaces(self, ids: list[int]) -> list[int]:
        """Replace each run of the byte tokens E2 96 81 (UTF-8 of "▁") by the space token.
        Input text never has a literal U+2581 here (it was cut out), so these bytes are
        always a spelled space; UTF-8 cannot match them out of step."""
        e2, x96, x81 = self._byte_id[0xE2], self._byte_id[0x96], self._byte_id[0x81]
        out: list[int] = []
        i, n = 0, len(ids)
        while i < n:
            if ids[i] == e2 and i + 2 < n and ids[i + 1] == x96 and ids[i + 2] == x81:
                out.append(self.space_id)
                i += 3
            else:
                out.append(ids[i])
                i += 1
        return out

    @classmethod
    def train(cls, kind: str, text: str, vocab_size: int | None = None, chunk: int = CHUNK) -> SentencePieceTokenizer:
        """Train on ``text`` (the training split). ``vocab_size`` counts every token, the 259
        byte and special ones included; a text that supports fewer pieces gets a smaller
        vocabulary and a note in ``warnings``."""
        if kind not in SUBWORD_KINDS:
            raise TokenizerError(f"unknown tokenizer kind {kind!r}")
        asked = DEFAULT_VOCAB_SIZE[kind] if vocab_size is None else int(vocab_size)
        least = RESERVED + (2 if kind == "word" else 1)  # the word trainer adds a piece "▁\n"
        if asked < least:
            raise _min_vocab_error(kind, asked, None)
        segs, _ = _segments(_SURROGATE.sub("\ufffd", text), chunk, -1, -1)
        sentences = [s for s in segs if s]
        if not sentences:
            raise TokenizerError(f"cannot train a {kind} tokenizer on empty text")
        tok = cls(kind, _train_proto(kind, sentences, asked, chunk), asked, chunk)
        if tok.vocab_size < asked:
            tok.warnings.append(
                f"the training text supports only {tok.vocab_size} {kind} tokens, fewer than the {asked} asked "
                f"for: using {tok.vocab_size}"
            )
        return tok

    @property
    def vocab_size(self) -> int:
        return len(self._raw)

    @property
    def banned_ids(self) -> list[int]:
        return list(self._banned)

    @property
    def start_id(self) -> int:
        return self.newline_id

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor(self.encode_lines([text])[0], dtype=torch.int64)

    def encode_lines(self, lines: list[str]) -> list[list[int]]:
        # Every text is cut into segments (lines, literal U+2581s, chunks); all segments of
        # all texts go to SentencePiece in one batch call, then are put back together.
        segs: list[str] = []
        after: list[int] = []
        owner: list[int] = []
        for k, text in enumerate(lines):
            if _SURROGATE.search(text):
                # Lone surrogates (e.g. undecodable bytes in a command-line argument) are
                # not Unicode text: they become U+FFFD, as invalid input bytes do.
                text = _SURROGATE.sub("\ufffd", text)
            s, a = _segments(text, self.chunk, self.literal_id, self.newline_id)
            segs += s
            after += a
            owner += [k] * len(s)
        out: list[list[int]] = [[] for _ in lines]
        e2 = self._byte_id[0xE2]
        for ids, sep, k in zip(self._sp.encode(segs, out_type=int), after, owner):
            row = out[k]
            row += self._join_spaces(ids) if self._spell_spaces and e2 in ids else ids
            if sep >= 0:
                row.append(sep)
        return out

    def decode(self, ids: Any) -> str:
        ids = _id_list(ids)
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise TokenizerError(f"token id {bad} is outside the vocabulary (0 to {self.vocab_size - 1})")
        # One UTF-8 decode per run between literal U+2581 tokens; the same text as feeding a
        # Detokenizer token by token (Python's incremental decoder guarantees that).
        raw = self._raw
        parts = []
        start = 0
        while True:
            try:
                end = ids.index(self.literal_id, start)
            except ValueError:
                end = len(ids)
            run = b"".join([raw[i] for i in ids[start:end]])
            parts.append(run.decode("utf-8", "replace").replace(SPACE_MARK, " "))
            if end == len(ids):
                return SPACE_MARK.join(parts)
            start = end + 1

    def detokenizer(self) -> Detokenizer:
        return _ByteDetokenizer(self._texts, self._raw, self.literal_id)

    def piece(self, token_id: int) -> str:
        return self._pieces[token_id]

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta = {"kind": self.kind, "requested_vocab_size": self.requested_vocab_size, "chunk": self.chunk}
        return meta, {"model": torch.frombuffer(bytearray(self.proto), dtype=torch.uint8)}


# --------------------------------------------------------------------------- construction


def train_tokenizer(kind: str, text: str, vocab_size: int | None = None) -> Tokenizer:
    """A tokenizer of ``kind`` trained on ``text`` (the training split only)."""
    if kind == "char":
        if vocab_size is not None:
            raise ConfigError("a char tokenizer's vocabulary is the training text's characters: it takes no vocab_size")
        return CharTokenizer.train(text)
    if kind in SUBWORD_KINDS:
        return SentencePieceTokenizer.train(kind, text, vocab_size)
    raise TokenizerError(f"unknown tokenizer kind {kind!r} (one of {', '.join(KINDS)})")


def tokenizer_from_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Tokenizer:
    kind = meta.get("kind")
    if kind == "char":
        chars = meta.get("chars")
        if not isinstance(chars, str):
            raise TokenizerError("stored char tokenizer has no character list")
        return CharTokenizer(chars)
    if kind in SUBWORD_KINDS:
        model = tensors.get("model")
        if not isinstance(model, torch.Tensor) or model.dtype != torch.uint8 or model.dim() != 1:
            raise TokenizerError(f"stored {kind} tokenizer has no model")
        requested = meta.get("requested_vocab_size")
        return SentencePieceTokenizer(kind, model.numpy().tobytes(), requested, meta.get("chunk", CHUNK))
    raise TokenizerError(f"unknown tokenizer kind {kind!r} (made by a newer charrnn?)")


# --------------------------------------------------------------------------- tokenizer files


def save_tokenizer(path: str | os.PathLike, tokenizer: Tokenizer) -> None:
    """Write ``tokenizer`` as a small safetensors file laid out like a checkpoint's tokenizer
    part (metadata "tokenizer", tensors "tokenizer.*"); written atomically."""
    import json

    from safetensors.torch import save_file

    from .checkpoint import atomic_write

    meta, tensors = tokenizer.state()
    metadata = {"format": TOKENIZER_FORMAT, "format_version": str(TOKENIZER_FORMAT_VERSION),
                "tokenizer": json.dumps(meta, ensure_ascii=False)}
    tensors = {f"tokenizer.{k}": v.contiguous() for k, v in tensors.items()}
    try:
        atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    except OSError as e:
        raise TokenizerError(f"cannot write tokenizer file {path}: {e.strerror or e}") from None


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer in a tokenizer file, a checkpoint file, or a run directory (its best
    checkpoint). Only the tokenizer is read, never the weights."""
    import json

    from safetensors import SafetensorError, safe_open

    from .checkpoint import FORMAT, resolve_checkpoint

    p = Path(path)
    if p.is_dir():
        p = resolve_checkpoint(p)
    if not p.exists():
        raise TokenizerError(f"{p}: no such tokenizer file, checkpoint or run directory")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") not in (TOKENIZER_FORMAT, FORMAT):
                raise TokenizerError(f"{p}: a safetensors file, but neither a charrnn tokenizer nor a checkpoint")
            tensors = {k[len("tokenizer."):]: f.get_tensor(k) for k in f.keys() if k.startswith("tokenizer.")}  # noqa: SIM118 (a safetensors handle, not a dict)
    except PermissionError:
        raise TokenizerError(f"{p}: permission denied") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TokenizerError(f"{p}: not a charrnn tokenizer file or checkpoint ({reason})") from None
    version = metadata.get("format_version", "")
    if metadata.get("format") == TOKENIZER_FORMAT and (not version.isdigit() or int(version) > TOKENIZER_FORMAT_VERSION):
        raise TokenizerError(f"{p}: tokenizer file format version {version!r} is not one this charrnn reads (newer? upgrade charrnn)")
    try:
        meta = json.loads(metadata["tokenizer"])
    except (KeyError, ValueError):
        raise TokenizerError(f"{p}: the tokenizer metadata is missing or damaged") from None
    try:
        return tokenizer_from_state(meta, tensors)
    except TokenizerError as e:
        raise TokenizerError(f"{p}: {e}") from None
