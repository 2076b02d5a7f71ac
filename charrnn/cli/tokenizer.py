"""``charrnn tokenizer train|encode|decode``: tokenizers on their own, like spm_train/encode/decode."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import CharrnnError
from .app import err, tokenizer_app
from .common import JsonOpt, ReplaceOpt, TokenizerFileOpt, TokenizerKind, VocabSizeOpt, new_tokenizer, print_json, write_product


@tokenizer_app.command("train", no_args_is_help=True)
def tokenizer_train(
    corpus: Annotated[list[str], typer.Argument(help="Text files (UTF-8), '-' for stdin, or a registered corpus name; all of it is training text.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Tokenizer file to write (replaced if it exists).", show_default=False)],
    kind: Annotated[TokenizerKind, typer.Option(help="bpe, unigram (subwords), word (SentencePiece words) or char.")] = TokenizerKind.bpe,
    vocab_size: VocabSizeOpt = None,
    replace_invalid: ReplaceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a tokenizer on CORPUS and write it to a file for 'train --tokenizer-file' and 'tokenizer encode'."""
    from ..text.corpora import resolve_corpus
    from ..text.io import read_corpus
    from ..text.tokenizers import save_tokenizer

    text = read_corpus([resolve_corpus(c) for c in corpus], replace_errors=replace_invalid)
    tok = new_tokenizer(kind.value, vocab_size, text)
    save_tokenizer(out, tok)
    tokens = int(tok.encode(text).numel())
    summary = {"kind": tok.kind, "vocab_size": tok.vocab_size, "chars": len(text), "tokens": tokens,
               "chars_per_token": len(text) / max(tokens, 1), "file": str(out)}
    if json_out:
        print_json(summary)
    else:
        err.print(f"charrnn: {tok.kind} tokenizer, {tok.vocab_size:,} tokens, {summary['chars_per_token']:.2f} "
                  f"characters per token on the training text; written to {out}", markup=False, highlight=False)


@tokenizer_app.command("encode", no_args_is_help=True)
def tokenizer_encode(
    file: Annotated[str, typer.Argument(help="Text to encode (UTF-8), or '-' for stdin.", show_default=False)],
    tokenizer: TokenizerFileOpt,
    pieces: Annotated[bool, typer.Option("--pieces", help="Print the pieces (e.g. '▁the', '<0xE2>') instead of ids, for reading; 'tokenizer decode' takes ids.")] = False,
    replace_invalid: ReplaceOpt = False,
) -> None:
    """Print the token ids of each line of FILE, space-separated, one output line per input line."""
    from ..text.io import read_text
    from ..text.tokenizers import load_tokenizer

    tok = load_tokenizer(tokenizer)
    text = read_text(file, replace_errors=replace_invalid)
    lines = tok.encode_lines(text.split("\n"))
    # The line structure carries the line breaks: the output ends with one iff the input does.
    if pieces:
        out = "\n".join(" ".join([tok.piece(i) for i in ids]) for ids in lines)
    else:
        out = "\n".join(" ".join(map(str, ids)) for ids in lines)
    write_product(out)


@tokenizer_app.command("decode", no_args_is_help=True)
def tokenizer_decode(
    file: Annotated[str, typer.Argument(help="Token ids, space-separated, one line of text per line, or '-' for stdin.", show_default=False)],
    tokenizer: TokenizerFileOpt,
) -> None:
    """Turn the token ids of each line of FILE back into a line of text (inverse of 'tokenizer encode')."""
    from ..text.io import read_text
    from ..text.tokenizers import load_tokenizer

    tok = load_tokenizer(tokenizer)
    name = "<stdin>" if file == "-" else file
    lines = read_text(file).split("\n")
    vocab = tok.vocab_size
    texts = []
    for number, line in enumerate(lines, 1):
        try:
            ids = [int(x) for x in line.split()]
        except ValueError:
            bad = next(x for x in line.split() if not x.lstrip("-").isdigit())
            raise CharrnnError(f"{name}: line {number}: {bad!r} is not a token id") from None
        if ids and not 0 <= min(ids) <= max(ids) < vocab:
            bad_id = next(i for i in ids if not 0 <= i < vocab)
            raise CharrnnError(f"{name}: line {number}: token id {bad_id} is outside the vocabulary (0 to {vocab - 1})")
        texts.append(tok.decode(ids))
    write_product("\n".join(texts))
