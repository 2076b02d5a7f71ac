"""Classification metrics: the confusion matrix and the scores derived from it.

Conventions follow scikit-learn with ``zero_division=0``: a label never predicted has
precision 0, a label never in the gold data has recall 0, and F1 is 0 when both are 0.
Macro-F1 is the unweighted mean over every label in ``labels``, including labels that
occur in neither the gold data nor the predictions (they score F1 0 and so pull the mean
down; scikit-learn does the same when given ``labels``). Accuracy of no examples is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class ClassificationReport:
    labels: list[str]
    confusion: list[list[int]]  # confusion[gold][predicted], C x C

    def __post_init__(self) -> None:
        c = len(self.labels)
        if len(self.confusion) != c or any(len(row) != c for row in self.confusion):
            raise ValueError(f"the confusion matrix must be {c} x {c}, one row and column per label")

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.confusion)

    @property
    def accuracy(self) -> float:
        total = self.total
        correct = sum(self.confusion[i][i] for i in range(len(self.labels)))
        return correct / total if total else 0.0

    @property
    def macro_f1(self) -> float:
        scores = [row["f1"] for row in self.per_label()]
        return sum(scores) / len(scores) if scores else 0.0

    def per_label(self) -> list[dict]:
        """{"label", "precision", "recall", "f1", "support"} for each label, in label order."""
        rows = []
        for i, label in enumerate(self.labels):
            tp = self.confusion[i][i]
            support = sum(self.confusion[i])  # gold i
            predicted = sum(row[i] for row in self.confusion)  # predicted i
            fp, fn = predicted - tp, support - tp
            rows.append({
                "label": label,
                "precision": tp / predicted if predicted else 0.0,
                "recall": tp / support if support else 0.0,
                "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,  # = 2PR / (P + R)
                "support": support,
            })
        return rows

    def as_dict(self) -> dict:
        return {
            "labels": list(self.labels),
            "total": self.total,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_label": self.per_label(),
            "confusion": [list(row) for row in self.confusion],
        }


def confusion_matrix(gold: Sequence[int], predicted: Sequence[int], num_labels: int) -> list[list[int]]:
    """counts[g][p] of examples with gold label g predicted as p (ids in 0..num_labels-1)."""
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1, not {num_labels}")
    g = torch.as_tensor(gold, dtype=torch.long).reshape(-1)  # (N,)
    p = torch.as_tensor(predicted, dtype=torch.long).reshape(-1)  # (N,)
    if g.numel() != p.numel():
        raise ValueError(f"{g.numel()} gold labels but {p.numel()} predictions")
    both = torch.cat([g, p])
    if both.numel() and (int(both.min()) < 0 or int(both.max()) >= num_labels):
        raise ValueError(f"label ids must be between 0 and {num_labels - 1}")
    counts = torch.bincount(g.cpu() * num_labels + p.cpu(), minlength=num_labels * num_labels)
    return counts.view(num_labels, num_labels).tolist()  # (C, C)


def report(gold: Sequence[int], predicted: Sequence[int], labels: list[str]) -> ClassificationReport:
    """The classification report of ``predicted`` against ``gold`` (ids into ``labels``)."""
    return ClassificationReport(list(labels), confusion_matrix(gold, predicted, len(labels)))
