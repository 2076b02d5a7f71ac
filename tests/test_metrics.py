"""Classification metrics against numbers worked out by hand."""

from __future__ import annotations

import json

import pytest
import torch

from charrnn.tasks.metrics import ClassificationReport, confusion_matrix, report

LABELS = ["a", "b", "c"]
GOLD = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]


def test_confusion_matrix_rows_are_gold_columns_predicted():
    assert confusion_matrix(GOLD, PRED, 3) == [
        [2, 1, 1],  # gold a: 2 right, 1 as b, 1 as c
        [1, 2, 0],  # gold b
        [0, 1, 2],  # gold c
    ]
    assert confusion_matrix(torch.tensor(GOLD), torch.tensor(PRED), 3) == confusion_matrix(GOLD, PRED, 3)


def test_three_label_scores_by_hand():
    r = report(GOLD, PRED, LABELS)
    assert r.total == 10
    assert r.accuracy == pytest.approx(6 / 10)
    # a: tp 2, predicted 3, gold 4 -> P 2/3, R 1/2, F1 2PR/(P+R) = (2/3)/(7/6) = 4/7
    # b: tp 2, predicted 4, gold 3 -> P 1/2, R 2/3, F1 4/7
    # c: tp 2, predicted 3, gold 3 -> P 2/3, R 2/3, F1 2/3
    expected = [("a", 2 / 3, 1 / 2, 4 / 7, 4), ("b", 1 / 2, 2 / 3, 4 / 7, 3), ("c", 2 / 3, 2 / 3, 2 / 3, 3)]
    for row, (label, p, rc, f1, support) in zip(r.per_label(), expected):
        assert row["label"] == label and row["support"] == support
        assert row["precision"] == pytest.approx(p)
        assert row["recall"] == pytest.approx(rc)
        assert row["f1"] == pytest.approx(f1)
    assert r.macro_f1 == pytest.approx(38 / 63)  # (4/7 + 4/7 + 2/3) / 3


def test_label_never_predicted_scores_zero():
    r = report([0, 1, 2, 2], [0, 1, 1, 1], LABELS)
    rows = {row["label"]: row for row in r.per_label()}
    assert rows["c"] == {"label": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert rows["b"]["precision"] == pytest.approx(1 / 3)
    assert rows["b"]["recall"] == 1.0
    assert rows["b"]["f1"] == pytest.approx(0.5)
    assert r.accuracy == 0.5
    assert r.macro_f1 == pytest.approx((1 + 0.5 + 0) / 3)


def test_label_absent_from_gold_and_predictions_counts_in_macro_f1():
    r = report([0, 1], [0, 1], ["a", "b", "unused"])
    assert r.accuracy == 1.0
    assert r.per_label()[2] == {"label": "unused", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r.macro_f1 == pytest.approx(2 / 3)


def test_perfect_predictions():
    r = report(GOLD, GOLD, LABELS)
    assert r.accuracy == 1.0 and r.macro_f1 == 1.0
    assert all(row["precision"] == row["recall"] == row["f1"] == 1.0 for row in r.per_label())
    assert r.confusion == [[4, 0, 0], [0, 3, 0], [0, 0, 3]]


def test_empty_and_as_dict():
    empty = report([], [], LABELS)
    assert empty.total == 0 and empty.accuracy == 0.0 and empty.macro_f1 == 0.0
    d = json.loads(json.dumps(report(GOLD, PRED, LABELS).as_dict()))
    assert set(d) == {"labels", "total", "accuracy", "macro_f1", "per_label", "confusion"}
    assert d["labels"] == LABELS and d["total"] == 10 and d["confusion"][0] == [2, 1, 1]
    assert d["macro_f1"] == pytest.approx(38 / 63)


@pytest.mark.parametrize("gold, pred, n", [([0, 1], [0], 2), ([0, 2], [0, 1], 2), ([-1], [0], 2), ([0], [0], 0)])
def test_bad_inputs(gold, pred, n):
    with pytest.raises(ValueError):
        confusion_matrix(gold, pred, n)


def test_report_needs_a_square_matrix_matching_labels():
    with pytest.raises(ValueError):
        ClassificationReport(["a", "b"], [[1, 0]])
