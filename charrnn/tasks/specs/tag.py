"""Sequence tagging (``--task tag``, many-to-many aligned): a tag per token, from CoNLL-U or
token<TAB>tag files."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ...task_configs import TaggerConfig
from ..registry import Option, TaskSpec
from . import best_accuracy_rows, cells, embeddings_file, embeddings_row, state_of, step_rows, training_row


@dataclass(frozen=True)
class TagState:
    """What a tagger's checkpoint keeps besides its weights and character tokenizer."""

    words: list[str] = field(default_factory=list)  # the word vocabulary (lower-cased)
    tags: list[str] = field(default_factory=list)
    tag_column: str | None = None  # the column it was trained on (None: the default)
    word_dropout: float = 0.0
    embeddings: dict[str, Any] | None = None
    freeze_embeddings: bool = False


def setup(run):
    from ..tag import TagTask, TagVocab, prepare_tagged

    path = run.one_file()
    cfg, g = run.train_config, run.given
    embeddings = embeddings_file(g)
    # Every process reads the (small) data itself.
    if run.resumed:
        state = state_of(TagState, run.checkpoint)
        vocab = TagVocab.from_state(run.checkpoint.task_state or {}, run.checkpoint.tokenizer)
        data = prepare_tagged(path, g.get("val_file"), cfg.val_fraction, cfg.seed, state.tag_column, vocab)
        return TagTask(data, run.model_config(), cfg, state.word_dropout, freeze=state.freeze_embeddings,
                       embedding_report=state.embeddings)
    data = prepare_tagged(path, g.get("val_file"), cfg.val_fraction, cfg.seed, g.get("tag_column"))
    return TagTask(data, run.model_config(), cfg, g.get("word_dropout", 0.25), embeddings,
                   bool(g.get("freeze_embeddings")))


def init_names(name: str) -> str | None:
    """A language model's tensor -> the tagger's: each recurrent layer into the forward
    direction of the same layer (the first layer's input columns of the word embedding:
    its leading block; the character features after them start as usual). The embedding
    goes row by row, matched by word (TagTask.init_rows); the output layer is not used."""
    match = re.fullmatch(r"rnn\.(\w+)_l(\d+)", name)
    return f"layers.{match.group(2)}.0.{match.group(1)}_l0" if match else None


def info_rows(ck) -> list[tuple[str, str]]:
    m, mt, state = ck.model_config, ck.metrics, state_of(TagState, ck)
    chars = (f"character encoder 2x{m.char_hidden_size} (embedding {m.char_embedding_dim})" if m.char_hidden_size
             else "no character encoder")
    rows = [("model", f"{cells(m)}, word embedding {m.embedding_dim}, {chars}, dropout {m.dropout}, "
                      f"{'CRF' if m.crf else 'softmax'} over {m.num_tags} tags"),
            ("vocabulary", f"{len(state.words):,} words (lower-cased), {ck.tokenizer.vocab_size} characters"),
            *step_rows(ck)]
    if "val_accuracy" in mt:
        unseen = mt.get("val_unseen_accuracy")
        rows.append(("val accuracy", f"{mt['val_accuracy']:.4f} (tokens; unseen words "
                     f"{'-' if unseen is None or unseen != unseen else f'{unseen:.4f}'}, loss {mt['val_loss']:.4f} nats)"))
    rows += best_accuracy_rows(ck)
    if state.tags:
        rows.append(("tags", f"{', '.join(state.tags)}  ({state.tag_column or 'the default column'})"))
    rows += embeddings_row(state.embeddings, state.freeze_embeddings)
    return [*rows, training_row(ck)]


def start_line(d: dict[str, Any]) -> tuple[str, str]:
    m = d["model_config"]
    chars = f"a {m['char_hidden_size']}-unit character encoder" if m["char_hidden_size"] else "no character encoder"
    return (f"{'bidirectional ' if m['bidirectional'] else ''}{m['cell'].upper()} tagger ({chars}, "
            f"{'CRF' if m['crf'] else 'softmax'} over {len(d['tags'])} tags)",
            f"{d['words']:,} words; {d['train_sentences']:,} training and {d['val_sentences']:,} validation "
            f"sentences ({d['train_tokens']:,} and {d['val_tokens']:,} tokens)")


def done_line(d: dict[str, Any]) -> tuple[str, str]:
    unseen = d.get("val_unseen_accuracy")
    return (f"best val accuracy {d['val_accuracy']:.4f}"
            + (f" (unseen words {unseen:.4f})" if unseen is not None and unseen == unseen else ""),
            f"{d['train_tokens_per_sec']:,.0f} tokens/s")



# The options of this task (charrnn train makes them flags; charrnn.train takes them as keywords).
OPTIONS = (
    Option('tag_column', str, None, 'The tag column: a CoNLL-U column name (default UPOS; XPOS, DEPREL, ...), or in a token<TAB>tag file a column number (default the last).', panel='Tagging', show_default=False),
    Option('crf', bool, False, 'A linear-chain CRF output layer with Viterbi decoding (for BIO/IOB tag sets), instead of a softmax per token.', panel='Tagging', flag='--crf'),
    Option('char_embedding_dim', int, TaggerConfig().char_embedding_dim, "Size of the character embedding of the tagger's word-spelling encoder.", panel='Tagging', min=1),
    Option('char_hidden_size', int, TaggerConfig().char_hidden_size, 'Units per direction of the bidirectional character encoder of each word (0: words only).', panel='Tagging', min=0),
    Option('word_dropout', float, 0.25, 'In training, read a word seen c times as the unknown word with probability a / (a + c) (this is a; 0 is off), so the unknown word learns from rare ones.', panel='Tagging', min=0.0),
)


SPEC = TaskSpec(
    info_title="tagger (a tag per token)",
    name="tag", title="tagger", description="a tag per token (CoNLL-U or token<TAB>tag)",
    model_kind="tagger", config=TaggerConfig, setup=setup, api="charrnn.api.tag:SequenceTagger",
    model_fields=("cell", "layers", "hidden_size", "embedding_dim", "char_embedding_dim", "char_hidden_size",
                  "dropout", "bidirectional", "crf"),
    options=OPTIONS, shared=("bidirectional", "embeddings", "freeze_embeddings"),
    refuses=("tokenizer", "vocab_size", "tokenizer_file", "bptt", "val_max_chars", "replace_invalid"),
    fixed_on_resume=("tag_column", "word_dropout", "embeddings", "freeze_embeddings"),
    train_defaults={"batch_size": 16, "lr": 2e-3, "eval_interval": 200},  # UD English-GUM: benchmarks/tagging_gum.py
    init_names=init_names, init_takes_tokenizer=False,
    default_patience=5,  # early stopping unless a step or epoch limit is given
    # 40 epochs: on GUM (dev file, 3 seeds) best val token accuracy 94.4-94.9 against 93.4 at
    # 20 epochs (test 93.1-93.4 against 92.2), at about 2 minutes on 2 cores (benchmarks/RESULTS.md).
    default_epochs=40, reads="one CoNLL-U or token<TAB>tag file",
    info_rows=info_rows, start_line=start_line, done_line=done_line, export="charrnn.export.tasks:tag",
)
