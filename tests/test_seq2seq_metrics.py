"""Seq2seq metrics against hand-worked numbers, a naive edit distance and direct sacrebleu calls."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from charrnn.tasks.seq2seq_metrics import (
    MISSING_SACREBLEU,
    edit_distance,
    seq2seq_report,
)

# sacrebleu's README example: three hypotheses, two reference streams.
HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
STREAMS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]


def naive_edit_distance(a, b) -> int:
    """The textbook full (len(a)+1) x (len(b)+1) table."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        for j in range(len(b) + 1):
            if i == 0 or j == 0:
                table[i][j] = i + j
            else:
                table[i][j] = min(
                    table[i - 1][j] + 1,
                    table[i][j - 1] + 1,
                    table[i - 1][j - 1] + (0 if a[i - 1] == b[j - 1] else 1),
                )
    return table[len(a)][len(b)]


@pytest.mark.parametrize("a, b, expected", [
    ("kitten", "sitting", 3),  # k->s, e->i, insert g
    ("", "x", 1),
    ("x", "", 1),
    ("", "", 0),
    ("flaw", "lawn", 2),  # delete f, insert n
    ("same", "same", 0),
    (["t͡ʃ", "a"], ["t", "a"], 1),  # an affricate is one symbol: one substitution
    (["t͡ʃ", "a"], ["t͡ʃ", "a"], 0),
    (["t", "ʃ", "a"], ["t͡ʃ", "a"], 2),
])
def test_edit_distance_by_hand(a, b, expected):
    assert edit_distance(a, b) == expected
    assert edit_distance(b, a) == expected


def test_edit_distance_matches_the_full_table():
    rng = random.Random(0)
    for _ in range(400):
        a = [rng.choice("abc") for _ in range(rng.randint(0, 7))]
        b = [rng.choice("abc") for _ in range(rng.randint(0, 7))]
        assert edit_distance(a, b) == naive_edit_distance(a, b), (a, b)


def test_wer_and_ter_on_phones_by_hand():
    predictions = ["k æ t", "d ɔ g", "t͡ʃ ɪ p s", "b ɜ"]
    references = [
        ["k æ t"],  # correct: 0 edits over 3
        ["d ɑ g", "d ɔ g"],  # the second reference matches: correct, 0 edits over 3
        ["ʃ ɪ p", "t͡ʃ ɪ p"],  # wrong; 2 edits to the first, 1 (delete s) to the second over 3
        ["b ɜ d z"],  # wrong: insert d, z, 2 edits over 4
    ]
    r = seq2seq_report(predictions, references, str.split)
    assert (r.sequences, r.correct) == (4, 2)
    assert r.accuracy == 0.5
    assert r.wer == pytest.approx(50.0)
    assert r.ter == pytest.approx(100 * (0 + 0 + 1 + 2) / (3 + 3 + 3 + 4))


def test_ter_ties_go_to_the_shorter_reference_and_characters_work():
    # "a b" is 1 edit from both "a" (length 1) and "a b c" (length 3): the shorter one counts.
    assert seq2seq_report(["a b"], [["a b c", "a"]], str.split).ter == pytest.approx(100.0)
    r = seq2seq_report(["kitten"], [["sitting"]], list)
    assert r.ter == pytest.approx(100 * 3 / 7) and r.correct == 0 and r.wer == 100.0


def test_exact_match_compares_the_texts_as_given():
    r = seq2seq_report(["k æ  t"], [["k æ t"]], str.split)  # two spaces: same phones, other text
    assert r.correct == 0 and r.wer == 100.0 and r.ter == 0.0


def test_bleu_and_chrf_equal_sacrebleu_on_its_example():
    sacrebleu = pytest.importorskip("sacrebleu")
    references = [list(refs) for refs in zip(*STREAMS)]  # per source: both references
    r = seq2seq_report(HYPS, references, str.split)
    assert r.bleu == pytest.approx(sacrebleu.corpus_bleu(HYPS, STREAMS).score)
    assert r.chrf == pytest.approx(sacrebleu.corpus_chrf(HYPS, STREAMS).score)
    assert r.bleu == pytest.approx(48.53, abs=0.01)  # the README's numbers
    assert r.chrf == pytest.approx(59.73, abs=0.01)
    assert r.note is None
    one = seq2seq_report(HYPS, [[ref] for ref in STREAMS[0]], str.split)
    assert one.bleu == pytest.approx(sacrebleu.corpus_bleu(HYPS, STREAMS[:1]).score)
    assert one.chrf == pytest.approx(sacrebleu.corpus_chrf(HYPS, STREAMS[:1]).score)


def test_uneven_reference_counts_do_not_penalise_single_reference_sources():
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps = ["the cat", "It wasn't surprising.", "The man had just bitten him."]
    references = [
        ["the cat sat on the mat today"],  # one long reference, a short hypothesis
        ["It was not unexpected.", "No one was surprised."],
        ["The man bit him first.", "The man had bitten the dog.", "The man had just bitten him."],
    ]
    r = seq2seq_report(hyps, references, str.split)
    # Independent rectangular streams: repeat a source's first reference in its empty slots.
    # A duplicate reference changes neither BLEU (same n-gram maxima, same lengths) nor chrF.
    repeated = [[refs[k] if k < len(refs) else refs[0] for refs in references] for k in range(3)]
    assert r.bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, repeated).score)
    assert r.chrf == pytest.approx(sacrebleu.corpus_chrf(hyps, repeated).score)
    # sacrebleu's own way to vary the count, None for a missing reference, agrees.
    padded = [[refs[k] if k < len(refs) else None for refs in references] for k in range(3)]
    assert r.bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, padded).score)
    # Padding with "" would add a real empty reference, which here lifts the brevity penalty.
    emptied = [[refs[k] if k < len(refs) else "" for refs in references] for k in range(3)]
    assert r.bleu != pytest.approx(sacrebleu.corpus_bleu(hyps, emptied).score)


def test_without_sacrebleu_bleu_and_chrf_are_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # makes `import sacrebleu` fail
    r = seq2seq_report(["a b", "c"], [["a b"], ["d", "c"]], str.split)
    assert r.bleu is None and r.chrf is None
    assert r.note == MISSING_SACREBLEU and "pip install 'charrnn[seq2seq]'" in r.note
    assert (r.correct, r.ter) == (2, 0.0)  # the other scores do not need it
    d = json.loads(json.dumps(r.as_dict()))
    assert set(d) == {"sequences", "correct", "accuracy", "wer", "ter", "bleu", "chrf", "note"}
    assert d["bleu"] is None and d["sequences"] == 2


def test_module_imports_without_sacrebleu():
    code = "import sys; sys.modules['sacrebleu'] = None; import charrnn.tasks.seq2seq_metrics"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("predictions, references", [
    ([], []),
    (["a"], []),
    (["a"], [["a"], ["b"]]),
    (["a", "b"], [["a"], []]),
])
def test_bad_inputs(predictions, references):
    with pytest.raises(ValueError):
        seq2seq_report(predictions, references, str.split)
