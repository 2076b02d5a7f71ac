"""Sequence tagging metrics: token, unseen-token and sentence accuracy, per-tag scores, chunks.

A tagger gives one tag per token (part of speech, or a chunking scheme such as BIO for
named entities). The report holds:

* token accuracy over every token, and over the tokens the caller flags as unseen in
  training (the usual out-of-vocabulary figure of POS papers; None when none is flagged);
* sentence accuracy: the share of sentences with every tag right (an empty sentence counts
  as right);
* per-tag precision, recall, F1 and macro-F1 by ``tasks/metrics.py`` (scikit-learn's
  conventions, ``zero_division=0``; macro-F1 averages every tag of the model's list,
  including tags absent from this data, as scikit-learn does when given ``labels``);
* chunk (span) scores when the gold tags form a chunking scheme (``is_bio``): a predicted
  chunk is correct when its type, start and end all equal a gold chunk's in the same
  sentence. Precision, recall and F1 are micro-averaged over all chunks, the numbers the
  CoNLL script conlleval prints (https://www.clips.uantwerpen.be/conll2000/chunking/output.html)
  and seqeval gives in its default mode.

Chunks follow conlleval's reading, which accepts IOB1, IOB2 (BIO) and IOBES alike:

    tags    B-PER I-PER O  I-LOC B-LOC I-ORG  S-PER E-PER
    chunks  [PER      ]    [LOC] [LOC] [ORG]  [PER] [PER]

A chunk starts at B-X and S-X, and at I-X or E-X unless a chunk of type X is open (after
O, after a chunk of another type, or after a chunk closed by E-X or S-X). It ends before
O, B-, S- or a tag of another type, and after E-X and S-X. A tag outside the scheme
(neither O nor B-/I-/E-/S- with a type) counts as O, so a stray label cannot make chunks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from .metrics import ClassificationReport, report

OUTSIDE = "O"
PREFIXES = ("B", "I", "E", "S")  # begin, inside, end, single (IOBES); BIO uses B and I only


@dataclass
class SpanScores:
    precision: float  # correct / predicted chunks, 0 when nothing is predicted
    recall: float  # correct / gold chunks, 0 when there are none
    f1: float  # 2PR / (P + R), 0 when both are 0
    gold: int  # chunks in the gold tags
    predicted: int  # chunks in the predicted tags
    correct: int  # predicted chunks equal to a gold chunk (type, start, end)
    per_type: list[dict]  # {"type", "precision", "recall", "f1", "support"}, types sorted


@dataclass
class TagReport:
    tokens: int
    accuracy: float  # token accuracy, 0..1 (0 without tokens)
    unseen_tokens: int  # tokens flagged unseen in training
    unseen_accuracy: float | None  # token accuracy over them; None when there are none
    sentences: int
    sentence_accuracy: float  # share of sentences with every tag right (0 without sentences)
    per_tag: list[dict]  # {"tag", "precision", "recall", "f1", "support"}, in tag order
    macro_f1: float  # unweighted mean of the per-tag F1
    spans: SpanScores | None  # chunk scores, only when the gold tag set is_bio

    def as_dict(self) -> dict:
        return asdict(self)  # recurses into SpanScores and copies the lists of rows


def _split(tag: str) -> tuple[str, str] | None:
    """(prefix, type) of a chunk tag such as 'B-PER' (the type may hold '-'), else None."""
    prefix, dash, kind = tag.partition("-")
    if dash and kind and prefix in PREFIXES:
        return prefix, kind
    return None


def is_bio(tags: Iterable[str]) -> bool:
    """Whether a tag set is a chunking scheme: every tag is 'O' or 'B-X' / 'I-X' (also accept E-X and S-X, IOBES),
    with at least one non-O tag."""
    chunk_tags = 0
    for tag in tags:
        if tag == OUTSIDE:
            continue
        if _split(tag) is None:
            return False
        chunk_tags += 1
    return chunk_tags > 0


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks (type, start, end exclusive) of one sentence by the CoNLL (conlleval) convention: a chunk starts
    at B-X, at I-X after O or after a tag of another type (IOB1 and IOB2 both read correctly), and at S-X; it ends
    before O, B-, S-, a different type, or after E-X."""
    chunks = []
    open_type, open_start = None, 0  # the chunk being read, if any

    def close(end: int) -> None:
        nonlocal open_type
        if open_type is not None:
            chunks.append((open_type, open_start, end))
            open_type = None

    for i, tag in enumerate(tags):
        split = _split(tag)
        if split is None:  # 'O', or a tag outside the scheme read as 'O'
            close(i)
            continue
        prefix, kind = split
        # B- and S- always begin a chunk; I- and E- continue an open chunk of their type
        # and otherwise begin one (IOB1's first I-, or an ill-formed prediction).
        if prefix in ("B", "S") or open_type != kind:
            close(i)
            open_type, open_start = kind, i
        if prefix in ("E", "S"):
            close(i + 1)
    close(len(tags))
    return chunks


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _scores(correct: int, gold: int, predicted: int) -> tuple[float, float, float]:
    """(precision, recall, F1) from counts; F1 = 2TP / (2TP + FP + FN) = 2PR / (P + R)."""
    return _ratio(correct, predicted), _ratio(correct, gold), _ratio(2 * correct, gold + predicted)


def span_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> SpanScores:
    """Micro-averaged chunk scores over sentences of tags (lengths checked by the caller)."""
    gold_n, predicted_n, correct_n = Counter(), Counter(), Counter()  # per chunk type
    for g, p in zip(gold, predicted):
        g_chunks, p_chunks = spans(g), spans(p)
        gold_n.update(kind for kind, _, _ in g_chunks)
        predicted_n.update(kind for kind, _, _ in p_chunks)
        # chunks of one sentence never overlap, so each is unique and sets match them 1:1
        correct_n.update(kind for kind, _, _ in set(g_chunks) & set(p_chunks))

    per_type = []
    for kind in sorted(gold_n.keys() | predicted_n.keys()):
        precision, recall, f1 = _scores(correct_n[kind], gold_n[kind], predicted_n[kind])
        per_type.append({"type": kind, "precision": precision, "recall": recall, "f1": f1,
                         "support": gold_n[kind]})
    total_gold, total_predicted, total_correct = (sum(c.values()) for c in (gold_n, predicted_n, correct_n))
    precision, recall, f1 = _scores(total_correct, total_gold, total_predicted)
    return SpanScores(precision, recall, f1, total_gold, total_predicted, total_correct, per_type)


def _check_lengths(gold: Sequence[Sequence[str]], other: Sequence[Sequence], what: str) -> None:
    if len(other) != len(gold):
        raise ValueError(f"{len(gold)} gold sentences but {len(other)} sentences of {what}")
    for i, (g, o) in enumerate(zip(gold, other)):
        if len(g) != len(o):
            raise ValueError(f"sentence {i} has {len(g)} gold tags but {len(o)} {what}")


def _tag_list(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
              tags: Sequence[str] | None) -> list[str]:
    """The model's tags in order, then any other tag of the data, sorted."""
    listed = list(tags or [])
    if len(set(listed)) != len(listed):
        duplicates = sorted(t for t, n in Counter(listed).items() if n > 1)
        raise ValueError(f"the tag list repeats {', '.join(map(repr, duplicates))}")
    seen = {t for sentence in (*gold, *predicted) for t in sentence}
    return listed + sorted(seen - set(listed))


def tag_report(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
               unseen: Sequence[Sequence[bool]] | None = None, tags: Sequence[str] | None = None) -> TagReport:
    """Per sentence: gold tags, predicted tags (same lengths: a ValueError naming the sentence index otherwise),
    and which tokens were unseen in training. ``tags``: the model's tag list (per-tag rows in this order; tags
    found only in gold or predictions are added after it, sorted). Span scores are micro-averaged over all
    chunks (conlleval's numbers)."""
    _check_lengths(gold, predicted, "predicted tags")
    if unseen is not None:
        _check_lengths(gold, unseen, "unseen flags")

    labels = _tag_list(gold, predicted, tags)
    index = {tag: i for i, tag in enumerate(labels)}
    gold_ids = [index[t] for sentence in gold for t in sentence]
    predicted_ids = [index[t] for sentence in predicted for t in sentence]
    # per-tag confusion matrix and scores; no tags at all (no tokens, no list) scores nothing
    classes = report(gold_ids, predicted_ids, labels) if labels else ClassificationReport([], [])
    per_tag = [{"tag": row.pop("label"), **row} for row in classes.per_label()]

    unseen_tokens = unseen_correct = 0
    if unseen is not None:
        for g, p, u in zip(gold, predicted, unseen):
            for g_tag, p_tag, flag in zip(g, p, u):
                if flag:
                    unseen_tokens += 1
                    unseen_correct += g_tag == p_tag
    right_sentences = sum(list(g) == list(p) for g, p in zip(gold, predicted))

    gold_tags = {t for sentence in gold for t in sentence}
    return TagReport(
        tokens=classes.total,
        accuracy=classes.accuracy,
        unseen_tokens=unseen_tokens,
        unseen_accuracy=unseen_correct / unseen_tokens if unseen_tokens else None,
        sentences=len(gold),
        sentence_accuracy=_ratio(right_sentences, len(gold)),
        per_tag=per_tag,
        macro_f1=classes.macro_f1,
        spans=span_scores(gold, predicted) if is_bio(gold_tags) else None,
    )
