"""``charrnn.train`` from Python (issue 33): the model it returns, the run it keeps, its
typed errors and its progress display, and that it is the very run ``charrnn train`` makes:
a run repeated from its RUN/config.toml on the command line, and a run resumed across the
two front ends, end bitwise where the same run from one front end ends.

Everything here is tiny (a 2x8 model, a few steps, one CPU thread, fp32), so results are
exact; "bitwise" means what it means in test_resume.py: every tensor of the checkpoints
``torch.equal``, and the same losses in metrics.jsonl."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import charrnn
from charrnn.api import Classifier, ConditionalModel, LanguageModel, Seq2SeqModel, SequenceTagger
from charrnn.checkpoint import load_checkpoint, read_metrics
from charrnn.errors import CharrnnError, CheckpointError, ConfigError, CorpusError
from charrnn.training import runfile
from conftest import SCAN_CELLS, TINY_TEXT
from test_cli_classify import separable, write_tsv
from test_cli_conditional import words
from test_cli_seq2seq import ok, reverse, reverse_task, write_pairs
from test_cli_tag import toy_sentences, write_conllu

HW = dict(device="cpu", precision="fp32", threads=1)
# A 2-layer model with dropout (default 0.1), so the RNG state matters to exactness.
# warmup_steps > every step count used here: the learning rate then depends on the step
# only, not on the run's limit, so a run of K steps resumed up to 2K steps follows the
# schedule of a run of 2K steps (past the warmup the cosine decay follows max_steps).
# bptt 16 on the tiny corpus: about 14 windows an epoch, so 2K steps cross an epoch.
LM = dict(hidden_size=8, embedding_dim=6, batch_size=4, bptt=16, eval_interval=5, log_interval=2, warmup_steps=40,
          seed=3, **HW)
K = 10  # a multiple of eval_interval and log_interval: both runs save and log at the same steps


def flags(options: dict) -> list[str]:
    """The command line's spelling of keyword options."""
    out = []
    for name, value in options.items():
        out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def losses(run_dir: Path, event: str, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r["event"] == event]


def assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for name in a:
        assert torch.equal(a[name], b[name]), f"{what}: {name}"


def assert_same_run(a: Path, b: Path, steps: int) -> None:
    """Runs ``a`` and ``b`` bitwise alike: best and latest checkpoints (weights, and the
    latest's whole training state), and every loss logged."""
    for latest in (False, True):
        ca, cb = load_checkpoint(a, latest=latest, resume=latest), load_checkpoint(b, latest=latest, resume=latest)
        assert ca.step == cb.step
        assert_same_tensors(ca.weights, cb.weights, f"{'latest' if latest else 'best'} weights")
        if latest:
            assert ca.step == steps
            assert_same_tensors(ca.resume_tensors, cb.resume_tensors, "training state")
    train = losses(a, "train", "train_loss")
    assert [s for s, _ in train] == list(range(2, steps + 1, 2))
    assert train == losses(b, "train", "train_loss")
    val = losses(a, "eval", "val_loss")
    assert [s for s, _ in val] == list(range(5, steps + 1, 5))
    assert val == losses(b, "eval", "val_loss")


def same_weights(model_a, model_b) -> None:
    assert_same_tensors(model_a.model.state_dict(), model_b.model.state_dict(), "model")


# ----------------------------------------------------------------- a language model


def test_lm_from_python_is_the_run_its_config_toml_repeats_on_the_command_line(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "lm"
    lm = charrnn.train(tiny_corpus, hidden_size=8, embedding_dim=6, batch_size=4, bptt=16, max_steps=K,
                       eval_interval=5, log_interval=2, seed=3, **HW, out=run, progress=False)
    assert capsys.readouterr().out == ""

    assert isinstance(lm, LanguageModel) and lm.task == "lm"
    loaded = charrnn.load(run)
    same_weights(lm, loaded)  # the best checkpoint, as charrnn.load gives it
    assert lm.checkpoint.step == loaded.checkpoint.step == load_checkpoint(run).step
    assert lm.checkpoint.model_config.hidden_size == 8 and lm.checkpoint.train_config.max_steps == K
    text = lm.generate("the ", length=12, seed=1)
    assert isinstance(text, str) and len(text) == 12  # char tokens: 12 tokens, 12 characters
    assert set(text) <= set(TINY_TEXT)
    assert text == loaded.generate("the ", length=12, seed=1)

    # RUN/config.toml: the run's whole configuration, read back by the command line.
    config = run / "config.toml"
    assert config.is_file()
    values = runfile.read(config)
    assert values["task"] == "lm" and values["corpus"] == [str(tiny_corpus)]
    assert values["hidden_size"] == 8 and values["max_steps"] == K and values["bptt"] == 16 and values["seed"] == 3

    again = tmp_path / "again"
    assert ok("train", "--config", config, "--out", again, "--quiet") == ""
    assert_same_run(run, again, K)  # the same run from the shell as from Python
    same_weights(lm, charrnn.load(again))
    # and the command's own RUN/config.toml says the same but for the directory (it may
    # also spell out a default the Python file leaves out: the runs above are the same)
    cli_values = runfile.read(again / "config.toml")
    assert cli_values.pop("out") == str(again) and values.pop("out") == str(run)
    assert {k: cli_values.get(k, "missing") for k in values} == values


# ----------------------------------------------------------------- the other tasks


@pytest.mark.parametrize("cell", ["lstm", *SCAN_CELLS])
def test_classifier_from_python(tmp_path, capsys, cell):
    data = write_tsv(tmp_path / "sep.tsv", separable(40, seed=0))
    clf = charrnn.train(data, task="classify", out=tmp_path / "clf", cell=cell, hidden_size=16, embedding_dim=6, batch_size=8,
                        max_steps=60, lr=0.01, eval_interval=20, **HW, progress=False)
    assert capsys.readouterr().out == ""
    assert type(clf) is Classifier and clf.task == "classify"
    loaded = charrnn.load(tmp_path / "clf")
    same_weights(clf, loaded)
    assert clf.labels == ["a", "z"]
    held = separable(20, seed=1)
    got = clf.predict([t for t, _ in held])
    assert len(got) == 20 and all(len(p) == 1 and p[0][0] in ("a", "z") and 0.5 <= p[0][1] <= 1 for p in got)
    assert sum(p[0][0] == gold for p, (_, gold) in zip(got, held)) >= 18  # a/b texts from y/z texts: learned
    both = clf.predict(["abba"], top_k=2)[0]
    assert sorted(l for l, _ in both) == ["a", "z"] and sum(p for _, p in both) == pytest.approx(1.0, abs=1e-5)
    assert got == loaded.predict([t for t, _ in held])
    assert runfile.read(tmp_path / "clf" / "config.toml")["task"] == "classify"


@pytest.mark.parametrize("cell", ["lstm", *SCAN_CELLS])
def test_tagger_from_python(tmp_path, capsys, cell):
    sentences = toy_sentences(30, 1)
    data = write_conllu(tmp_path / "train.conllu", sentences)
    tagger = charrnn.train(data, task="tag", out=tmp_path / "tag", cell=cell, hidden_size=8, embedding_dim=4, char_hidden_size=4,
                           char_embedding_dim=4, batch_size=4, max_steps=6, eval_interval=3, **HW, progress=False)
    assert capsys.readouterr().out == ""
    assert type(tagger) is SequenceTagger and tagger.task == "tag"
    loaded = charrnn.load(tmp_path / "tag")
    same_weights(tagger, loaded)
    tags = sorted({t for s in sentences for _, t in s})
    assert sorted(tagger.tags) == tags
    inputs = [[w for w, _ in s] for s in sentences[:5]]
    got = tagger.predict(inputs)
    assert [len(p) for p in got] == [len(s) for s in inputs]
    assert all(t in tags and 0 <= p <= 1 for sent in got for t, p in sent)
    assert got == loaded.predict(inputs)
    assert runfile.read(tmp_path / "tag" / "config.toml")["task"] == "tag"


@pytest.mark.parametrize("cell", ["lstm", *SCAN_CELLS])
def test_seq2seq_from_python(tmp_path, capsys, cell):
    train, _ = reverse_task(60, 10)
    data = write_pairs(tmp_path / "rev.tsv", train)
    s2s = charrnn.train(data, task="seq2seq", out=tmp_path / "s2s", cell=cell, hidden_size=8, embedding_dim=4, batch_size=4,
                        max_steps=6, eval_interval=3, **HW, progress=False)
    assert capsys.readouterr().out == ""
    assert type(s2s) is Seq2SeqModel and s2s.task == "seq2seq"
    loaded = charrnn.load(tmp_path / "s2s")
    same_weights(s2s, loaded)
    target_chars = set("".join(reverse(s) for s in train))
    got = s2s.predict(["abc", "dcba"])
    assert len(got) == 2 and all(len(p) == 1 for p in got)
    for [(text, logprob)] in got:
        assert set(text) <= target_chars and logprob <= 0
    assert got == loaded.predict(["abc", "dcba"])
    best = s2s.predict(["abc"], beam=2, n_best=2)[0]
    assert len(best) == 2 and best[0][1] >= best[1][1]
    assert runfile.read(tmp_path / "s2s" / "config.toml")["task"] == "seq2seq"


@pytest.mark.parametrize("cell", ["lstm", *SCAN_CELLS])
def test_conditional_generator_from_python(tmp_path, capsys, cell):
    folder = tmp_path / "words"
    folder.mkdir()
    train = words(0, 40)
    for label, ws in train.items():
        (folder / f"{label}.txt").write_text("".join(w + "\n" for w in ws), encoding="utf-8")
    gen = charrnn.train(folder, task="conditional", out=tmp_path / "cond", cell=cell, hidden_size=8, embedding_dim=4, label_dim=2,
                        batch_size=4, max_steps=6, eval_interval=3, **HW, progress=False)
    assert capsys.readouterr().out == ""
    assert type(gen) is ConditionalModel and gen.task == "conditional"
    loaded = charrnn.load(tmp_path / "cond")
    same_weights(gen, loaded)
    assert sorted(gen.labels) == ["a", "b"]
    letters = set("".join(w for ws in train.values() for w in ws))
    samples = gen.sample("a", n=3, seed=1)
    assert len(samples) == 3
    assert all(isinstance(g.text, str) and set(g.text) <= letters for g in samples)
    assert [g.text for g in samples] == [g.text for g in loaded.sample("a", n=3, seed=1)]
    assert gen.generate("b", seed=2) == loaded.generate("b", seed=2)
    assert runfile.read(tmp_path / "cond" / "config.toml")["task"] == "conditional"


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize("options, pattern", [
    (dict(pool="max"), r"--pool: for --task classify only"),
    (dict(label_dim=3), r"--label-dim: for --task conditional only"),
    (dict(hidden_size=0), r"hidden_size"),
    (dict(cell="foo"), r"cell"),
    (dict(dropout=1.5), r"dropout"),
    (dict(lr=-1.0), r"lr"),
    (dict(hidden_sise=8), r"unknown option.*--hidden-sise"),
    (dict(config="missing.toml"), r"missing.toml"),
    (dict(resume=True, overwrite=True), r"--resume.*--overwrite"),
])
def test_bad_options_are_config_errors(tiny_corpus, tmp_path, capsys, options, pattern):
    with pytest.raises(ConfigError, match=pattern):
        charrnn.train(tiny_corpus, task="lm", out=tmp_path / "bad", **{**dict(max_steps=2, batch_size=4, bptt=8),
                                                                          **HW, **options}, progress=False)
    assert capsys.readouterr().out == ""
    assert not list((tmp_path / "bad").glob("*.safetensors")) if (tmp_path / "bad").exists() else True


def test_missing_data_and_runs_are_typed_errors(tiny_corpus, tmp_path, capsys):
    small = dict(hidden_size=8, max_steps=2, batch_size=4, bptt=8, **HW, progress=False)
    with pytest.raises(CorpusError, match="missing.txt"):
        charrnn.train(tmp_path / "missing.txt", out=tmp_path / "a", **small)
    with pytest.raises(CorpusError, match="missing.tsv"):
        charrnn.train(tmp_path / "missing.tsv", task="classify", out=tmp_path / "b",
                      **{k: v for k, v in small.items() if k != "bptt"})  # a classifier has no BPTT windows
    with pytest.raises(CheckpointError):  # nothing to resume
        charrnn.train(tiny_corpus, out=tmp_path / "none", resume=True, max_steps=2, progress=False)
    with pytest.raises(ConfigError, match="needs data"):
        charrnn.train(**small)
    charrnn.train(tiny_corpus, out=tmp_path / "run", **small)
    with pytest.raises(CharrnnError, match="already holds a training run"):
        charrnn.train(tiny_corpus, out=tmp_path / "run", **small)
    assert charrnn.train(tiny_corpus, out=tmp_path / "run", overwrite=True, **small).task == "lm"
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------- resume across front ends


@pytest.fixture
def whole(tiny_corpus, tmp_path):
    """The reference: 2K steps without a stop, started from Python."""
    run = tmp_path / "whole"
    model = charrnn.train(tiny_corpus, out=run, max_steps=2 * K, **LM, progress=False)
    return run, model


def test_started_from_python_resumed_on_the_command_line_is_bitwise_one_run(tiny_corpus, tmp_path, whole, capsys):
    run = tmp_path / "parts"
    first = charrnn.train(tiny_corpus, out=run, max_steps=K, **LM, progress=False)
    assert load_checkpoint(run, latest=True).step == K and isinstance(first, LanguageModel)
    assert ok("train", tiny_corpus, "--out", run, "--resume", "--max-steps", 2 * K, "--quiet") == ""
    assert_same_run(whole[0], run, 2 * K)
    same_weights(whole[1], charrnn.load(run))
    assert runfile.read(run / "config.toml")["max_steps"] == 2 * K  # the resumed run's new limit
    assert capsys.readouterr().out == ""


def test_started_on_the_command_line_resumed_from_python_is_bitwise_one_run(tiny_corpus, tmp_path, whole, capsys):
    run = tmp_path / "parts"
    assert ok("train", tiny_corpus, "--out", run, "--max-steps", K, *flags(LM), "--quiet") == ""
    assert load_checkpoint(run, latest=True).step == K
    resumed = charrnn.train(tiny_corpus, out=run, resume=True, max_steps=2 * K, progress=False)
    assert isinstance(resumed, LanguageModel)
    assert_same_run(whole[0], run, 2 * K)
    same_weights(whole[1], resumed)
    assert runfile.read(run / "config.toml")["max_steps"] == 2 * K
    assert capsys.readouterr().out == ""


def test_resume_from_python_with_the_run_file_keeps_the_runs_settings(tiny_corpus, tmp_path, whole):
    """``config=RUN/config.toml, resume=True``: the file names the data; the run keeps its own
    settings, and the new limit given by keyword wins."""
    run = tmp_path / "parts"
    charrnn.train(tiny_corpus, out=run, max_steps=K, **LM, progress=False)
    charrnn.train(config=run / "config.toml", resume=True, max_steps=2 * K, progress=False)
    assert_same_run(whole[0], run, 2 * K)


# ----------------------------------------------------------------- progress


def test_progress_draws_on_stderr_and_leaves_stdout_empty(tiny_corpus, tmp_path, capsys):
    charrnn.train(tiny_corpus, out=tmp_path / "run", hidden_size=8, embedding_dim=6, batch_size=4, bptt=8,
                  max_steps=3, eval_interval=3, **HW)  # progress=True is the default
    out, err = capsys.readouterr()
    assert out == ""
    assert re.search(r"^charrnn: 2x8 ", err, re.M), err
    assert re.search(r"^done: 3 steps", err, re.M), err


def test_progress_false_is_silent(tiny_corpus, tmp_path, capsys):
    charrnn.train(tiny_corpus, out=tmp_path / "run", hidden_size=8, embedding_dim=6, batch_size=4, bptt=8,
                  max_steps=3, eval_interval=3, **HW, progress=False)
    assert capsys.readouterr() == ("", "")
