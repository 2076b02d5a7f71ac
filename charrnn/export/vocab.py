"""The JSON written beside the graphs: what a program without charrnn needs to turn text
into the graphs' inputs and their outputs back into text or labels.

Per tokenizer kind (``tokenizer_json``):

    char      tokens[id] is the character of id; id 0 (null) is unknown: any other character
    space     tokens[id] is the symbol of id; the text is split at whitespace, joined by " "
    bpe, unigram, word
              a SentencePiece model file written beside the JSON, its pieces, and the ids
              charrnn adds around SentencePiece (newline, literal U+2581, byte tokens)

Per task (export/tasks.py, with ``SideFiles``): the labels, tags (and a CRF's transition, start and end scores,
for Viterbi), the special ids (padding, SOS, EOS, unknown), and how a text is prepared
before it is encoded (``input_text``), as charrnn itself does it.
"""

from __future__ import annotations

from typing import Any

from ..text.sentencepiece import CHUNK, RESERVED, SentencePieceTokenizer
from ..text.tokenizer import SUBWORD_KINDS, UNK_ID, Tokenizer

SPM_ENCODE = (
    "Split the text at '\\n' (each line break is newline_id) and at U+2581 (each is literal_id); cut a "
    "segment longer than chunk characters just before a space; encode each segment with the "
    "SentencePiece model (no extra options: its normalizer is identity, no dummy prefix); for kind "
    "'word', replace every run of the byte ids of E2 96 81 by space_id.")
SPM_DECODE = (
    "Concatenate the bytes of the ids: a byte piece '<0xNN>' is that byte, literal_id is the bytes of "
    "U+2581 kept as U+2581, space_id is a space, any other piece is its UTF-8 with U+2581 read as a "
    "space; decode as UTF-8, invalid sequences as U+FFFD.")


def tokenizer_json(tok: Tokenizer, model_file: str | None) -> tuple[dict[str, Any], bytes | None]:
    """The JSON of one (non-pair) tokenizer and, for SentencePiece kinds, the model bytes to
    write as ``model_file``."""
    base: dict[str, Any] = {"kind": tok.kind, "vocab_size": tok.vocab_size}
    if tok.kind == "char":
        tokens = [None] + [tok.token_text(i) for i in range(1, tok.vocab_size)]
        form = getattr(tok, "normalize", None)
        if form:  # the text is brought to a Unicode normal form first (and decoded text recomposed)
            base["normalize"] = form
        return {**base, "unk_id": UNK_ID, "tokens": tokens,
                "encode": "one id per Unicode code point" + (f" of the text in Unicode {form}" if form else "")
                          + ": its index in tokens, unk_id when it is not there",
                "decode": "concatenate tokens[id]; unk_id decodes as U+FFFD"
                          + ({"NFD": "; then compose to NFC", "NFKD": "; then compose to NFKC"}.get(form, ""))}, None
    if tok.kind == "space":
        tokens = [None] + [tok.token_text(i) for i in range(1, tok.vocab_size)]
        return {**base, "unk_id": UNK_ID, "tokens": tokens,
                "encode": "split the text at whitespace; each symbol's index in tokens, unk_id when it is not there",
                "decode": "join tokens[id] with single spaces; unk_id decodes as U+FFFD"}, None
    if tok.kind in SUBWORD_KINDS and isinstance(tok, SentencePieceTokenizer):
        pieces = [tok.piece(i) for i in range(tok.vocab_size)]
        return {**base, "model_file": model_file, "pieces": pieces, "unk_id": UNK_ID, "literal_id": tok.literal_id,
                "space_id": tok.space_id, "newline_id": tok.newline_id, "first_byte_id": RESERVED - 256,
                "chunk": tok.chunk or CHUNK, "encode": SPM_ENCODE, "decode": SPM_DECODE}, tok.proto
    raise ValueError(f"no JSON for tokenizer kind {tok.kind!r}")


def crf_json(crf) -> dict[str, Any]:
    """A CRF's scores as lists of floats (float32 values, exact in JSON)."""
    return {"transitions": crf.transitions.detach().float().tolist(), "start": crf.start.detach().float().tolist(),
            "end": crf.end.detach().float().tolist(),
            "viterbi": "score(y) = start[y_0] + sum_t emissions[t, y_t] + sum_{t>0} transitions[y_{t-1}, y_t] "
                       "+ end[y_last], over each sentence's real positions; the best path maximises it"}


class SideFiles:
    """The JSON of each tokenizer side of an export, collecting the SentencePiece model
    files to write beside it (``names`` maps a side, "text", "source" or "target", to the
    file name to use)."""

    def __init__(self, names: dict[str, str]):
        self.names = names
        self.files: dict[str, bytes] = {}

    def side(self, tok: Tokenizer, name: str) -> dict[str, Any]:
        data, proto = tokenizer_json(tok, self.names[name] if tok.kind in SUBWORD_KINDS else None)
        if proto is not None:
            self.files[self.names[name]] = proto
        return data


SUBWORD_SPACE = "; for bpe, unigram and word tokenizers put one space before the text"
