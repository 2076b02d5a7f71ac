"""What ``charrnn export`` writes for each task: its graphs (graphs.py) and the task's part
of the JSON (its tokenizers, special ids, labels or tags, how to read its input). A task
names its function in its declaration (``TaskSpec.export``); one that names none has no
ONNX export."""

from __future__ import annotations

from typing import Any

from ..tasks.seq2seq import LENGTH_EXTRA
from ..tasks.specs import state_of
from ..tasks.specs.classify import ClassifyState
from ..tasks.specs.conditional import ConditionalState
from ..tasks.specs.seq2seq import Seq2SeqState
from ..tasks.specs.tag import TagState
from .graphs import Graph, classifier_graphs, conditional_graphs, lm_graphs, seq2seq_graphs, tagger_graphs
from .vocab import SUBWORD_SPACE, SideFiles, crf_json, tokenizer_json

Part = tuple[list[Graph], dict[str, Any]]


def lm(model, ck, sides: SideFiles) -> Part:
    tok = ck.tokenizer
    return lm_graphs(model), {
        "tokenizer": sides.side(tok, "text"),
        "special_ids": {"start_id": tok.start_id, "banned_ids": tok.banned_ids, "unk_id": tok.unk_id},
        "input_text": "the prime as it is; with no prime, feed start_id; never sample banned_ids"}


def classify(model, ck, sides: SideFiles) -> Part:
    c = model.config
    return classifier_graphs(model), {
        "tokenizer": sides.side(ck.tokenizer, "text"), "labels": list(state_of(ClassifyState, ck).labels),
        "special_ids": {"pad_id": c.pad_id},
        "input_text": "line breaks become spaces" + SUBWORD_SPACE + "; a text with no tokens is [pad_id]"}


def conditional(model, ck, sides: SideFiles) -> Part:
    c, tok, state = model.config, ck.tokenizer, state_of(ConditionalState, ck)
    return conditional_graphs(model), {
        "tokenizer": sides.side(tok, "text"), "labels": list(state.labels),
        "special_ids": {"pad_id": c.pad_id, "sos_id": c.sos_id, "eos_id": c.eos_id,
                        "banned_ids": sorted({*tok.banned_ids, c.pad_id, c.sos_id})},
        "max_tokens": 2 * int(state.longest) + 10,
        "input_text": "a prime: line breaks become spaces" + SUBWORD_SPACE + "; feed sos_id, then the prime; "
                      "generation ends at eos_id (strip a leading space from subword output)"}


def seq2seq(model, ck, sides: SideFiles) -> Part:
    c, tok, state = model.config, ck.tokenizer, state_of(Seq2SeqState, ck)
    src, tgt = tok.source, tok.target
    return seq2seq_graphs(model), {
        "source": sides.side(src, "source"), "target": sides.side(tgt, "target" if not tok.shared else "source"),
        "shared_vocab": tok.shared,
        "special_ids": {"src_pad_id": c.src_pad_id, "tgt_pad_id": c.tgt_pad_id, "sos_id": c.sos_id,
                        "eos_id": c.eos_id, "banned_ids": sorted({*tgt.banned_ids, c.tgt_pad_id, c.sos_id})},
        "length_ratio": float(state.length_ratio if state.length_ratio is not None else 2.0),
        "length_extra": LENGTH_EXTRA, "reverse_target": bool(state.reverse_target),
        "input_text": "each side as it is" + SUBWORD_SPACE + " (and strip it from the output); an empty source is "
                      "[src_pad_id]; decode from sos_id until eos_id or floor(source tokens * length_ratio) + "
                      "length_extra tokens (EOS not counted); with reverse_target the decoder writes the target "
                      "last token first: reverse its tokens before reading them"}


def tag(model, ck, sides: SideFiles) -> Part:
    c, state = model.config, state_of(TagState, ck)
    chars, _ = tokenizer_json(ck.tokenizer, None)
    out = {"words": {"tokens": [None, *state.words, None], "unk_id": 0, "pad_id": c.word_pad_id,
                     "encode": "a token's id is the index of token.lower() (Python's str.lower) in tokens, unk_id "
                               "when it is not there"},
           "chars": {**chars, "pad_id": c.char_pad_id}, "tags": list(state.tags),
           "input_text": "tokens separated by spaces; each token's spelling is its characters' ids (the token as "
                         "written, not lower-cased)"}
    if model.crf is not None:
        out["crf"] = crf_json(model.crf)
    return tagger_graphs(model), out
