"""Sequence-to-sequence metrics: exact match, word and token error rates, BLEU and chrF.

Each source has one prediction and one or more references (a source with several correct
targets appears on several lines of the data; the caller groups them). Conventions:

* A prediction is correct when its text equals one of its references exactly (no
  normalisation). Accuracy is correct / sources, a fraction in 0..1.
* WER follows grapheme-to-phoneme papers: the percentage of sources whose prediction is
  wrong, 100 * (1 - accuracy). It is not a word-level edit rate.
* TER is the symbol-level edit rate in percent: 100 * sum(distance) / sum(reference length),
  where each source uses the reference closest to its prediction by edit distance (ties go
  to the shorter reference, the higher and so more cautious rate). Symbols come from the
  caller's ``symbols`` function. TER can exceed 100 when predictions are longer than their
  references; if every chosen reference is empty it is 0 without edits and 100 with any.
* BLEU and chrF are sacrebleu's corpus scores (0..100) with its defaults (13a tokenisation
  for BLEU) on the texts as given, against every reference. sacrebleu is optional: without
  it both are None and ``note`` says how to install it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass

MISSING_SACREBLEU = "BLEU and chrF need sacrebleu: pip install 'charrnn[seq2seq]'"


@dataclass
class Seq2SeqReport:
    sequences: int  # distinct sources scored
    correct: int  # predictions equal to one of their references
    accuracy: float  # correct / sequences, 0..1
    wer: float  # percent of sources predicted wrongly, 100 * (1 - accuracy)
    ter: float  # percent symbol edits against the closest reference
    bleu: float | None  # sacrebleu corpus BLEU, 0..100; None without sacrebleu
    chrf: float | None  # sacrebleu corpus chrF, 0..100; None without sacrebleu
    note: str | None = None  # e.g. why bleu and chrf are None

    def as_dict(self) -> dict:
        return asdict(self)


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance between two symbol sequences (insert, delete, substitute: 1 each)."""
    if len(a) < len(b):
        a, b = b, a  # keep the row over the shorter sequence
    previous = list(range(len(b) + 1))  # distances from a[:0] to each b[:j]
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(
                previous[j] + 1,  # delete x
                current[j - 1] + 1,  # insert y
                previous[j - 1] + (x != y),  # substitute, free when equal
            ))
        previous = current
    return previous[-1]


def _closest(prediction: list[str], references: list[list[str]]) -> tuple[int, int]:
    """(distance, length) of the reference nearest ``prediction``; ties: the shorter."""
    return min((edit_distance(prediction, ref), len(ref)) for ref in references)


def _sacrebleu_scores(predictions: list[str], references: list[list[str]]) -> tuple[float, float] | None:
    """Corpus (BLEU, chrF), or None when sacrebleu is not installed."""
    try:
        import sacrebleu  # optional dependency, imported only when scoring
    except ImportError:
        return None
    # sacrebleu takes reference streams: stream k holds every source's k-th reference.
    # Sources with fewer references are padded with None, which sacrebleu drops per
    # segment; an empty string would instead count as a real (empty) reference.
    width = max(len(refs) for refs in references)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]
    bleu = sacrebleu.BLEU().corpus_score(predictions, streams).score
    chrf = sacrebleu.CHRF().corpus_score(predictions, streams).score
    return float(bleu), float(chrf)


def seq2seq_report(
    predictions: list[str], references: list[list[str]], symbols: Callable[[str], list[str]],
    with_bleu: bool = True,
) -> Seq2SeqReport:
    """Score one prediction per source against that source's references.

    ``symbols`` splits a target text into the symbols TER counts: ``str.split`` for
    space-separated phones, ``list`` for characters. ``with_bleu=False`` leaves BLEU and
    chrF out (None, no note): validation during training needs only the first figures.
    """
    if not predictions:
        raise ValueError("no predictions to score")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    for i, refs in enumerate(references):
        if not refs:
            raise ValueError(f"source {i} has no references")

    correct = sum(prediction in refs for prediction, refs in zip(predictions, references))
    distance = length = 0
    for prediction, refs in zip(predictions, references):
        d, size = _closest(symbols(prediction), [symbols(ref) for ref in refs])
        distance, length = distance + d, length + size
    if length:
        ter = 100.0 * distance / length
    else:
        ter = 100.0 if distance else 0.0

    scores = _sacrebleu_scores(predictions, references) if with_bleu else (None, None)
    bleu, chrf = scores if scores is not None else (None, None)

    n = len(predictions)
    return Seq2SeqReport(
        sequences=n,
        correct=correct,
        accuracy=correct / n,
        wer=100.0 * (n - correct) / n,  # = 100 * (1 - accuracy), without the rounding of 1 - x
        ter=ter,
        bleu=bleu,
        chrf=chrf,
        note=MISSING_SACREBLEU if scores is None else None,
    )
