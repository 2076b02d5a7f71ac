"""The Python API of a trained tagger."""

from __future__ import annotations

from typing import Any

from ..checkpoint import Checkpoint
from ..errors import CheckpointError, CorpusError
from ..tasks.tag_metrics import TagReport
from ..tasks.specs import state_of
from ..tasks.specs.tag import TagState
from .base import Model


class SequenceTagger(Model):
    """A trained tagger with its words, characters and tags."""

    takes_tokens = True

    def __init__(self, checkpoint: Checkpoint, device: str = "auto"):
        from ..tasks.tag import TagVocab

        super().__init__(checkpoint, device)
        self.tag_column = state_of(TagState, checkpoint).tag_column  # the column it was trained on
        try:
            self.vocab = TagVocab.from_state(checkpoint.task_state or {}, checkpoint.tokenizer)
        except CorpusError as e:
            raise CheckpointError(f"{checkpoint.path}: {e}") from None
        self.tags = self.vocab.tags
        self.model = checkpoint.build_model(self.device)
        if len(self.tags) != self.model.config.num_tags:
            raise CheckpointError(f"{checkpoint.path}: the tag list does not match the model")

    def unseen(self, tokens: list[str]) -> list[bool]:
        """Whether each token is unseen in training (its lower-cased form never occurred)."""
        return [w == 0 for w in self.vocab.word_ids(tokens)]

    def predict(self, sentences: list[list[str]], batch_size: int = 128) -> list[list[tuple[str, float]]]:
        """For each sentence (a list of tokens), each token's tag and its probability (with
        a CRF: the Viterbi path, each tag with its posterior marginal). An empty sentence
        gets an empty list."""
        from ..tasks.tag import encode_sentences, tag_encoded

        full = [i for i, s in enumerate(sentences) if s]
        out: list[list[tuple[str, float]]] = [[] for _ in sentences]
        if not full:
            return out
        preds, probs, _ = tag_encoded(self.model, encode_sentences(self.vocab, [sentences[i] for i in full]),
                                      self.device, batch_size=batch_size)
        for i, p, q in zip(full, preds, probs):
            out[i] = [(self.tags[t], pr) for t, pr in zip(p, q)]
        return out

    def evaluate(self, tokens: list[list[str]], gold: list[list[str]], batch_size: int = 128) -> TagReport:
        """Token, unseen-token and sentence accuracy, per-tag precision/recall/F1 and, for
        BIO/IOB tag sets, span precision/recall/F1 (the CoNLL convention)."""
        from ..tasks.tag_metrics import tag_report

        predicted = [[t for t, _ in sent] for sent in self.predict(tokens, batch_size)]
        return tag_report(gold, predicted, [self.unseen(s) for s in tokens], self.tags)

    def evaluate_file(self, path: str, tag_column: str | None = None, **options: Any) -> TagReport:
        """``evaluate`` on a CoNLL-U or token<TAB>tag file (its ``tag_column``, by default
        the one the tagger was trained on)."""
        from ..text.tagged import read_tagged

        sentences = read_tagged(path, tag_column or self.tag_column)
        return self.evaluate([s.tokens for s in sentences], [s.tags for s in sentences])

    def unknown_in(self, text: str) -> int:
        """Words of ``text`` (split at whitespace) never seen in training."""
        return sum(self.unseen(text.split()))

    def prediction_record(self, result: list[tuple[str, float]]) -> dict[str, Any]:
        return {"tags": [t for t, _ in result], "probabilities": [p for _, p in result]}

    def prediction_text(self, result: list[tuple[str, float]]) -> str:
        return " ".join(t for t, _ in result)
