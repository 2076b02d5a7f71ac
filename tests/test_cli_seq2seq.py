"""``charrnn train --task seq2seq``, ``predict``, ``eval accuracy``, ``eval perplexity`` and
``info`` end to end on a tiny synthetic task: reverse a string of a few letters, written as
space-separated symbols ("abc" -> "c b a"). The expectations are computed here from the
data (the reversed strings, the target symbol counts), not taken from the product."""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import sys
from pathlib import Path

import pytest
import torch

from charrnn.cli import main
from conftest import TINY_TEXT
from test_cli import assert_one_line_error

# Small, quick models: every run in this file trains on one CPU thread.
HW = ["--device", "cpu", "--precision", "fp32", "--threads", "1", "--quiet"]
TINY = ["--hidden-size", "8", "--embedding-dim", "4", "--batch-size", "4", *HW]

LETTERS = "abcd"


def cli(*argv, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process with its own stdout/stderr (and stdin when given); return
    (exit code, stdout, stderr). Usable from module-scoped fixtures, unlike capsys."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in argv])
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def ok(*argv, stdin: bytes | None = None) -> str:
    code, out, err = cli(*argv, stdin=stdin)
    assert code == 0, f"charrnn {' '.join(map(str, argv))} -> {code}: {err}"
    assert "Traceback" not in err
    return out


def no_checkpoint(run_dir: Path) -> bool:
    return not run_dir.exists() or not list(run_dir.glob("*.safetensors"))


# ----------------------------------------------------------------- data


def reverse(source: str) -> str:
    return " ".join(reversed(source))


def reverse_task(n_train: int = 300, n_dev: int = 40, seed: int = 0) -> tuple[list[str], list[str]]:
    """Random strings of 2..4 letters: ``n_train`` draws (repeats kept) for training, and
    ``n_dev`` distinct strings never seen in training for validation."""
    rng = random.Random(seed)
    train, dev, seen = [], [], set()
    while len(dev) < n_dev:
        s = "".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 4)))
        if len(train) < n_train:
            train.append(s)
            seen.add(s)
        elif s not in seen:
            dev.append(s)
            seen.add(s)
    return train, dev


def write_pairs(path: Path, sources) -> Path:
    path.write_text("".join(f"{s}\t{reverse(s)}\n" for s in sources), encoding="utf-8")
    return path


def write_lines(path: Path, lines) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A module-wide folder, with the cache and working directory isolated as conftest does per test."""
    base = tmp_path_factory.mktemp("seq2seq")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        yield base


@pytest.fixture(scope="module")
def pairs(base):
    train, dev = reverse_task()
    return write_pairs(base / "train.tsv", train), write_pairs(base / "dev.tsv", dev), train, dev


def train_reverse_task(run_dir, pairs, *extra) -> tuple:
    """The reverse task trained for 300 steps (a few seconds on one thread): the run and its summary."""
    train_file, dev_file, _, _ = pairs
    out = ok("train", "--task", "seq2seq", train_file, "--val-file", dev_file, "--target-tokenizer", "space",
             "--hidden-size", "32", "--embedding-dim", "16", "--dropout", "0.1", "--batch-size", "32", "--lr", "0.01",
             "--warmup-steps", "20", "--max-steps", "300", "--eval-interval", "100", *extra, *HW, "-o", run_dir,
             "--json")
    return run_dir, json.loads(out)


@pytest.fixture(scope="module")
def rev_run(base, pairs):
    """The reverse task learned to exact match on held-out strings."""
    return train_reverse_task(base / "rev", pairs)


@pytest.fixture(scope="module")
def lm_run(base):
    corpus = base / "corpus.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    run_dir = base / "lm"
    ok("train", corpus, "--hidden-size", "8", "--embedding-dim", "6", "--layers", "1", "--max-steps", "2",
       "--batch-size", "2", "--bptt", "8", *HW, "--out", run_dir)
    return run_dir


# ----------------------------------------------------------------- training and eval accuracy


def test_a_synthetic_task_is_learned_to_exact_match(rev_run, pairs):
    run_dir, summary = rev_run
    assert summary["task"] == "seq2seq" and summary["steps"] == 300
    assert summary["val_accuracy"] == 1.0, summary
    assert (run_dir / "best.safetensors").is_file() and (run_dir / "latest.safetensors").is_file()


def test_eval_accuracy_agrees_with_training(rev_run, pairs):
    run_dir, summary = rev_run
    _, dev_file, _, dev = pairs
    res = json.loads(ok("eval", "accuracy", run_dir, dev_file, "--json"))
    assert res["sequences"] == len(dev)
    assert res["accuracy"] == summary["val_accuracy"]  # the same greedy decoding of the same best weights
    assert res["correct"] == round(res["accuracy"] * len(dev))
    assert res["wer"] == pytest.approx(100 * (1 - res["accuracy"]))
    assert res["bleu"] is not None and res["chrf"] is not None
    assert res["bleu"] == pytest.approx(100) and res["chrf"] == pytest.approx(100)
    # The latest weights are those of the last validation.
    latest = json.loads(ok("eval", "accuracy", run_dir, dev_file, "--json", "--latest"))
    assert latest["accuracy"] == summary["final_val_accuracy"]
    # The table view says the same.
    table = ok("eval", "accuracy", run_dir, dev_file)
    assert "sequence accuracy" in table and f"{res['accuracy']:.4f}" in table


def test_threads_option_sets_torchs_threads(rev_run, pairs):
    """--threads on predict and eval accuracy gives torch that many threads (the commands run
    in this process, so torch's setting is read back here) and leaves the results alone."""
    run_dir, _ = rev_run
    _, dev_file, _, dev = pairs
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        plain = json.loads(ok("eval", "accuracy", run_dir, dev_file, "--json"))
        assert torch.get_num_threads() == 2  # not given: left as it was
        one = json.loads(ok("eval", "accuracy", run_dir, dev_file, "--json", "--threads", "1"))
        assert torch.get_num_threads() == 1
        assert one["accuracy"] == plain["accuracy"] and one["ter"] == plain["ter"]
        torch.set_num_threads(2)
        sources = "".join(f"{s}\n" for s in dev[:3]).encode()
        assert ok("predict", run_dir, "-", "--threads", "1", stdin=sources) == ok("predict", run_dir, "-", stdin=sources)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert_one_line_error(*cli("predict", run_dir, "-", "--threads", "0", stdin=b"ab\n"), "--threads")


def test_eval_accuracy_counts_wrong_outputs(rev_run, tmp_path):
    """Against a file of wrong targets (the strings themselves, not reversed) nothing is right,
    except the palindromes; a second, correct reference for a source makes it right."""
    run_dir, _ = rev_run
    sources = ["abcd", "dcba", "abba", "cadb", "bd"]
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text("".join(f"{s}\t{' '.join(s)}\n" for s in sources))
    res = json.loads(ok("eval", "accuracy", run_dir, wrong, "--json"))
    assert res["sequences"] == 5 and res["correct"] == 1 and res["accuracy"] == pytest.approx(0.2)
    assert res["wer"] == pytest.approx(80.0)
    # The same sources again with their right targets: several references per source.
    with wrong.open("a") as f:
        f.write("".join(f"{s}\t{reverse(s)}\n" for s in sources[:3]))
    res = json.loads(ok("eval", "accuracy", run_dir, wrong, "--json"))
    assert res["sequences"] == 5 and res["correct"] == 3


# ----------------------------------------------------------------- predict


def test_predict_one_line_per_input_line_in_order(rev_run, pairs, tmp_path):
    run_dir, _ = rev_run
    _, _, _, dev = pairs
    # Mixed lengths (decoding sorts by length inside a batch), a blank line and a pair line.
    lines = dev[:10] + ["", "abcd\tjunk target", "  ba  "] + dev[10:20]
    data = write_lines(tmp_path / "in.txt", lines)
    out = ok("predict", run_dir, data)
    got = out.split("\n")
    assert got[-1] == "" and len(got) - 1 == len(lines), out
    got = got[:-1]
    expected = {i: reverse(line.split("\t")[0].strip()) for i, line in enumerate(lines) if line}
    assert {i: got[i] for i in expected} == expected
    # The same from stdin, and in batches of 3.
    assert ok("predict", run_dir, "-", stdin=data.read_bytes()) == out
    assert ok("predict", run_dir, data, "--batch-size", "3") == out
    # A pair file as it is gives its sources' outputs.
    assert ok("predict", run_dir, pairs[1]).splitlines() == [reverse(s) for s in dev]


def test_predict_n_best_with_a_beam(rev_run, pairs, tmp_path):
    run_dir, _ = rev_run
    sources = pairs[3][:8]
    lines = ok("predict", run_dir, write_lines(tmp_path / "in.txt", sources), "--n-best", "3", "--beam", "3"
               ).splitlines()
    assert len(lines) == 3 * len(sources)
    for i in range(len(sources)):
        group = [line.split("\t") for line in lines[3 * i : 3 * i + 3]]
        assert all(len(fields) == 2 for fields in group), group
        outputs, scores = [o for o, _ in group], [float(s) for _, s in group]
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores), group
        assert len(set(outputs)) == 3, group  # three different hypotheses


def test_beam_search_finds_what_greedy_finds(rev_run, pairs):
    """The model reverses every held-out string greedily with near-certainty, so a beam
    search must find the same outputs."""
    run_dir, _ = rev_run
    _, dev_file, _, dev = pairs
    for beam in (2, 3, 4):
        assert ok("predict", run_dir, dev_file, "--beam", beam).splitlines() == [reverse(s) for s in dev], beam


def test_predict_json_lines(rev_run, pairs, tmp_path):
    run_dir, _ = rev_run
    sources = pairs[3][:6]
    lines = sources + ["", "dcb\tx"]
    data = write_lines(tmp_path / "in.txt", lines)
    plain = ok("predict", run_dir, data).splitlines()
    objs = [json.loads(line) for line in ok("predict", run_dir, data, "--json").splitlines()]
    assert len(objs) == len(lines)
    assert [o["source"] for o in objs] == sources + ["", "dcb"]
    assert [o["output"] for o in objs] == plain
    assert [o["output"] for o in objs[:6]] + [objs[7]["output"]] == [reverse(s) for s in sources] + ["b c d"]
    for o in objs:
        assert set(o) >= {"source", "output", "score", "n_best"}
        assert o["n_best"] == [{"output": o["output"], "score": o["score"]}]
        assert o["score"] <= 0
    # With a beam and --n-best: one object per source, its n-best list best first.
    objs = [json.loads(line) for line in
            ok("predict", run_dir, data, "--json", "--beam", "3", "--n-best", "3").splitlines()]
    assert len(objs) == len(lines)
    for o in objs:
        scores = [h["score"] for h in o["n_best"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert (o["output"], o["score"]) == (o["n_best"][0]["output"], o["n_best"][0]["score"])


def test_predict_sampling(rev_run, pairs, tmp_path):
    run_dir, _ = rev_run
    data = write_lines(tmp_path / "in.txt", pairs[3][:10])
    a = ok("predict", run_dir, data, "--sample", "--seed", "1", "--temperature", "2")
    b = ok("predict", run_dir, data, "--sample", "--seed", "1", "--temperature", "2")
    assert a == b and len(a.splitlines()) == 10
    assert set("".join(a.split())) <= set(LETTERS)
    # Several samples per source, each with its score.
    lines = ok("predict", run_dir, data, "--sample", "--seed", "1", "--n-best", "2").splitlines()
    assert len(lines) == 20 and all(len(line.split("\t")) == 2 for line in lines)


@pytest.mark.parametrize("opts, pattern", [
    (["--sample", "--seed", "1", "--beam", "3"], "--beam"),
    (["--temperature", "0.5"], "--sample"),
    (["--seed", "1"], "--sample"),
    (["--top-k", "2"], "--top-k"),
    (["--n-best", "2"], "beam"),  # several outputs need a beam or sampling
    (["--beam", "2", "--n-best", "3"], "beam"),
    (["--rescore", "REV"], "--beam"),  # rescoring re-ranks a beam
    (["--rescore", "REV", "--beam", "2", "--rescore-weight", "1.5"], "--rescore-weight"),
    (["--rescore", "REV", "--beam", "2", "--rescore-candidates", "all"], "--rescore-candidates"),
])
def test_predict_option_errors(rev_run, tmp_path, opts, pattern):
    run_dir, _ = rev_run
    data = write_lines(tmp_path / "in.txt", ["abc"])
    opts = [run_dir if o == "REV" else o for o in opts]
    assert_one_line_error(*cli("predict", run_dir, data, *opts), pattern)


def test_predict_unknown_source_characters(rev_run, tmp_path):
    run_dir, _ = rev_run
    code, out, err = cli("predict", run_dir, write_lines(tmp_path / "in.txt", ["abz", "dcb"]))
    assert code == 0 and "Traceback" not in err
    lines = out.splitlines()
    assert len(lines) == 2 and lines[1] == "b c d"
    assert "warning" in err and "1 source token(s)" in err and "unknown" in err


def test_predict_missing_file(rev_run, tmp_path):
    run_dir, _ = rev_run
    assert_one_line_error(*cli("predict", run_dir, tmp_path / "nope.txt"), "nope.txt")


# ----------------------------------------------------------------- eval perplexity, info


def test_eval_perplexity(rev_run, pairs):
    run_dir, summary = rev_run
    _, dev_file, _, dev = pairs
    res = json.loads(ok("eval", "perplexity", run_dir, dev_file, "--json"))
    assert res["loss"] > 0 and res["perplexity"] == pytest.approx(math.exp(res["loss"]), rel=1e-12)
    assert res["tokens"] == sum(len(reverse(s).split()) + 1 for s in dev)  # symbols + EOS
    assert res["pairs"] == len(dev)
    # The teacher-forced loss of the best weights is the validation loss of training.
    assert res["loss"] == pytest.approx(summary["val_loss"], rel=1e-5)
    table = ok("eval", "perplexity", run_dir, dev_file)
    assert f"{res['perplexity']:.4f}" in table and f"{res['tokens']:,}" in table


def test_info_shows_both_vocabularies(rev_run):
    run_dir, summary = rev_run
    text = ok("info", run_dir)
    assert "sequence to sequence" in text
    src = next(line for line in text.splitlines() if "source tokens" in line)
    tgt = next(line for line in text.splitlines() if "target tokens" in line)
    assert "char" in src and "space" in tgt
    flat = " ".join(text.split())  # the table wraps long cells
    assert "encoder bidirectional 1x32 LSTM" in flat and "additive attention" in flat
    info = json.loads(ok("info", run_dir, "--json"))
    assert info["task"] == "seq2seq"
    assert (info["source_tokenizer"], info["target_tokenizer"], info["shared_vocab"]) == ("char", "space", False)
    # Every letter is a token of both sides (plus whatever ids of their own the tokenizers add).
    assert len(LETTERS) <= info["source_vocab_size"] and len(LETTERS) <= info["target_vocab_size"]
    assert f"{info['source_vocab_size']} tokens" in src and f"{info['target_vocab_size']} tokens" in tgt
    assert info["step"] == summary["best_step"]
    assert info["model_config"]["hidden_size"] == 32 and info["model_config"]["embedding_dim"] == 16
    assert info["metrics"]["best_val_accuracy"] == summary["val_accuracy"]


# ----------------------------------------------------------------- options


def _train(tmp_path, name, *opts, steps=5):
    train = write_pairs(tmp_path / "t.tsv", reverse_task(40, 8, seed=3)[0])
    return cli("train", "--task", "seq2seq", train, *opts, "--max-steps", steps, *TINY, "-o", tmp_path / name, "--json")


def test_default_length_is_whole_epochs_of_at_least_the_minimum_steps():
    from charrnn.tasks.specs.seq2seq import DEFAULT_EPOCHS, MIN_DEFAULT_STEPS, default_length
    from charrnn.config import TrainConfig

    # 8,000 pairs at batch 64: 125 batches an epoch, 20 epochs are 2,500 steps.
    assert default_length(TrainConfig(), 125).epochs == DEFAULT_EPOCHS
    # 800 pairs: 13 batches; 20 epochs would be 260 steps, so whole epochs up to the minimum.
    small = default_length(TrainConfig(), 13).epochs
    assert small == math.ceil(MIN_DEFAULT_STEPS / 13)
    assert small * 13 >= MIN_DEFAULT_STEPS > (small - 1) * 13


def test_no_limit_trains_at_least_the_minimum_steps_and_a_given_limit_wins(tmp_path, monkeypatch):
    import charrnn.tasks.specs.seq2seq as t

    monkeypatch.setattr(t, "MIN_DEFAULT_STEPS", 100)  # small, to keep the test quick
    sources, dev = reverse_task(12, 4, seed=5)
    train, val = write_pairs(tmp_path / "t.tsv", sources), write_pairs(tmp_path / "d.tsv", dev)
    common = ["train", "--task", "seq2seq", train, "--val-file", val, *TINY, "--json"]
    # 12 pairs at batch 4: 3 batches an epoch; 20 epochs (60 steps) are raised to 34 (102).
    summary = json.loads(ok(*common, "-o", tmp_path / "a"))
    assert summary["steps"] == 102
    # An explicit limit is kept, even when it is the default's number of epochs.
    assert json.loads(ok(*common, "--epochs", "20", "-o", tmp_path / "b"))["steps"] == 60
    assert json.loads(ok(*common, "--max-steps", "7", "-o", tmp_path / "c"))["steps"] == 7


def test_label_smoothing_leaves_the_validation_loss_a_plain_likelihood(tmp_path):
    dev = write_pairs(tmp_path / "d.tsv", reverse_task(10, 8, seed=4)[0])
    runs = {}
    for eps in ("0", "0.3"):
        code, out, err = _train(tmp_path, f"r{eps}", "--label-smoothing", eps, "--val-file", dev, "--dropout", "0")
        assert code == 0, err
        runs[eps] = json.loads(out)
        res = json.loads(ok("eval", "perplexity", tmp_path / f"r{eps}", dev, "--json"))
        assert res["loss"] == pytest.approx(runs[eps]["val_loss"], rel=1e-5)
    # The smoothed loss trains other weights than the plain one from the same start.
    assert runs["0"]["val_loss"] != pytest.approx(runs["0.3"]["val_loss"], rel=1e-6)


def test_shared_vocab_needs_one_kind(tmp_path):
    code, out, err = _train(tmp_path, "r", "--shared-vocab", "--target-tokenizer", "space")
    assert_one_line_error(code, out, err, "--shared-vocab")
    assert "char" in err and "space" in err
    assert no_checkpoint(tmp_path / "r")


def test_shared_vocab_trains(tmp_path):
    code, out, err = _train(tmp_path, "r", "--shared-vocab", "--source-tokenizer", "char", "--target-tokenizer", "char")
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["steps"] == 5
    info = json.loads(ok("info", tmp_path / "r", "--json"))
    assert info["shared_vocab"] is True
    assert info["source_tokenizer"] == info["target_tokenizer"] == "char"
    assert info["source_vocab_size"] == info["target_vocab_size"]
    assert "shared vocabulary" in ok("info", tmp_path / "r")


def test_dot_attention_needs_a_one_direction_encoder(tmp_path):
    code, out, err = _train(tmp_path, "r", "--attention", "dot")
    assert_one_line_error(code, out, err, "--no-bidirectional")
    assert no_checkpoint(tmp_path / "r")


@pytest.mark.parametrize("opts, config, state", [
    (["--attention", "dot", "--no-bidirectional"], {"attention": "dot", "bidirectional": False}, {}),
    (["--attention", "additive"], {"attention": "additive", "bidirectional": True}, {}),
    (["--attention", "none"], {"attention": "none"}, {}),
    (["--cell", "gru"], {"cell": "gru"}, {}),
    (["--cell", "rnn", "--no-input-feeding"], {"cell": "rnn", "input_feeding": False}, {}),
    (["--teacher-forcing", "0.5"], {}, {"teacher_forcing": 0.5}),
    (["--label-smoothing", "0.1"], {}, {"label_smoothing": 0.1}),
    (["--reverse-target"], {}, {"reverse_target": True}),
])
def test_architecture_options_train(tmp_path, opts, config, state):
    code, out, err = _train(tmp_path, "r", *opts, "--target-tokenizer", "space")
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["steps"] == 5
    info = json.loads(ok("info", tmp_path / "r", "--json"))
    for key, value in config.items():
        assert info["model_config"][key] == value, key
    for key, value in state.items():
        assert info["task_state"][key] == value, key
    lines = ok("predict", tmp_path / "r", write_lines(tmp_path / "in.txt", ["abc", "", "dd"])).splitlines()
    assert len(lines) == 3


@pytest.mark.parametrize("opts, name", [(["--attention", "none"], "--attention"),
                                        (["--teacher-forcing", "0.5"], "--teacher-forcing"),
                                        (["--label-smoothing", "0.1"], "--label-smoothing"),
                                        (["--reverse-target"], "--reverse-target"),
                                        (["--source-tokenizer", "space"], "--source-tokenizer"),
                                        (["--shared-vocab"], "--shared-vocab")])
def test_seq2seq_options_with_a_language_model(tmp_path, opts, name):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TINY_TEXT)
    code, out, err = cli("train", corpus, *opts, "--max-steps", "2", "--layers", "1", "--bptt", "8", *TINY,
                         "--out", tmp_path / "r")
    assert_one_line_error(code, out, err, name)
    assert "language model" in err
    assert no_checkpoint(tmp_path / "r")


@pytest.mark.parametrize("opts, name", [(["--pool", "max"], "--pool"), (["--tokenizer", "bpe"], "--tokenizer"),
                                        (["--one-hot"], "--one-hot"), (["--bptt", "8"], "--bptt")])
def test_other_tasks_options_with_seq2seq(tmp_path, opts, name):
    code, out, err = _train(tmp_path, "r", *opts)
    assert_one_line_error(code, out, err, name)
    assert "seq2seq" in err
    assert no_checkpoint(tmp_path / "r")


def test_seq2seq_options_with_a_classifier(tmp_path):
    data = tmp_path / "d.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{w}\t{w[0]}\n" for w in ["ab", "ba", "abb", "baa"] * 5))
    code, out, err = cli("train", "--task", "classify", data, "--attention", "none", "--max-steps", "2", *TINY,
                         "--out", tmp_path / "r")
    assert_one_line_error(code, out, err, "--attention")
    assert no_checkpoint(tmp_path / "r")


# ----------------------------------------------------------------- bad input


GOOD = "ab\tb a\ncd\td c\nabc\tc b a\n"


@pytest.mark.parametrize("content, patterns", [
    (GOOD + "abcd\n" + GOOD, [":4:", "no tab"]),
    (GOOD + "abcd\t\n", [":4:", "empty target"]),
    (GOOD + "abcd\t  \n", [":4:", "empty target"]),
    (GOOD + "\tb a\n", [":4:", "empty source"]),
    ("ab\tb a\n\nab\tb\ta\n", [":3:", "3 tab-separated columns"]),
    ("", ["no source<TAB>target pairs", "empty"]),
    ("\n  \n", ["no source<TAB>target pairs", "blank"]),
    (None, ["no such file"]),
])
@pytest.mark.parametrize("as_val", [False, True])
def test_bad_pair_files(tmp_path, content, patterns, as_val):
    bad = tmp_path / "bad.tsv"
    if content is not None:
        bad.write_text(content, encoding="utf-8")
    good = write_pairs(tmp_path / "good.tsv", ["ab", "ba", "abc", "cab", "dab"])
    files = [good, "--val-file", bad] if as_val else [bad]
    code, out, err = cli("train", "--task", "seq2seq", *files, "--max-steps", "2", *TINY, "-o", tmp_path / "r")
    assert_one_line_error(code, out, err, "bad.tsv")
    for pattern in patterns:
        assert pattern in err, err
    assert no_checkpoint(tmp_path / "r")


def test_bad_pair_file_in_eval(rev_run, tmp_path):
    run_dir, _ = rev_run
    bad = tmp_path / "bad.tsv"
    bad.write_text(GOOD + "abcd\n")
    for metric in ("accuracy", "perplexity"):
        assert_one_line_error(*cli("eval", metric, run_dir, bad), "bad.tsv:4")


def test_seq2seq_reads_one_file(tmp_path):
    a = write_pairs(tmp_path / "a.tsv", ["ab", "ba"])
    code, out, err = cli("train", "--task", "seq2seq", a, a, "--max-steps", "2", *TINY, "-o", tmp_path / "r")
    assert_one_line_error(code, out, err, "one file")
    assert no_checkpoint(tmp_path / "r")


def test_pairs_longer_than_max_length(tmp_path):
    train, dev = reverse_task(40, 8, seed=4)
    data = write_pairs(tmp_path / "t.tsv", train + ["abcdabcdab", "dcbadcbadcbad"] + train[:3])
    dev_file = write_pairs(tmp_path / "d.tsv", dev)
    long_line = len(train) + 1
    code, out, err = cli("train", "--task", "seq2seq", data, "--val-file", dev_file, "--max-length", "8",
                         "--target-tokenizer", "space", "--max-steps", "3", *TINY, "-o", tmp_path / "r", "--json")
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["steps"] == 3
    warnings = [line for line in err.splitlines() if line.strip()]
    assert len(warnings) == 1 and "warning" in warnings[0] and "skipped 2 train pair(s)" in warnings[0], err
    assert "--max-length 8" in warnings[0]
    state = json.loads(ok("info", tmp_path / "r", "--json"))["task_state"]
    assert state["skipped_long"] == {"train": 2, "val": 0} and state["max_length"] == 8
    # --strict refuses the first of them, naming its line.
    code, out, err = cli("train", "--task", "seq2seq", data, "--val-file", dev_file, "--max-length", "8", "--strict",
                         "--target-tokenizer", "space", "--max-steps", "3", *TINY, "-o", tmp_path / "s")
    assert_one_line_error(code, out, err, f"t.tsv:{long_line}")
    assert "--max-length 8" in err
    assert no_checkpoint(tmp_path / "s")


# ----------------------------------------------------------------- resume


def test_resume_is_exact(base, pairs, tmp_path):
    from charrnn.checkpoint import load_checkpoint

    train_file, dev_file, _, _ = pairs
    common = ["train", "--task", "seq2seq", train_file, "--val-file", dev_file, "--target-tokenizer", "space",
              "--hidden-size", "16", "--embedding-dim", "8", "--batch-size", "8", "--eval-interval", "10", *HW]
    first = json.loads(ok(*common, "--max-steps", "20", "-o", tmp_path / "a", "--json"))
    assert first["steps"] == 20 and first["resumed_from"] is None
    # Data and tokenizer options cannot change on resume.
    code, out, err = cli("train", "--task", "seq2seq", train_file, "--val-file", dev_file, "--resume", "--max-steps",
                         "40", "--teacher-forcing", "0.5", "-o", tmp_path / "a", "--quiet")
    assert_one_line_error(code, out, err, "--teacher-forcing")
    resumed = json.loads(ok("train", "--task", "seq2seq", train_file, "--val-file", dev_file, "--resume",
                            "--max-steps", "40", "--threads", "1", "--quiet", "-o", tmp_path / "a", "--json"))
    assert resumed["resumed_from"] == 20 and resumed["steps"] == 40 and resumed["steps_this_run"] == 20
    whole = json.loads(ok(*common, "--max-steps", "40", "-o", tmp_path / "b", "--json"))
    assert whole["steps"] == 40
    for key in ("val_loss", "val_accuracy", "final_val_loss", "final_val_accuracy", "best_step"):
        assert resumed[key] == whole[key], key
    for latest in (True, False):
        a = load_checkpoint(tmp_path / "a", latest=latest)
        b = load_checkpoint(tmp_path / "b", latest=latest)
        assert a.step == b.step
        assert a.weights.keys() == b.weights.keys()
        for name in a.weights:
            assert torch.equal(a.weights[name], b.weights[name]), (latest, name)


# ----------------------------------------------------------------- the wrong command or model


def test_sample_on_a_seq2seq_run(rev_run):
    run_dir, _ = rev_run
    code, out, err = cli("sample", run_dir, "-p", "ab", "-n", "5")
    assert_one_line_error(code, out, err, "seq2seq")
    assert "charrnn predict" in err


def test_eval_accuracy_on_a_language_model(lm_run, pairs):
    assert_one_line_error(*cli("eval", "accuracy", lm_run, pairs[1]), "language model")


def test_eval_accuracy_classifier_options_on_a_seq2seq_run(rev_run, pairs):
    run_dir, _ = rev_run
    assert_one_line_error(*cli("eval", "accuracy", run_dir, pairs[1], "--text-column", "text"), "--text-column")


def test_predict_on_a_language_model(lm_run, tmp_path):
    code, out, err = cli("predict", lm_run, write_lines(tmp_path / "in.txt", ["ab"]))
    assert_one_line_error(code, out, err, "language model")


def test_source_normalize_nfd_reads_precomposed_and_decomposed_sources_alike(tmp_path):
    # Sources are Hangul syllables (precomposed) in training; NFD makes the model's
    # tokens their jamo, so a decomposed spelling of the same word reads the same.
    words = ["\ud55c", "\uad6d", "\ud55c\uad6d", "\uad6d\ud55c"]  # 한, 국, 한국, 국한
    train = tmp_path / "t.tsv"
    train.write_text("".join(f"{w}\t{' '.join(w)}\n" for w in words * 5), encoding="utf-8")
    code, out, err = cli("train", "--task", "seq2seq", train, "--source-normalize", "nfd", "--target-tokenizer",
                         "space", "--max-steps", "3", *TINY, "-o", tmp_path / "r", "--json")
    assert code == 0 and "Traceback" not in err, err
    info = json.loads(ok("info", tmp_path / "r", "--json"))
    assert info["source_normalize"] == "NFD"
    assert info["source_vocab_size"] == 1 + len(set("\u1112\u1161\u11ab\u1100\u116e\u11a8"))  # unk + 6 jamo
    assert "char (NFD)" in ok("info", tmp_path / "r")
    nfd = "\u1112\u1161\u11ab\u1100\u116e\u11a8"  # 한국 decomposed
    lines = ok("predict", tmp_path / "r", write_lines(tmp_path / "in.txt", ["\ud55c\uad6d", nfd]),
               "--json").splitlines()
    assert json.loads(lines[0])["output"] == json.loads(lines[1])["output"]
    code, out, err = cli("predict", tmp_path / "r", write_lines(tmp_path / "in2.txt", [nfd]))
    assert code == 0 and "unknown" not in err, err  # no part of the decomposed word is unknown


def test_source_normalize_is_for_char_sources(tmp_path):
    code, out, err = _train(tmp_path, "r", "--source-normalize", "nfd", "--source-tokenizer", "space")
    assert_one_line_error(code, out, err, "--source-normalize")
    assert no_checkpoint(tmp_path / "r")
    corpus = tmp_path / "c.txt"
    corpus.write_text(TINY_TEXT)
    code, out, err = cli("train", corpus, "--source-normalize", "nfd", "--max-steps", "2", "--layers", "1",
                         "--bptt", "8", *TINY, "--out", tmp_path / "lm")
    assert_one_line_error(code, out, err, "--source-normalize")


# ----------------------------------------------------------------- right to left, and rescoring


@pytest.fixture(scope="module")
def r2l_run(base, pairs):
    """The reverse task learned by a decoder that writes right to left (for it, a copy)."""
    return train_reverse_task(base / "r2l", pairs, "--reverse-target")


def test_a_right_to_left_model_learns_and_answers_in_reading_order(r2l_run, pairs):
    run_dir, summary = r2l_run
    _, dev_file, _, dev = pairs
    # Validation compared its outputs, put back in reading order, with the references.
    assert summary["val_accuracy"] == 1.0, summary
    assert ok("predict", run_dir, dev_file).splitlines() == [reverse(s) for s in dev]
    assert ok("predict", run_dir, dev_file, "--beam", "3").splitlines() == [reverse(s) for s in dev]
    assert json.loads(ok("info", run_dir, "--json"))["task_state"]["reverse_target"] is True
    # The model really writes last token first: its raw first greedy token is the target's last symbol.
    from charrnn.api import load
    from charrnn.config import SampleConfig
    from charrnn.decoding.seq2seq import translate

    model = load(run_dir, device="cpu")
    raw = translate(model.models, model.encode(dev[:5]), SampleConfig(greedy=True), model.target.detokenizer,
                    model.target.banned_ids, limit=model.limit)
    for source, gens in zip(dev[:5], raw):
        assert model.target.decode(gens[0].tokens[:1]).strip() == source[0]  # reverse(s) ends with s[0]
    # Teacher-forced perplexity reads the targets in the model's direction too.
    res = json.loads(ok("eval", "perplexity", run_dir, dev_file, "--json"))
    assert res["loss"] == pytest.approx(summary["val_loss"], rel=1e-5)


def test_sequence_scores_are_the_teacher_forced_log_probabilities(rev_run, r2l_run, pairs):
    """score() against a hand loop: the model's step-by-step log-softmax at each gold token
    (for an ensemble, the log of the two models' mean probability), in each model's direction."""
    from charrnn.api import load, load_ensemble
    from charrnn.tasks.seq2seq import encode_side

    dev = pairs[3][:6]
    targets = [reverse(s) for s in dev[:3]] + ["a b", "d d d d", "c"]  # right and wrong outputs
    fwd, bwd = load(rev_run[0], device="cpu"), load(r2l_run[0], device="cpu")

    def hand(model, source: str, target: str) -> list[float]:
        c = model.model.config
        ids = encode_side(model.target, [target])[0]
        gold = (ids[::-1] if model.reverse else ids) + [c.eos_id]
        src = torch.tensor([model.encode([source])[0]])
        with torch.no_grad():
            logits = model.model(src, torch.tensor([src.shape[1]]), torch.tensor([[c.sos_id] + gold[:-1]]))[0]
        return [float(torch.log_softmax(logits.double(), -1)[i, t]) for i, t in enumerate(gold)]

    for model in (fwd, bwd):
        got = model.score(dev, targets)
        assert got == pytest.approx([sum(hand(model, s, t)) for s, t in zip(dev, targets)], abs=1e-4)
    assert all(s > -1.0 for s in fwd.score(dev[:3], targets[:3]))  # the right answers are near-certain
    assert all(s < -1.0 for s in fwd.score(dev[3:], targets[3:]))
    twice = load_ensemble([rev_run[0], rev_run[0]], device="cpu")
    assert twice.score(dev, targets) == pytest.approx(fwd.score(dev, targets), abs=1e-6)


def test_rescoring_ranks_the_beam_by_the_mixed_log_probability(rev_run, r2l_run, pairs):
    from charrnn.api import load

    fwd, bwd = load(rev_run[0], device="cpu"), load(r2l_run[0], device="cpu")
    dev = pairs[3][:6]
    k = 4
    for weight, lp in ((0.0, 1.0), (0.5, 1.0), (1.0, 0.0), (0.3, 0.6)):
        # The beam's own K hypotheses (the length penalty also steers which ones it keeps).
        hyps = [[t for t, _ in best] for best in fwd.predict(dev, beam=k, n_best=k, length_penalty=lp)]
        got = fwd.predict(dev, beam=k, n_best=k, rescore=bwd, rescore_weight=weight, length_penalty=lp,
                          rescore_candidates="own")
        for source, texts, ranked in zip(dev, hyps, got):
            own = fwd.score([source] * len(texts), texts)
            other = bwd.score([source] * len(texts), texts)
            lengths = [len(t.split()) + 1 for t in texts]  # the symbols and EOS
            want = sorted(((t, ((1 - weight) * a + weight * b) / n ** lp)
                           for t, a, b, n in zip(texts, own, other, lengths)), key=lambda x: x[1], reverse=True)
            assert [t for t, _ in ranked] == [t for t, _ in want], (weight, source)
            assert [v for _, v in ranked] == pytest.approx([v for _, v in want], abs=1e-3)
    # By default the candidates are both beams: the right-to-left model's own K best join in, each text once.
    mine = [[t for t, _ in best] for best in fwd.predict(dev, beam=k, n_best=k)]
    theirs = [[t for t, _ in best] for best in bwd.predict(dev, beam=k, n_best=k)]
    assert mine != theirs  # the two directions' beams differ (else this would test nothing new)
    for weight in (0.5, 1.0):
        got = fwd.predict(dev, beam=k, n_best=k, rescore=bwd, rescore_weight=weight)
        for source, a_texts, b_texts, ranked in zip(dev, mine, theirs, got):
            texts = list(dict.fromkeys(a_texts + b_texts))
            own = fwd.score([source] * len(texts), texts)
            rival = bwd.score([source] * len(texts), texts)
            want = sorted(((t, ((1 - weight) * a + weight * b) / (len(t.split()) + 1))
                           for t, a, b in zip(texts, own, rival)), key=lambda x: x[1], reverse=True)[:k]
            assert [t for t, _ in ranked] == [t for t, _ in want], (weight, source)
            assert [v for _, v in ranked] == pytest.approx([v for _, v in want], abs=1e-3)
    # The rescored outputs of the trained pair are the right answers, through the command line too.
    _, dev_file, _, dev_all = pairs
    res = json.loads(ok("eval", "accuracy", rev_run[0], dev_file, "--beam", "3", "--rescore", r2l_run[0], "--json"))
    assert res["accuracy"] == 1.0 and res["rescore_weight"] == 0.5 and res["rescore_candidates"] == "both"
    lines = ok("predict", rev_run[0], dev_file, "--beam", "3", "--n-best", "2", "--rescore", r2l_run[0]).splitlines()
    assert [line.split("\t")[0] for line in lines[::2]] == [reverse(s) for s in dev_all]


def test_rescoring_and_direction_errors(rev_run, r2l_run, lm_run, pairs):
    _, dev_file, _, _ = pairs
    assert_one_line_error(*cli("eval", "accuracy", rev_run[0], dev_file, "--rescore", r2l_run[0]), "--beam")
    assert_one_line_error(*cli("predict", rev_run[0], dev_file, "--ensemble", r2l_run[0]), "direction")
    assert_one_line_error(*cli("predict", rev_run[0], dev_file, "--beam", "2", "--rescore", lm_run), "lm")
    assert_one_line_error(*cli("eval", "accuracy", lm_run, dev_file, "--beam", "2", "--rescore", r2l_run[0]),
                          "--rescore")
    # A rescoring run with other vocabularies (here: the targets read as characters) is refused.
    train_file = pairs[0]
    other = r2l_run[0].parent / "r2l-chars"
    ok("train", "--task", "seq2seq", train_file, "--hidden-size", "8", "--embedding-dim", "4", "--max-steps", "2",
       "--reverse-target", *HW, "-o", other)
    assert_one_line_error(*cli("eval", "accuracy", rev_run[0], dev_file, "--beam", "2", "--rescore", other),
                          "tokenizers differ")
