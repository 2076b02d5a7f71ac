"""The SentencePiece tokenizers (kinds "bpe", "unigram", "word").

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
import re
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from ..config import DEFAULT_VOCAB_SIZE
from ..errors import ConfigError, TokenizerError
from .tokenizer import SUBWORD_KINDS, UNK_ID, UNK_TEXT, Detokenizer, Tokenizer, _id_list

SPACE_MARK = "\u2581"  # SentencePiece's meta symbol for a space
LITERAL_PIECE = "<U+2581>"  # control token standing for a literal U+2581 in the text
SPACE_PIECE = "<space>"  # control token for a space in a word spelled as bytes (word kind)
NEWLINE_PIECE = "\n"
RESERVED = 4 + 256  # unknown, literal U+2581, space, newline, 256 bytes
CHUNK = 1024  # characters per SentencePiece call at most (see the module docstring)
CHARACTER_COVERAGE = 0.9995  # characters rarer than this are spelled as bytes

_SURROGATE = re.compile("[\ud800-\udfff]")


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
