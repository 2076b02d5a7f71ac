"""The Python API of a trained sequence classifier."""

from __future__ import annotations

from typing import Any

import torch

from ..checkpoint import Checkpoint
from ..errors import CheckpointError, ConfigError, CorpusError
from ..tasks.classify import classify_ids, encode_texts
from ..tasks.metrics import ClassificationReport, report
from ..tasks.specs import state_of
from ..tasks.specs.classify import ClassifyState
from .base import Model


class Classifier(Model):
    """A trained sequence classifier with its tokenizer and labels."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto"):
        super().__init__(checkpoint, device)
        self.labels: list[str] = list(state_of(ClassifyState, checkpoint).labels)
        self.model = checkpoint.build_model(self.device)
        if len(self.labels) != self.model.config.num_labels:
            raise CheckpointError(f"{checkpoint.path}: the label list does not match the model")

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (an empty text becomes one padding token: it still gets a label)."""
        ids = encode_texts(self.tokenizer, texts)
        pad = self.model.config.pad_id
        return [seq if seq else [pad] for seq in ids]

    def probabilities(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Label probabilities (N, C) of each text, columns in the order of ``labels``."""
        if not texts:
            return torch.zeros(0, len(self.labels))
        logits = classify_ids(self.model, self.encode(texts), self.device, batch_size=batch_size)
        return torch.softmax(logits, dim=-1)

    def predict(self, texts: list[str], top_k: int = 1, batch_size: int = 256) -> list[list[tuple[str, float]]]:
        """For each text, its ``top_k`` most likely labels with their probabilities, best first."""
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, not {top_k}")
        probs = self.probabilities(texts, batch_size)
        k = min(top_k, len(self.labels))
        values, index = probs.topk(k, dim=-1) if len(texts) else (probs, probs.long())
        return [[(self.labels[i], p) for i, p in zip(row_i, row_p)] for row_i, row_p in
                zip(index.tolist(), values.tolist())]

    def evaluate(self, texts: list[str], gold: list[str]) -> ClassificationReport:
        """Accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix."""
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = sorted({g for g in gold if g not in index})
        if unknown:
            raise CorpusError(f"label(s) the model was not trained on: {', '.join(map(repr, unknown))}")
        predicted = self.probabilities(texts).argmax(dim=-1).tolist()
        return report([index[g] for g in gold], predicted, self.labels)

    def evaluate_file(self, path: str, text_column: str | None = None, label_column: str | None = None,
                      **options: Any) -> ClassificationReport:
        """``evaluate`` on the labelled examples of ``path`` (any layout training reads)."""
        from ..text.labelled import read_labelled

        examples = read_labelled(path, text_column, label_column)
        try:
            return self.evaluate([ex.text for ex in examples], [ex.label for ex in examples])
        except CorpusError as e:
            raise CorpusError(f"{path}: {e}") from None

    def prediction_record(self, result: list[tuple[str, float]]) -> dict[str, Any]:
        return {"label": result[0][0], "probability": result[0][1],
                "top": [{"label": lab, "probability": p} for lab, p in result]}

    def prediction_text(self, result: list[tuple[str, float]]) -> str:
        """The label; with several (top_k), each followed by its probability, tab-separated."""
        return "\t".join(lab if len(result) == 1 else f"{lab}\t{p:.4f}" for lab, p in result)
