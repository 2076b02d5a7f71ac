"""One surface for every loaded model (api/base.py): each task's ``evaluate_file`` reads a
file as its training reads it and gives the same report as ``evaluate`` on the same
examples; ``count_unknown`` takes a text or texts; reports have ``as_dict``. Checked on the
small checkpoints of tests/data/release-0.1.0-tasks."""

from __future__ import annotations

from pathlib import Path

import charrnn
from charrnn.api import Model

HERE = Path(__file__).parent / "data" / "release-0.1.0-tasks"


def _load(task):
    model = charrnn.load(HERE / f"{task}.safetensors", device="cpu")
    assert isinstance(model, Model) and model.task == task and model.info()["task"] == task
    return model


def test_a_classifier_reads_its_labelled_file(tmp_path):
    clf = _load("classify")
    texts, gold = ["the film was lovely", "so dull", "what a cold film"], ["pos", "neg", "neg"]
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{g}\n" for t, g in zip(texts, gold)))
    assert clf.evaluate_file(str(tmp_path / "t.tsv")).as_dict() == clf.evaluate(texts, gold).as_dict()
    assert clf.count_unknown(texts) == sum(clf.count_unknown(t) for t in texts)


def test_a_tagger_reads_its_tagged_file(tmp_path):
    tagger = _load("tag")
    sents = [["the", "big", "cat", "runs", "."], ["A", "dog", "sleeps", "."]]
    gold = [["DET", "ADJ", "NOUN", "VERB", "PUNCT"], ["DET", "NOUN", "VERB", "PUNCT"]]
    (tmp_path / "t.tsv").write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(s, g))
                                              for s, g in zip(sents, gold)) + "\n")
    assert tagger.evaluate_file(str(tmp_path / "t.tsv")).as_dict() == tagger.evaluate(sents, gold).as_dict()


def test_an_encoder_decoder_reads_its_pairs(tmp_path):
    s2s = _load("seq2seq")
    sources = ["abc", "dca", "bbad"]
    (tmp_path / "p.tsv").write_text("".join(f"{s}\t{s[::-1]}\n" for s in sources))
    got = s2s.evaluate_file(str(tmp_path / "p.tsv"), beam=2).as_dict()
    assert got == s2s.evaluate(sources, [[s[::-1]] for s in sources], beam=2).as_dict()
    scored = s2s.perplexity(sources, [s[::-1] for s in sources])  # an EvalResult, as a generator's
    assert set(scored.as_dict()) >= {"loss", "perplexity", "tokens", "bpc"}
    assert scored.tokens == sum(len(s) + 1 for s in sources)  # every target token and EOS


def test_generators_say_so():
    lm, gen = _load("lm"), _load("conditional")
    assert lm.generates and gen.generates and gen.conditioned and not lm.conditioned
    assert not _load("classify").generates
