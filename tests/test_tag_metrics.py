"""Tagging metrics against hand-worked numbers, seqeval (chunks) and scikit-learn (per tag)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import warnings

import pytest

from charrnn.tasks.tag_metrics import SpanScores, TagReport, is_bio, spans, tag_report

TYPES = ("PER", "LOC", "ORG")

# Two POS-tagged sentences. Errors: sentence 0 tokens 2 (VERB as NOUN), 3 (DET as NOUN)
# and 4 (NOUN as ADJ, a tag outside the model's list); sentence 1 is all right.
POS_GOLD = [["DET", "NOUN", "VERB", "DET", "NOUN"], ["NOUN", "VERB", "ADV"]]
POS_PRED = [["DET", "NOUN", "NOUN", "NOUN", "ADJ"], ["NOUN", "VERB", "ADV"]]
POS_UNSEEN = [[False, True, True, False, True], [True, False, False]]
POS_TAGS = ["DET", "NOUN", "PRON", "VERB", "ADV"]  # PRON occurs nowhere in the data


def test_accuracies_by_hand():
    r = tag_report(POS_GOLD, POS_PRED, POS_UNSEEN, tags=POS_TAGS)
    assert r.tokens == 8 and r.sentences == 2
    assert r.accuracy == pytest.approx(5 / 8)  # 2 right in sentence 0, 3 in sentence 1
    # unseen: s0 t1 right, s0 t2 wrong, s0 t4 wrong, s1 t0 right -> 2 of 4
    assert r.unseen_tokens == 4 and r.unseen_accuracy == pytest.approx(1 / 2)
    assert r.sentence_accuracy == pytest.approx(1 / 2)  # only sentence 1 is all right
    assert r.spans is None  # a POS tag set is not a chunking scheme


def test_per_tag_scores_by_hand():
    r = tag_report(POS_GOLD, POS_PRED, tags=POS_TAGS)
    # Rows in the model's order, then ADJ (found only in the predictions).
    # DET:  gold s0t0 s0t3,      predicted s0t0,                 tp 1 -> P 1,   R 1/2, F1 2/3
    # NOUN: gold s0t1 s0t4 s1t0, predicted s0t1 s0t2 s0t3 s1t0,  tp 2 -> P 1/2, R 2/3, F1 4/7
    # PRON: nowhere                                                   -> 0,     0,     0
    # VERB: gold s0t2 s1t1,      predicted s1t1,                 tp 1 -> P 1,   R 1/2, F1 2/3
    # ADV:  gold s1t2,           predicted s1t2,                 tp 1 -> 1,     1,     1
    # ADJ:  gold none,           predicted s0t4,                 tp 0 -> 0,     0,     0
    expected = [
        ("DET", 1, 1 / 2, 2 / 3, 2),
        ("NOUN", 1 / 2, 2 / 3, 4 / 7, 3),
        ("PRON", 0, 0, 0, 0),
        ("VERB", 1, 1 / 2, 2 / 3, 2),
        ("ADV", 1, 1, 1, 1),
        ("ADJ", 0, 0, 0, 0),
    ]
    assert [row["tag"] for row in r.per_tag] == [e[0] for e in expected]
    for row, (tag, p, rc, f1, support) in zip(r.per_tag, expected):
        assert set(row) == {"tag", "precision", "recall", "f1", "support"}
        assert row["support"] == support, tag
        assert row["precision"] == pytest.approx(p), tag
        assert row["recall"] == pytest.approx(rc), tag
        assert row["f1"] == pytest.approx(f1), tag
    # (2/3 + 4/7 + 0 + 2/3 + 1 + 0) / 6 = (61/21) / 6
    assert r.macro_f1 == pytest.approx(61 / 126)


def test_without_a_tag_list_rows_are_sorted():
    r = tag_report(POS_GOLD, POS_PRED)
    assert [row["tag"] for row in r.per_tag] == ["ADJ", "ADV", "DET", "NOUN", "VERB"]


def test_unseen_flags_absent_or_all_false():
    for unseen in (None, [[False] * 5, [False] * 3]):
        r = tag_report(POS_GOLD, POS_PRED, unseen)
        assert r.unseen_tokens == 0 and r.unseen_accuracy is None


def test_no_data():
    r = tag_report([], [])
    assert (r.tokens, r.accuracy, r.sentences, r.sentence_accuracy, r.per_tag, r.macro_f1, r.spans) == (
        0, 0.0, 0, 0.0, [], 0.0, None)
    r = tag_report([[]], [[]], [[]], tags=["O", "B-PER"])
    assert r.sentences == 1 and r.sentence_accuracy == 1.0  # an empty sentence has no wrong tag
    assert [(row["tag"], row["support"], row["f1"]) for row in r.per_tag] == [("O", 0, 0.0), ("B-PER", 0, 0.0)]
    assert r.spans is None  # no gold tags at all, so no chunking scheme to score


@pytest.mark.parametrize("predicted, unseen, message", [
    ([["DET", "NOUN", "VERB", "DET", "NOUN"], ["NOUN", "VERB"]], None, "sentence 1 has 3 gold tags but 2"),
    ([["DET"], ["NOUN", "VERB", "ADV"]], None, "sentence 0 has 5 gold tags but 1"),
    ([["DET", "NOUN", "VERB", "DET", "NOUN"]], None, "2 gold sentences but 1"),
    (POS_GOLD, [[True] * 5, [True] * 4], "sentence 1 has 3 gold tags but 4 unseen flags"),
    (POS_GOLD, [[True] * 5], "2 gold sentences but 1 sentences of unseen flags"),
])
def test_mismatched_lengths_name_the_sentence(predicted, unseen, message):
    with pytest.raises(ValueError, match=message):
        tag_report(POS_GOLD, predicted, unseen)


def test_a_repeated_tag_in_the_list_is_refused():
    with pytest.raises(ValueError, match="repeats 'NOUN'"):
        tag_report(POS_GOLD, POS_PRED, tags=["NOUN", "DET", "NOUN"])


def test_as_dict_is_json_ready_with_every_field():
    for gold, pred in ((POS_GOLD, POS_PRED), (NER_GOLD, NER_PRED)):
        r = tag_report(gold, pred, tags=None)
        d = r.as_dict()
        assert set(d) == {f.name for f in dataclasses.fields(TagReport)}
        assert json.loads(json.dumps(d)) == d
    assert set(d["spans"]) == {f.name for f in dataclasses.fields(SpanScores)}
    assert d["spans"]["per_type"][0] == {"type": "LOC", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


# --- is_bio ---------------------------------------------------------------------------

@pytest.mark.parametrize("tags", [
    ["O", "B-PER", "I-PER"],
    ["B-LOC"],  # no O is fine
    ["I-ORG", "O"],  # IOB1 without B-
    ["O", "S-PER", "B-PER", "I-PER", "E-PER"],  # IOBES
    ["B-MISC-X", "O"],  # a type may hold a dash
    {"O", "B-PER"},  # any iterable
])
def test_is_bio_true(tags):
    assert is_bio(tags)
    assert is_bio(iter(tags))  # read once


@pytest.mark.parametrize("tags", [
    ["NOUN", "VERB", "DET"],  # a POS tag set
    ["O"],  # 'O' alone has no chunk
    [],
    ["O", "B-PER", "NOUN"],  # one tag outside the scheme
    ["B-"],  # no type
    ["b-PER"],  # prefixes are upper case
    ["X-PER", "O"],
    ["B"],
])
def test_is_bio_false(tags):
    assert not is_bio(tags)


# --- spans ----------------------------------------------------------------------------

@pytest.mark.parametrize("tags, expected", [
    # IOB2
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
    (["O", "B-PER", "I-PER", "I-PER", "O", "O", "B-ORG", "I-ORG"], [("PER", 1, 4), ("ORG", 6, 8)]),
    # IOB1: I- starts a chunk; B- only splits two adjacent chunks of one type
    (["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5)]),
    (["O", "I-ORG"], [("ORG", 1, 2)]),
    # the type changes inside an I- run
    (["B-PER", "I-PER", "I-LOC", "I-LOC"], [("PER", 0, 2), ("LOC", 2, 4)]),
    (["I-PER", "I-ORG", "I-PER"], [("PER", 0, 1), ("ORG", 1, 2), ("PER", 2, 3)]),
    (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),
    # IOBES
    (["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "S-ORG", "S-ORG"],
     [("PER", 0, 1), ("LOC", 1, 4), ("ORG", 5, 6), ("ORG", 6, 7)]),
    (["B-PER", "E-PER", "I-PER", "E-PER"], [("PER", 0, 2), ("PER", 2, 4)]),  # I- after E- starts anew
    (["O", "E-PER"], [("PER", 1, 2)]),  # a lone E- is a chunk of one
    (["B-PER", "S-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    # B- directly after B- of the same type
    (["B-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),
    # a chunk running to the end of the sentence
    (["O", "B-LOC", "I-LOC"], [("LOC", 1, 3)]),
    (["I-LOC"], [("LOC", 0, 1)]),
    # edges
    ([], []),
    (["O", "O"], []),
    (["B-MISC-X", "I-MISC-X"], [("MISC-X", 0, 2)]),
    (["B-PER", "NOUN", "I-PER"], [("PER", 0, 1), ("PER", 2, 3)]),  # a stray tag reads as O
])
def test_spans(tags, expected):
    assert spans(tags) == expected


def _seqeval_chunks(tags):
    """seqeval's chunks (end inclusive there) as (type, start, end exclusive)."""
    from seqeval.metrics.sequence_labeling import get_entities
    return sorted((kind, start, end + 1) for kind, start, end in get_entities(list(tags)))


def test_spans_match_seqeval_on_every_short_sequence():
    pytest.importorskip("seqeval")
    # Every sequence of up to 4 tags over O and the four prefixes of two types: 7380 cases,
    # so every pair of neighbouring tags is checked in every position.
    alphabet = ["O"] + [f"{p}-{t}" for p in "BIES" for t in ("A", "B")]
    for n in range(5):
        for tags in itertools.product(alphabet, repeat=n):
            assert sorted(spans(tags)) == _seqeval_chunks(tags), tags


# --- chunk scores ---------------------------------------------------------------------

# gold chunks: PER(0,2) LOC(3,4) | ORG(0,1); predicted: PER(0,2) ORG(3,4) | ORG(0,2)
NER_GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
NER_PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG"]]


def test_span_scores_by_hand():
    s = tag_report(NER_GOLD, NER_PRED).spans
    # 3 gold, 3 predicted, only PER(0,2) right -> P = R = F1 = 1/3
    assert (s.gold, s.predicted, s.correct) == (3, 3, 1)
    assert (s.precision, s.recall, s.f1) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    # LOC: 1 gold, none predicted; ORG: 1 gold, 2 predicted, none right; PER: 1 of 1
    assert s.per_type == [
        {"type": "LOC", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        {"type": "ORG", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        {"type": "PER", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    ]


def test_chunks_do_not_cross_sentences():
    # One chunk per sentence, not a single PER(1, 3) over the boundary.
    s = tag_report([["O", "B-PER"], ["I-PER", "O"]], [["O", "B-PER"], ["I-PER", "O"]]).spans
    assert (s.gold, s.predicted, s.correct, s.f1) == (2, 2, 2, 1.0)


def test_spans_scored_when_gold_is_bio_even_with_stray_predictions():
    s = tag_report([["B-PER", "O"]], [["B-PER", "NOUN"]]).spans
    assert (s.gold, s.predicted, s.correct) == (1, 1, 1)


def _random_chunks(rng: random.Random, n: int) -> list[tuple[str, int, int]]:
    """Non-overlapping chunks over n tokens, often adjacent and of one type."""
    chunks, i = [], 0
    while i < n:
        if rng.random() < 0.35:
            i += 1  # an O
            continue
        end = min(n, i + rng.randint(1, 3))
        chunks.append((rng.choice(TYPES), i, end))
        i = end
    return chunks


def _encode(chunks: list[tuple[str, int, int]], n: int, scheme: str) -> list[str]:
    tags = ["O"] * n
    previous = None
    for kind, start, end in chunks:
        for i in range(start, end):
            tags[i] = f"I-{kind}"
        if scheme == "iob2":
            tags[start] = f"B-{kind}"
        elif scheme == "iob1":  # B- only where a chunk follows one of its type directly
            if previous is not None and previous[0] == kind and previous[2] == start:
                tags[start] = f"B-{kind}"
        else:  # iobes
            if end - start == 1:
                tags[start] = f"S-{kind}"
            else:
                tags[start], tags[end - 1] = f"B-{kind}", f"E-{kind}"
        previous = (kind, start, end)
    return tags


def _random_data(seed: int, scheme: str, sentences: int = 300):
    rng = random.Random(seed)
    prefixes = "BIES" if scheme == "iobes" else "BI"
    alphabet = ["O"] + [f"{p}-{t}" for p in prefixes for t in TYPES]
    gold, predicted = [], []
    for _ in range(sentences):
        n = rng.randint(0, 12)
        chunks = _random_chunks(rng, n)
        gold.append(_encode(chunks, n, scheme))
        if rng.random() < 0.5:  # re-encoded from shifted chunks: well-formed but different
            moved = [(k if rng.random() < 0.8 else rng.choice(TYPES), s, min(n, e + rng.randint(-1, 1)))
                     for k, s, e in chunks]
            moved = [c for c in moved if c[1] < c[2]]
            predicted.append(_encode(moved, n, scheme))
        else:  # token noise: often ill-formed (I- after O, a type change inside a chunk)
            predicted.append([t if rng.random() < 0.75 else rng.choice(alphabet) for t in gold[-1]])
    return gold, predicted


@pytest.mark.parametrize("scheme, seed", [("iob2", 0), ("iob1", 1), ("iobes", 2)])
def test_span_scores_match_seqeval(scheme, seed):
    pytest.importorskip("seqeval")
    from seqeval import metrics as seqeval

    gold, predicted = _random_data(seed, scheme)
    s = tag_report(gold, predicted).spans
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns about types never predicted
        assert s.precision == pytest.approx(seqeval.precision_score(gold, predicted), abs=1e-9)
        assert s.recall == pytest.approx(seqeval.recall_score(gold, predicted), abs=1e-9)
        assert s.f1 == pytest.approx(seqeval.f1_score(gold, predicted), abs=1e-9)
        theirs = seqeval.classification_report(gold, predicted, output_dict=True)
    assert 0 < s.correct < min(s.gold, s.predicted)  # the data tests something
    assert s.gold == theirs["micro avg"]["support"]
    per_type = {k: v for k, v in theirs.items() if not k.endswith(" avg")}
    assert [row["type"] for row in s.per_type] == sorted(per_type)
    for row in s.per_type:
        ref = per_type[row["type"]]
        assert row["support"] == ref["support"]
        for mine, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert row[mine] == pytest.approx(ref[key], abs=1e-9), (row["type"], mine)


# --- per-tag scores against scikit-learn ----------------------------------------------

def test_per_tag_scores_match_sklearn():
    pytest.importorskip("sklearn")
    from sklearn import metrics as sk

    rng = random.Random(7)
    data_tags = ["NOUN", "VERB", "ADJ", "DET", "ADP", "PUNCT"]
    model_tags = ["PUNCT", "VERB", "NOUN", "INTJ", "DET"]  # INTJ unused; ADJ, ADP come after, sorted
    gold = [[rng.choice(data_tags) for _ in range(rng.randint(1, 9))] for _ in range(200)]
    predicted = [[g if rng.random() < 0.6 else rng.choice(data_tags) for g in sentence] for sentence in gold]
    r = tag_report(gold, predicted, tags=model_tags)

    order = [row["tag"] for row in r.per_tag]
    assert order == model_tags + ["ADJ", "ADP"]
    flat_gold = [t for sentence in gold for t in sentence]
    flat_pred = [t for sentence in predicted for t in sentence]
    p, rc, f1, support = sk.precision_recall_fscore_support(flat_gold, flat_pred, labels=order, zero_division=0)
    for i, row in enumerate(r.per_tag):
        assert row["precision"] == pytest.approx(p[i], abs=1e-9)
        assert row["recall"] == pytest.approx(rc[i], abs=1e-9)
        assert row["f1"] == pytest.approx(f1[i], abs=1e-9)
        assert row["support"] == support[i]
    macro = sk.f1_score(flat_gold, flat_pred, labels=order, average="macro", zero_division=0)
    assert r.macro_f1 == pytest.approx(macro, abs=1e-9)
    assert r.accuracy == pytest.approx(sk.accuracy_score(flat_gold, flat_pred), abs=1e-9)
    assert r.tokens == len(flat_gold)
