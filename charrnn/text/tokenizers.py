"""Tokenizers by kind: training one, rebuilding one from its stored state, tokenizer files.

The implementations live in ``char``, ``sentencepiece`` and ``symbols``; the interface in
``tokenizer``. A "pair" tokenizer (seq2seq) is not trained here: train each side with
``train_tokenizer`` and join them with ``PairTokenizer(source, target)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import ConfigError, TokenizerError
from ..files import FORMAT, atomic_write, resolve_checkpoint
from .char import CharTokenizer
from .sentencepiece import CHUNK, SentencePieceTokenizer
from .symbols import PairTokenizer, SymbolTokenizer
from .tokenizer import (
    KINDS,
    SEQ2SEQ_KINDS,
    SUBWORD_KINDS,
    UNK_ID,
    UNK_TEXT,
    Detokenizer,
    TextDetokenizer,
    Tokenizer,
)

__all__ = ["KINDS", "SEQ2SEQ_KINDS", "SUBWORD_KINDS", "UNK_ID", "UNK_TEXT", "CharTokenizer", "Detokenizer",
           "PairTokenizer", "SentencePieceTokenizer", "SymbolTokenizer", "TextDetokenizer", "Tokenizer",
           "load_tokenizer", "save_tokenizer", "tokenizer_from_state", "train_tokenizer"]

TOKENIZER_FORMAT = "charrnn-tokenizer"
TOKENIZER_FORMAT_VERSION = 1


def train_tokenizer(kind: str, text: str, vocab_size: int | None = None, normalize: str | None = None) -> Tokenizer:
    """A tokenizer of ``kind`` trained on ``text`` (the training split only); ``normalize``
    (a Unicode normal form, char tokenizers only) is applied to every text it reads."""
    if normalize is not None and kind != "char":
        raise ConfigError(f"Unicode normalization ({normalize}) is for char tokenizers, not {kind}")
    if kind == "char":
        if vocab_size is not None:
            raise ConfigError("a char tokenizer's vocabulary is the training text's characters: it takes no vocab_size")
        return CharTokenizer.train(text, normalize)
    if kind == "space":
        if vocab_size is not None:
            raise ConfigError("a space tokenizer's vocabulary is the training text's symbols: it takes no vocab_size")
        return SymbolTokenizer.train(text)
    if kind in SUBWORD_KINDS:
        return SentencePieceTokenizer.train(kind, text, vocab_size)
    raise TokenizerError(f"unknown tokenizer kind {kind!r} (one of {', '.join(KINDS)}; "
                         f"for seq2seq also {', '.join(k for k in SEQ2SEQ_KINDS if k not in KINDS)})")


def tokenizer_from_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Tokenizer:
    kind = meta.get("kind")
    if kind == "char":
        chars = meta.get("chars")
        if not isinstance(chars, str):
            raise TokenizerError("stored char tokenizer has no character list")
        return CharTokenizer(chars, meta.get("normalize"))
    if kind == "space":
        symbols = meta.get("symbols")
        if not isinstance(symbols, list):
            raise TokenizerError("stored space tokenizer has no symbol list")
        return SymbolTokenizer(symbols)
    if kind == "pair":
        return PairTokenizer.from_state(meta, tensors, tokenizer_from_state)
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
