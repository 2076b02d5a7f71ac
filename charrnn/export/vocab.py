"""The JSON written beside the graphs: what a program without charrnn needs to turn text
into the graphs' inputs and their outputs back into text or labels.

Per tokenizer kind (``tokenizer_json``):

    char      tokens[id] is the character of id; id 0 (null) is unknown: any other character
    space     tokens[id] is the symbol of id; the text is split at whitespace, joined by " "
    bpe, unigram, word
              a SentencePiece model file written beside the JSON, its pieces, and the ids
              charrnn adds around SentencePiece (newline, literal U+2581, byte tokens)

Per task (``task_json``): the labels, tags (and a CRF's transition, start and end scores,
for Viterbi), the special ids (padding, SOS, EOS, unknown), and how a text is prepared
before it is encoded (``input_text``), as charrnn itself does it.
"""

from __future__ import annotations

from typing import Any

from ..tasks.seq2seq import LENGTH_EXTRA
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


def task_json(task: str, kind: str, model, tokenizer: Tokenizer, task_state: dict[str, Any],
              spm_files: dict[str, str]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The task's part of the JSON, and the SentencePiece model files to write (name -> bytes).
    ``spm_files`` maps a side ("text", "source", "target") to the file name to use."""
    c = model.config
    files: dict[str, bytes] = {}

    def side(tok: Tokenizer, name: str) -> dict[str, Any]:
        data, proto = tokenizer_json(tok, spm_files[name] if tok.kind in SUBWORD_KINDS else None)
        if proto is not None:
            files[spm_files[name]] = proto
        return data

    subword_space = "; for bpe, unigram and word tokenizers put one space before the text"
    if kind == "lm":
        return {"tokenizer": side(tokenizer, "text"),
                "special_ids": {"start_id": tokenizer.start_id, "banned_ids": tokenizer.banned_ids,
                                "unk_id": tokenizer.unk_id},
                "input_text": "the prime as it is; with no prime, feed start_id; never sample banned_ids"}, files
    if kind == "classifier":
        return {"tokenizer": side(tokenizer, "text"), "labels": list(task_state.get("labels", [])),
                "special_ids": {"pad_id": c.pad_id},
                "input_text": "line breaks become spaces" + subword_space + "; a text with no tokens is [pad_id]"}, files
    if kind == "conditional":
        return {"tokenizer": side(tokenizer, "text"), "labels": list(task_state.get("labels", [])),
                "special_ids": {"pad_id": c.pad_id, "sos_id": c.sos_id, "eos_id": c.eos_id,
                                "banned_ids": sorted({*tokenizer.banned_ids, c.pad_id, c.sos_id})},
                "max_tokens": 2 * int(task_state.get("longest", 50)) + 10,
                "input_text": "a prime: line breaks become spaces" + subword_space + "; feed sos_id, then the "
                              "prime; generation ends at eos_id (strip a leading space from subword output)"}, files
    if kind == "seq2seq":
        src, tgt = tokenizer.source, tokenizer.target
        return {"source": side(src, "source"), "target": side(tgt, "target" if not tokenizer.shared else "source"),
                "shared_vocab": tokenizer.shared,
                "special_ids": {"src_pad_id": c.src_pad_id, "tgt_pad_id": c.tgt_pad_id, "sos_id": c.sos_id,
                                "eos_id": c.eos_id, "banned_ids": sorted({*tgt.banned_ids, c.tgt_pad_id, c.sos_id})},
                "length_ratio": float(task_state.get("length_ratio", 2.0)), "length_extra": LENGTH_EXTRA,
                "reverse_target": bool(task_state.get("reverse_target", False)),
                "input_text": "each side as it is" + subword_space + " (and strip it from the output); an empty "
                              "source is [src_pad_id]; decode from sos_id until eos_id or "
                              "floor(source tokens * length_ratio) + length_extra tokens (EOS not counted); "
                              "with reverse_target the decoder writes the target last token first: reverse its "
                              "tokens before reading them"}, files
    if kind == "tagger":
        words = list(task_state.get("words", []))
        chars, _ = tokenizer_json(tokenizer, None)
        out = {"words": {"tokens": [None, *words, None], "unk_id": 0, "pad_id": c.word_pad_id,
                         "encode": "a token's id is the index of token.lower() (Python's str.lower) in tokens, "
                                   "unk_id when it is not there"},
               "chars": {**chars, "pad_id": c.char_pad_id}, "tags": list(task_state.get("tags", [])),
               "input_text": "tokens separated by spaces; each token's spelling is its characters' ids (the token as "
                             "written, not lower-cased)"}
        if model.crf is not None:
            out["crf"] = crf_json(model.crf)
        return out, files
    raise ValueError(f"no ONNX export for model kind {kind!r}")
