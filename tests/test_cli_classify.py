"""``charrnn train --task classify``, ``predict``, ``eval accuracy`` and ``info`` end to end on
tiny labelled data sets: the three data layouts, what each command prints, agreement
between the commands and the Python API, resume, and one-line errors for every mistake."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import select
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn.cli import main
from conftest import TINY_TEXT
from test_cli import assert_one_line_error

# Every run here is tiny: a few steps of a 1x8 model on a CPU thread.
TINY = ["--hidden-size", "8", "--embedding-dim", "6", "--batch-size", "4", "--device", "cpu",
        "--precision", "fp32", "--quiet"]


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


def _word(rng: random.Random, letters: str) -> str:
    return "".join(rng.choice(letters) for _ in range(rng.randint(5, 12)))


def separable(n: int, seed: int) -> list[tuple[str, str]]:
    """n examples alternating label "a" (texts of a/b) and "z" (texts of y/z)."""
    rng = random.Random(seed)
    return [(_word(rng, "ab"), "a") if i % 2 == 0 else (_word(rng, "yz"), "z") for i in range(n)]


WORDS = {"pos": ["good", "great", "fine", "lovely", "superb", "warm", "bright", "happy"],
         "neg": ["bad", "awful", "dull", "poor", "grim", "cold", "dark", "sad"]}
COMMON = ["the", "film", "was", "a", "plot", "and", "very", "story", "cast", "quite"]


def sentences(counts: dict[str, int], seed: int) -> list[tuple[str, str]]:
    """Short word sentences, ``counts[label]`` of each label, labels interleaved."""
    rng = random.Random(seed)
    pending = dict(counts)
    out = []
    while any(pending.values()):
        for label in sorted(pending):
            if pending[label]:
                pending[label] -= 1
                words = [rng.choice(COMMON) for _ in range(rng.randint(2, 4))] + rng.sample(WORDS[label], 2)
                rng.shuffle(words)
                out.append((" ".join(words), label))
    return out


def write_tsv(path: Path, examples, text="text", label="label") -> Path:
    path.write_text(f"{text}\t{label}\n" + "".join(f"{t}\t{l}\n" for t, l in examples), encoding="utf-8")
    return path


def write_fasttext(path: Path, examples) -> Path:
    path.write_text("".join(f"__label__{l} {t}\n" for t, l in examples), encoding="utf-8")
    return path


def write_folder(path: Path, examples) -> Path:
    path.mkdir()
    for label in sorted({l for _, l in examples}):
        (path / f"{label}.txt").write_text("".join(f"{t}\n" for t, l in examples if l == label), encoding="utf-8")
    return path


def write_lines(path: Path, texts) -> Path:
    path.write_text("".join(f"{t}\n" for t in texts), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A module-wide folder, with the cache and working directory isolated as conftest does per test."""
    base = tmp_path_factory.mktemp("classify")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        yield base


@pytest.fixture(scope="module")
def sep_run(base):
    """A classifier trained well on a separable set, and a held-out set with its gold labels."""
    train = write_tsv(base / "sep.tsv", separable(40, seed=0))
    held = separable(20, seed=1)
    held_file = write_lines(base / "held.txt", [t for t, _ in held])
    run_dir = base / "sep-run"
    out = ok("train", "--task", "classify", train, "--out", run_dir, "--hidden-size", "16", "--embedding-dim", "6",
             "--batch-size", "8", "--max-steps", "60", "--lr", "0.01", "--eval-interval", "20", "--device", "cpu",
             "--precision", "fp32", "--json", "--quiet")
    summary = json.loads(out)
    assert summary["steps"] == 60 and summary["labels"] == ["a", "z"]
    return run_dir, held_file, held


@pytest.fixture(scope="module")
def lm_run(base):
    corpus = base / "corpus.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    run_dir = base / "lm"
    ok("train", corpus, "--hidden-size", "8", "--embedding-dim", "6", "--layers", "1", "--max-steps", "2",
       "--batch-size", "2", "--bptt", "8", "--device", "cpu", "--precision", "fp32", "--quiet", "--out", run_dir)
    return run_dir


# ----------------------------------------------------------------- predict


def test_predict_labels_every_line_in_order_and_mostly_right(sep_run, tmp_path):
    run_dir, held_file, held = sep_run
    out = ok("predict", run_dir, held_file)
    labels = out.splitlines()
    assert out.endswith("\n") and len(labels) == len(held)
    assert set(labels) <= {"a", "z"}
    right = sum(p == g for p, g in zip(labels, (g for _, g in held)))
    assert right / len(held) >= 0.8, (labels, [g for _, g in held])
    # The same lines from stdin, and in batches of 3 (the order survives the length-sorted batching).
    assert ok("predict", run_dir, "-", stdin=held_file.read_bytes()) == out
    assert ok("predict", run_dir, held_file, "--batch-size", "3") == out
    # fastText prefixes are ignored (even a wrong label), a TSV file gives its texts.
    fast = write_fasttext(tmp_path / "held.ft", [(t, "a") for t, _ in held])
    assert ok("predict", run_dir, fast) == out
    tsv = write_tsv(tmp_path / "held.tsv", held)
    assert ok("predict", run_dir, tsv) == out


def test_predict_answers_blank_lines_and_unseen_characters(sep_run, tmp_path):
    """Every input line gets its output line, even an empty one or one of characters never seen."""
    run_dir, _, _ = sep_run
    texts = ["abab", "", "yzyz \U0001F600 \u00e9", "__label__z", "   "]
    out = ok("predict", run_dir, write_lines(tmp_path / "t.txt", texts))
    labels = out.splitlines()
    assert len(labels) == len(texts) and set(labels) <= {"a", "z"}
    lines = ok("predict", run_dir, write_lines(tmp_path / "t.txt", texts), "--json").splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["abab", "", "yzyz \U0001F600 \u00e9", "", "   "]


def test_predict_streams_from_a_pipe(sep_run):
    """With --batch-size 1 a line read from stdin is answered before the next one is written."""
    run_dir, _, held = sep_run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "predict", str(run_dir), "-", "--batch-size", "1",
                             "--device", "cpu"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        answers = []
        for text, _ in held[:3]:
            proc.stdin.write(f"{text}\n".encode())
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "no answer to a line before the next one was written"
            answers.append(proc.stdout.readline().decode().rstrip("\n"))
        rest, err = proc.communicate(timeout=60)  # closes stdin: the end of the input
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and rest == b"" and b"Traceback" not in err
    expected = ok("predict", run_dir, "-", stdin="".join(f"{t}\n" for t, _ in held[:3]).encode()).splitlines()
    assert answers == expected


def test_predict_top_k_gives_labels_and_probabilities_best_first(sep_run):
    run_dir, held_file, held = sep_run
    best = ok("predict", run_dir, held_file).splitlines()
    lines = ok("predict", run_dir, held_file, "--top-k", "2").splitlines()
    assert len(lines) == len(held)
    for line, top1 in zip(lines, best):
        fields = line.split("\t")
        assert len(fields) == 4, line
        (l1, p1), (l2, p2) = (fields[0], float(fields[1])), (fields[2], float(fields[3]))
        assert {l1, l2} == {"a", "z"} and l1 == top1
        assert p1 >= p2 and 0 <= p2 and p1 <= 1
        assert p1 + p2 == pytest.approx(1.0, abs=2e-4)  # printed to 4 decimals
    # More than there are labels: every label, once.
    lines = ok("predict", run_dir, held_file, "-k", "5").splitlines()
    assert all(len(line.split("\t")) == 4 for line in lines)


def test_predict_json_lines(sep_run):
    run_dir, held_file, held = sep_run
    best = ok("predict", run_dir, held_file).splitlines()
    for k in (1, 2):
        lines = ok("predict", run_dir, held_file, "--json", "--top-k", k).splitlines()
        assert len(lines) == len(held)
        for line, (text, _), top1 in zip(lines, held, best):
            obj = json.loads(line)
            assert obj["text"] == text and obj["label"] == top1
            assert len(obj["top"]) == k
            assert obj["top"][0] == {"label": obj["label"], "probability": obj["probability"]}
            probs = [t["probability"] for t in obj["top"]]
            assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
            if k == 2:
                assert sum(probs) == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------- layouts, info


def test_the_three_layouts_train_the_same_labels_and_counts(base, tmp_path):
    examples = sentences({"neg": 14, "pos": 10}, seed=5)
    dev = write_tsv(tmp_path / "dev.tsv", sentences({"neg": 3, "pos": 3}, seed=6))
    layouts = {
        "tsv": write_tsv(tmp_path / "train.tsv", examples),
        "fasttext": write_fasttext(tmp_path / "train.txt", examples),
        "folder": write_folder(tmp_path / "train", examples),
    }
    infos = {}
    for name, data in layouts.items():
        ok("train", "--task", "classify", data, "--val-file", dev, "--max-steps", "3", *TINY, "--out", tmp_path / name)
        infos[name] = json.loads(ok("info", tmp_path / name, "--json"))
    # A CSV with other column names, chosen by --text-column and --label-column.
    # The column options apply to the validation file too.
    csv, dev_csv = tmp_path / "train.csv", tmp_path / "dev.csv"
    for path, rows in ((csv, examples), (dev_csv, sentences({"neg": 3, "pos": 3}, seed=6))):
        path.write_text("id,utterance,intent\n" + "".join(f"{i},{t},{l}\n" for i, (t, l) in enumerate(rows)))
    ok("train", "--task", "classify", csv, "--text-column", "utterance", "--label-column", "intent", "--val-file",
       dev_csv, "--max-steps", "3", *TINY, "--out", tmp_path / "csv")
    infos["csv"] = json.loads(ok("info", tmp_path / "csv", "--json"))
    for name, info in infos.items():
        assert info["task"] == "classify", name
        state = info["task_state"]
        assert state["labels"] == ["neg", "pos"], name
        assert state["label_counts"] == {"neg": 14, "pos": 10}, name
        assert state["class_weights"] == "none", name
        assert info["model_config"]["num_labels"] == 2 and info["model_config"]["hidden_size"] == 8
        assert info["vocab_size"] == infos["tsv"]["vocab_size"] and info["step"] == 3
    # The same examples in the same order (TSV and fastText) train the same model.
    texts = [t for t, _ in examples[:6]]
    from charrnn import load

    a = load(tmp_path / "tsv", device="cpu").predict(texts, top_k=2)
    b = load(tmp_path / "fasttext", device="cpu").predict(texts, top_k=2)
    assert [[l for l, _ in row] for row in a] == [[l for l, _ in row] for row in b]
    assert [p for row in a for _, p in row] == pytest.approx([p for row in b for _, p in row], abs=1e-6)
    # The text view names the task and the labels with their counts.
    text = ok("info", tmp_path / "folder")
    assert "classifier" in text and "neg (14)" in text and "pos (10)" in text


def test_val_fraction_splits_every_label(tmp_path):
    data = write_tsv(tmp_path / "d.tsv", sentences({"neg": 20, "pos": 10}, seed=2))
    ok("train", "--task", "classify", data, "--val-fraction", "0.2", "--max-steps", "2", *TINY, "--out", tmp_path / "r")
    state = json.loads(ok("info", tmp_path / "r", "--json"))["task_state"]
    assert state["label_counts"] == {"neg": 16, "pos": 8}  # 4 and 2 examples set aside


# ----------------------------------------------------------------- eval accuracy


def test_eval_accuracy_matches_a_hand_count_from_predict(sep_run, tmp_path):
    run_dir, _, _ = sep_run
    rng = random.Random(9)
    # Clear examples of both labels and ambiguous ones, so that some may be wrong.
    examples = separable(16, seed=7) + [(_word(rng, "abyz"), rng.choice("az")) for _ in range(12)]
    rng.shuffle(examples)
    data = write_tsv(tmp_path / "eval.tsv", examples)
    res = json.loads(ok("eval", "accuracy", run_dir, data, "--json"))
    predicted = ok("predict", run_dir, data).splitlines()
    gold = [l for _, l in examples]
    assert len(predicted) == len(gold) == res["total"] == 28
    labels = res["labels"]
    assert labels == ["a", "z"]
    assert res["accuracy"] == pytest.approx(sum(p == g for p, g in zip(predicted, gold)) / len(gold))
    confusion = [[sum(1 for p, g in zip(predicted, gold) if g == gl and p == pl) for pl in labels] for gl in labels]
    assert res["confusion"] == confusion
    f1s = []
    for i, row in enumerate(res["per_label"]):
        tp = confusion[i][i]
        fp = sum(confusion[j][i] for j in range(len(labels))) - tp
        fn = sum(confusion[i]) - tp
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        f1s.append(f1)
        assert row["label"] == labels[i] and row["support"] == sum(confusion[i])
        assert row["f1"] == pytest.approx(f1)
        assert row["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
        assert row["recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
    assert res["macro_f1"] == pytest.approx(sum(f1s) / len(f1s))
    # The same examples as fastText lines or a folder score the same.
    for other in (write_fasttext(tmp_path / "eval.txt", examples), write_folder(tmp_path / "eval", examples)):
        again = json.loads(ok("eval", "accuracy", run_dir, other, "--json"))
        assert (again["total"], again["accuracy"], again["confusion"]) == (28, res["accuracy"], confusion)
    # The table view says the same accuracy.
    table = ok("eval", "accuracy", run_dir, data)
    assert f"{res['accuracy']:.4f}" in table and "confusion" in table


# ----------------------------------------------------------------- Python API


def test_python_api_predict_matches_the_command(sep_run):
    import charrnn

    run_dir, _, held = sep_run
    texts = [t for t, _ in held[:8]]
    clf = charrnn.load(run_dir, device="cpu")
    assert isinstance(clf, charrnn.api.Classifier) and clf.labels == ["a", "z"]
    api = clf.predict(texts, top_k=2)
    cmd = [json.loads(line) for line in
           ok("predict", run_dir, "-", "--json", "--top-k", "2", stdin="".join(f"{t}\n" for t in texts).encode())
           .splitlines()]
    assert len(api) == len(cmd) == len(texts)
    for row, obj in zip(api, cmd):
        assert [lab for lab, _ in row] == [t["label"] for t in obj["top"]]
        assert [p for _, p in row] == pytest.approx([t["probability"] for t in obj["top"]], abs=1e-5)
        assert sum(p for _, p in row) == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------- errors


def _train_fails(out_dir: Path, *argv, pattern: str = ""):
    code, out, err = cli("train", "--task", "classify", *argv, "--max-steps", "2", *TINY, "--out", out_dir)
    assert_one_line_error(code, out, err, pattern)
    assert no_checkpoint(out_dir), list(out_dir.iterdir())
    return code, err


def test_fasttext_line_with_a_label_but_no_text(tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("__label__a abab ab\n__label__z yzzy\n__label__z\n__label__a baba\n")
    _, err = _train_fails(tmp_path / "r", data, pattern="line 3")
    assert "no text" in err


def test_tsv_row_with_an_empty_label(tmp_path):
    data = tmp_path / "d.tsv"
    data.write_text("text\tlabel\nabab\ta\nyzyz\tz\nbaba\t\nzzyy\tz\n")
    _, err = _train_fails(tmp_path / "r", data, pattern="line 4")
    assert "empty label" in err


def test_unknown_text_column(tmp_path):
    data = write_tsv(tmp_path / "d.tsv", separable(20, seed=0))
    _, err = _train_fails(tmp_path / "r", data, "--text-column", "sentence_text", pattern="'sentence_text'")
    assert "text" in err and "label" in err  # names the columns there are


def test_a_single_label(tmp_path):
    data = write_tsv(tmp_path / "d.tsv", [(t, "a") for t, _ in separable(20, seed=0)])
    _train_fails(tmp_path / "r", data, pattern="one label")


def test_a_label_only_in_the_validation_data(tmp_path):
    data = write_tsv(tmp_path / "d.tsv", separable(20, seed=0))
    dev = write_tsv(tmp_path / "dev.tsv", separable(4, seed=1) + [("mmmnnn", "m")])
    _, err = _train_fails(tmp_path / "r", data, "--val-file", dev, pattern="'m'")
    assert "dev.tsv" in err


def test_an_empty_folder(tmp_path):
    (tmp_path / "data").mkdir()
    _train_fails(tmp_path / "r", tmp_path / "data", pattern="no label files")


def test_a_binary_file_in_the_folder(tmp_path):
    folder = write_folder(tmp_path / "data", separable(20, seed=0))
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    _, err = _train_fails(tmp_path / "r", folder, pattern="binary")
    assert "image.png" in err


def test_predict_on_a_language_model(lm_run, tmp_path):
    texts = write_lines(tmp_path / "t.txt", ["the cat"])
    code, out, err = cli("predict", lm_run, texts)
    assert_one_line_error(code, out, err, "language model")
    assert "charrnn sample" in err


def test_sample_on_a_classifier(sep_run):
    run_dir, _, _ = sep_run
    code, out, err = cli("sample", run_dir, "-p", "ab", "-n", "5")
    assert_one_line_error(code, out, err, "classifier")
    assert "charrnn predict" in err


def test_eval_accuracy_with_a_label_the_model_never_saw(sep_run, tmp_path):
    run_dir, _, _ = sep_run
    data = write_tsv(tmp_path / "e.tsv", separable(6, seed=3) + [("qqqq", "q")])
    assert_one_line_error(*cli("eval", "accuracy", run_dir, data), "'q'")


def test_eval_accuracy_on_a_language_model(lm_run, tmp_path):
    data = write_tsv(tmp_path / "e.tsv", separable(6, seed=3))
    assert_one_line_error(*cli("eval", "accuracy", lm_run, data), "language model")


def test_eval_perplexity_on_a_classifier(sep_run, tmp_path):
    run_dir, held_file, _ = sep_run
    code, out, err = cli("eval", "perplexity", run_dir, held_file)
    assert_one_line_error(code, out, err, "classifier")
    assert "eval accuracy" in err


@pytest.mark.parametrize("opts, name", [(["--pool", "max"], "--pool"), (["--one-hot"], "--one-hot"),
                                        (["--class-weights", "balanced"], "--class-weights"),
                                        (["--no-bidirectional"], "--bidirectional")])
def test_classification_options_with_a_language_model(tmp_path, opts, name):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TINY_TEXT)
    code, out, err = cli("train", corpus, *opts, "--max-steps", "2", "--layers", "1", "--bptt", "8", *TINY,
                         "--out", tmp_path / "r")
    assert_one_line_error(code, out, err, name)
    assert "classify" in err and code == 2
    assert no_checkpoint(tmp_path / "r")


def test_classify_with_two_data_files(tmp_path):
    a = write_tsv(tmp_path / "a.tsv", separable(20, seed=0))
    b = write_tsv(tmp_path / "b.tsv", separable(20, seed=1))
    code, _ = _train_fails(tmp_path / "r", a, b, pattern="one labelled file")
    assert code == 2


def test_a_failed_run_leaves_an_existing_run_alone(tmp_path):
    """Nothing half-written: a failing --overwrite over a good run keeps its checkpoint readable."""
    data = write_tsv(tmp_path / "d.tsv", separable(20, seed=0))
    run_dir = tmp_path / "r"
    ok("train", "--task", "classify", data, "--max-steps", "2", *TINY, "--out", run_dir)
    before = (run_dir / "best.safetensors").read_bytes()
    bad = write_tsv(tmp_path / "bad.tsv", [(t, "a") for t, _ in separable(20, seed=0)])
    code, out, err = cli("train", "--task", "classify", bad, "--max-steps", "2", *TINY, "--out", run_dir, "--overwrite")
    assert_one_line_error(code, out, err, "one label")
    assert (run_dir / "best.safetensors").read_bytes() == before
    # And without --overwrite the run is not touched at all.
    assert_one_line_error(*cli("train", "--task", "classify", data, "--max-steps", "2", *TINY, "--out", run_dir),
                          "--overwrite")


def test_a_failure_after_the_run_directory_is_opened_leaves_no_checkpoint(tmp_path):
    """Vectors of the wrong size are found when the model is built; the run directory has no
    checkpoint then, and the same --out takes a corrected run without --overwrite."""
    data = write_tsv(tmp_path / "d.tsv", separable(20, seed=0))
    vecs = tmp_path / "v.txt"
    vecs.write_text("ab 0.1 0.2 0.3\nyz 0.3 0.2 0.1\n")
    run_dir = tmp_path / "r"
    code, err = _train_fails(run_dir, data, "--embeddings", vecs, pattern="3 dimensions")
    assert code == 2
    ok("train", "--task", "classify", data, "--max-steps", "2", *TINY, "--out", run_dir)
    assert (run_dir / "best.safetensors").is_file()


def test_one_hot_input_with_word_vectors_is_a_usage_error(tmp_path):
    """Like --freeze-embeddings without --embeddings, a conflict of options: exit code 2."""
    data = write_tsv(tmp_path / "d.tsv", separable(20, seed=0))
    vecs = tmp_path / "v.txt"
    vecs.write_text("ab " + " ".join(["0.1"] * 6) + "\n")
    code, _ = _train_fails(tmp_path / "r", data, "--one-hot", "--embeddings", vecs, pattern="one-hot")
    assert code == 2


# ----------------------------------------------------------------- options


def test_balanced_class_weights_on_a_skewed_set(tmp_path):
    examples = sentences({"pos": 30, "neg": 6}, seed=4)
    data = write_tsv(tmp_path / "d.tsv", examples)
    dev = write_tsv(tmp_path / "dev.tsv", sentences({"pos": 3, "neg": 3}, seed=8))
    for weights in ("balanced", "none"):
        summary = json.loads(ok("train", "--task", "classify", data, "--val-file", dev, "--class-weights", weights,
                                "--max-steps", "4", "--dropout", "0", *TINY, "--out", tmp_path / weights, "--json"))
        assert summary["steps"] == 4
        state = json.loads(ok("info", tmp_path / weights, "--json", "--latest"))["task_state"]
        assert state["class_weights"] == weights and state["label_counts"] == {"neg": 6, "pos": 30}
    # The weights change the loss, so the same seed trains other weights.
    from charrnn import load

    texts = [t for t, _ in examples[:4]]
    a = load(tmp_path / "balanced", device="cpu", latest=True).probabilities(texts)
    b = load(tmp_path / "none", device="cpu", latest=True).probabilities(texts)
    assert not bool((a - b).abs().max() < 1e-7)


@pytest.mark.parametrize("opts, check", [
    (["--one-hot"], {"one_hot": True}),
    (["--pool", "attention", "--no-bidirectional"], {"pool": "attention", "bidirectional": False}),
    (["--pool", "mean", "--cell", "gru"], {"pool": "mean", "cell": "gru"}),
])
def test_architecture_options_train(tmp_path, opts, check):
    data = write_tsv(tmp_path / "d.tsv", separable(30, seed=0))
    summary = json.loads(ok("train", "--task", "classify", data, *opts, "--max-steps", "3", *TINY,
                            "--out", tmp_path / "r", "--json"))
    assert summary["steps"] == 3
    info = json.loads(ok("info", tmp_path / "r", "--json"))
    for key, value in check.items():
        assert info["model_config"][key] == value, key
    labels = ok("predict", tmp_path / "r", write_lines(tmp_path / "t.txt", ["abab", "yzyz"])).splitlines()
    assert len(labels) == 2 and set(labels) <= {"a", "z"}


def test_bpe_tokenizer_trains_a_classifier(tmp_path):
    data = write_tsv(tmp_path / "d.tsv", sentences({"neg": 30, "pos": 30}, seed=1))
    code, out, err = cli("train", "--task", "classify", data, "--tokenizer", "bpe", "--vocab-size", "300",
                         "--max-steps", "3", *TINY, "--out", tmp_path / "r", "--json")
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["steps"] == 3
    info = json.loads(ok("info", tmp_path / "r", "--json"))
    assert info["tokenizer"] == "bpe" and 2 < info["vocab_size"] <= 300
    lines = ok("predict", tmp_path / "r", write_lines(tmp_path / "t.txt", ["a good film", "a dull plot"]),
               "--json").splitlines()
    assert [json.loads(l)["label"] in ("neg", "pos") for l in lines] == [True, True]


def test_freeze_embeddings_needs_embeddings(tmp_path):
    data = write_tsv(tmp_path / "d.tsv", separable(20, seed=0))
    code, _ = _train_fails(tmp_path / "r", data, "--freeze-embeddings", pattern="--embeddings")
    assert code == 2


def test_word_vectors_initialise_a_word_model(tmp_path):
    data = write_tsv(tmp_path / "d.tsv", sentences({"neg": 20, "pos": 20}, seed=3))
    rng = random.Random(0)
    vecs = tmp_path / "vecs.txt"
    words = WORDS["pos"] + WORDS["neg"] + COMMON
    vecs.write_text("".join(w + " " + " ".join(f"{rng.uniform(-1, 1):.4f}" for _ in range(6)) + "\n" for w in words))
    run_dir = tmp_path / "r"
    ok("train", "--task", "classify", data, "--tokenizer", "word", "--embeddings", vecs, "--freeze-embeddings",
       "--max-steps", "3", *TINY, "--out", run_dir)
    state = json.loads(ok("info", run_dir, "--json"))["task_state"]
    assert state["freeze_embeddings"] is True
    assert state["embeddings"]["file"] == str(vecs) and state["embeddings"]["found"] > 0


# ----------------------------------------------------------------- resume


def test_resume_continues_a_classifier_run(tmp_path):
    data = write_tsv(tmp_path / "d.tsv", separable(30, seed=0))
    run_dir = tmp_path / "r"
    first = json.loads(ok("train", "--task", "classify", data, "--max-steps", "4", "--eval-interval", "2", *TINY,
                          "--out", run_dir, "--json"))
    assert first["steps"] == 4 and first["resumed_from"] is None
    # The architecture cannot change on resume.
    code, out, err = cli("train", "--task", "classify", data, "--resume", "--max-steps", "8", "--pool", "mean",
                         "--out", run_dir, "--quiet")
    assert_one_line_error(code, out, err, "--pool")
    assert json.loads(ok("info", run_dir, "--json", "--latest"))["step"] == 4
    summary = json.loads(ok("train", "--task", "classify", data, "--resume", "--max-steps", "8", "--out", run_dir,
                            "--quiet", "--json"))
    assert summary["resumed_from"] == 4 and summary["steps"] == 8 and summary["steps_this_run"] == 4
    info = json.loads(ok("info", run_dir, "--json", "--latest"))
    assert info["step"] == 8 and info["task"] == "classify" and info["task_state"]["labels"] == ["a", "z"]
    assert info["model_config"]["hidden_size"] == 8


@pytest.mark.parametrize("given, kind", [([], "word"), (["--vocab-size", "290"], "word"),
                                         (["--tokenizer", "char"], "char")])
def test_the_tokenizer_defaults_to_words_for_sentences(tmp_path, given, kind):
    """Sentences get the word tokenizer (also with --vocab-size alone); a kind given wins."""
    data = write_tsv(tmp_path / "d.tsv", sentences({"neg": 30, "pos": 30}, seed=1))
    code, out, err = cli("train", "--task", "classify", data, *given, "--max-steps", "2", *TINY, "--out",
                         tmp_path / "r", "--json")
    assert code == 0 and "Traceback" not in err, err
    info = json.loads(ok("info", tmp_path / "r", "--json"))
    assert info["tokenizer"] == kind
    if given[:1] == ["--vocab-size"]:
        assert info["vocab_size"] <= 290


def test_names_get_the_char_tokenizer(tmp_path):
    names = [(w, "a") for w in ("abba", "baab", "abab", "bbaa")] * 5 + [(w, "z") for w in ("yzzy", "zyzy", "yyzz")] * 5
    data = write_tsv(tmp_path / "d.tsv", names)
    ok("train", "--task", "classify", data, "--max-steps", "2", *TINY, "--out", tmp_path / "r")
    assert json.loads(ok("info", tmp_path / "r", "--json"))["tokenizer"] == "char"


def test_readme_classifier_example_runs(tmp_path, monkeypatch, capsys):
    """The README's classifier example, run as written against a classifier at its path."""
    import re

    from conftest import ROOT

    data = write_tsv(tmp_path / "d.tsv", [(t, "1" if lab == "pos" else "0")
                                          for t, lab in sentences({"neg": 20, "pos": 20}, seed=3)])
    ok("train", "--task", "classify", data, "--max-steps", "2", *TINY, "--out", tmp_path / "runs" / "sst2")
    monkeypatch.chdir(tmp_path)
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"A classifier run loads as a `Classifier`:\n\n```python\n(.*?)```", readme, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[[(") and 0.0 <= float(lines[1]) <= 1.0
