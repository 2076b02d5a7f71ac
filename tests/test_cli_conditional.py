"""``charrnn train --task conditional``, ``sample --label``, ``eval perplexity``, ``info``
and ``predict`` end to end on a tiny synthetic task: words of the letters a-m (label a)
and of n-z (label b). The expectations are computed here from the data and from the
model's own logits, not taken from the product."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_TEXT
from test_cli import assert_one_line_error
from test_cli_seq2seq import cli as _cli
from test_cli_seq2seq import ok as _ok


def cli(*argv, stdin: bytes = b""):
    """The CLI in-process, with an empty stdin (``sample`` reads a prime from a stdin that is not a terminal)."""
    return _cli(*argv, stdin=stdin)


def ok(*argv, stdin: bytes = b"") -> str:
    return _ok(*argv, stdin=stdin)

HW = ["--device", "cpu", "--precision", "fp32", "--threads", "1", "--quiet"]
ALPHABET = {"a": set("abcdefghijklm"), "b": set("nopqrstuvwxyz")}


def words(seed: int, n: int = 150) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {label: sorted({"".join(rng.choice(sorted(letters)) for _ in range(rng.randint(2, 5))) for _ in range(n)})
            for label, letters in ALPHABET.items()}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("conditional")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        yield base


@pytest.fixture(scope="module")
def data(base):
    folder = base / "words"
    folder.mkdir()
    train = words(0)
    for label, ws in train.items():
        (folder / f"{label}.txt").write_text("".join(w + "\n" for w in ws), encoding="utf-8")
    return folder, train


@pytest.fixture(scope="module")
def run(base, data):
    """The two alphabets learned (a few seconds on one thread)."""
    run_dir = base / "gen"
    summary = json.loads(ok("train", "--task", "conditional", data[0], "--hidden-size", "24", "--embedding-dim", "8",
                            "--label-dim", "4", "--layers", "1", "--dropout", "0", "--batch-size", "16", "--lr", "0.02",
                            "--warmup-steps", "5", "--max-steps", "300", "--eval-interval", "100", *HW, "-o", run_dir,
                            "--json"))
    return run_dir, summary


@pytest.fixture(scope="module")
def lm_run(base):
    corpus = base / "corpus.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    ok("train", corpus, "--hidden-size", "8", "--embedding-dim", "6", "--layers", "1", "--max-steps", "2",
       "--batch-size", "2", "--bptt", "8", *HW, "--out", base / "lm")
    return base / "lm"


# ----------------------------------------------------------------- training and sampling


def test_training_reports_loss_and_bpc_and_info_shows_the_labels(run, data):
    run_dir, summary = run
    assert summary["task"] == "conditional" and summary["labels"] == ["a", "b"] and summary["steps"] == 300
    # bpc counts each example's characters and one for its end; loss counts tokens (EOS included): the same count.
    assert summary["val_bpc"] == pytest.approx(summary["val_loss"] / math.log(2))
    info = json.loads(ok("info", run_dir, "--json"))
    assert info["task"] == "conditional" and info["task_state"]["labels"] == ["a", "b"]
    assert info["model_config"]["label_dim"] == 4 and info["model_config"]["vocab_size"] == 26 + 1 + 3
    table = ok("info", run_dir)
    assert "labels" in table and "a (" in table and "b (" in table


@pytest.mark.parametrize("label", ["a", "b"])
def test_sample_gives_n_lines_of_the_labels_alphabet(run, label):
    run_dir, _ = run
    out = ok("sample", run_dir, "--label", label, "-N", "12", "--seed", "1", "-t", "0.5")
    lines = out.split("\n")
    assert lines[-1] == "" and len(lines) == 13  # one sample per line
    assert all(line and set(line) <= ALPHABET[label] for line in lines[:-1]), lines


def test_json_samples_end_at_eos_or_the_length_limit(run):
    run_dir, _ = run
    res = json.loads(ok("sample", run_dir, "--label", "b", "-N", "10", "--seed", "2", "--json"))
    assert res["label"] == "b" and len(res["samples"]) == 10 and res["text"] == res["samples"][0]["text"]
    assert all(s["finish_reason"] == "end" and s["tokens"] == len(s["text"]) for s in res["samples"])
    assert all(s["logprob"] < 0 for s in res["samples"])
    capped = json.loads(ok("sample", run_dir, "--label", "b", "-N", "4", "--seed", "2", "--length", "2", "--json"))
    assert all(s["tokens"] <= 2 for s in capped["samples"])
    assert all(s["finish_reason"] == ("end" if s["tokens"] < 2 else "length") or s["tokens"] == 2
               for s in capped["samples"])


def test_the_prime_starts_each_sample_and_is_echoed(run):
    run_dir, _ = run
    lines = ok("sample", run_dir, "--label", "a", "-N", "5", "--seed", "3", "-p", "ab").splitlines()
    assert len(lines) == 5 and all(line.startswith("ab") for line in lines)
    bare = ok("sample", run_dir, "--label", "a", "-N", "5", "--seed", "3", "-p", "ab", "--no-echo-prime").splitlines()
    assert ["ab" + b for b in bare] == lines


def test_sampling_options_and_beam_search(run):
    run_dir, _ = run
    greedy = ok("sample", run_dir, "--label", "a", "--greedy").strip()
    assert ok("sample", run_dir, "--label", "a", "--beam", "1").strip() == greedy
    three = ok("sample", run_dir, "--label", "a", "--beam", "4", "--num-return", "3").splitlines()
    assert len(three) == 3 and len(set(three)) == 3
    for opts in (["--top-k", "2"], ["--top-p", "0.5"], ["--min-p", "0.2"], ["--repetition-penalty", "1.5"],
                 ["--no-repeat-ngram", "2"]):
        lines = ok("sample", run_dir, "--label", "b", "-N", "4", "--seed", "1", *opts).splitlines()
        assert len(lines) == 4 and all(set(line) <= ALPHABET["b"] for line in lines), opts
    same = [ok("sample", run_dir, "--label", "b", "-N", "6", "--seed", "9") for _ in range(2)]
    assert same[0] == same[1]


def test_unique_and_novel_draw_more_until_found(run, data):
    run_dir, _ = run
    train = set(data[1]["a"]) | set(data[1]["b"])
    lines = ok("sample", run_dir, "--label", "a", "-N", "30", "--seed", "1", "--unique", "--novel").splitlines()
    assert len(lines) == 30 and len(set(lines)) == 30 and not set(lines) & train
    # Without --novel, some of the samples are training words (the check means something).
    plain = ok("sample", run_dir, "--label", "a", "-N", "60", "--seed", "1", "-t", "0.5").splitlines()
    assert set(plain) & train
    # Greedy decoding has one output: a second unique one is never found; a warning says so.
    code, out, err = cli("sample", run_dir, "--label", "a", "-N", "3", "--greedy", "--unique")
    assert code == 0 and len(out.splitlines()) == 1
    assert "warning: found 1 unique sample(s) of the 3 asked for in 100 draws" in err


def test_the_label_errors(run, lm_run):
    run_dir, _ = run
    assert_one_line_error(*cli("sample", run_dir, "-N", "3"), "choose one with --label (a, b)")
    assert_one_line_error(*cli("sample", run_dir, "--label", "c"), "unknown label 'c'; the labels are: a, b")
    assert_one_line_error(*cli("sample", lm_run, "--label", "a"), "--label")
    assert_one_line_error(*cli("sample", lm_run, "--novel"), "--task conditional")


def test_predict_on_a_conditional_run_says_to_sample(run, tmp_path):
    run_dir, _ = run
    (tmp_path / "in.txt").write_text("abc\n", encoding="utf-8")
    assert_one_line_error(*cli("predict", run_dir, tmp_path / "in.txt"), "sample")
    assert "--label" in cli("predict", run_dir, tmp_path / "in.txt")[2]


# ----------------------------------------------------------------- eval perplexity


def test_eval_perplexity_is_the_mean_nll_of_the_models_own_logits(run, tmp_path):
    from charrnn.api import load

    run_dir, _ = run
    examples = [("abc", "a"), ("zzy", "b"), ("mad", "a"), ("b", "b")]  # "b" under label b: an unlikely letter
    file = tmp_path / "dev.tsv"
    file.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in examples), encoding="utf-8")
    res = json.loads(ok("eval", "perplexity", run_dir, file, "--json"))
    model = load(run_dir, device="cpu")
    tok, c = model.tokenizer, model.model.config
    nll, count = 0.0, 0
    with torch.no_grad():
        for text, label in examples:
            ids = [c.sos_id, *tok.encode(text).tolist(), c.eos_id]
            logits, _ = model.model(torch.tensor([ids[:-1]]), torch.tensor([model.labels.index(label)]))
            nll -= F.log_softmax(logits[0], dim=-1).gather(1, torch.tensor(ids[1:]).view(-1, 1)).sum().item()
            count += len(ids) - 1
    assert res["tokens"] == count == sum(len(t) + 1 for t, _ in examples) and res["examples"] == 4
    assert res["loss"] == pytest.approx(nll / count, rel=1e-5)
    assert res["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert res["bpc"] == pytest.approx(nll / math.log(2) / res["chars"], rel=1e-5) and res["chars"] == count
    assert "bits per character" in ok("eval", "perplexity", run_dir, file)


def test_eval_perplexity_refuses_labels_the_model_does_not_know(run, tmp_path):
    run_dir, _ = run
    file = tmp_path / "dev.txt"
    file.write_text("__label__a abc\n__label__q xyz\n", encoding="utf-8")
    assert_one_line_error(*cli("eval", "perplexity", run_dir, file), "'q'")


# ----------------------------------------------------------------- training options


@pytest.mark.parametrize("opts, name", [(["--pool", "mean"], "--pool"), (["--bptt", "16"], "--bptt"),
                                        (["--attention", "dot"], "--attention")])
def test_other_tasks_options_are_refused(data, tmp_path, opts, name):
    code, out, err = cli("train", "--task", "conditional", data[0], *opts, "--max-steps", "2", *HW, "-o",
                         tmp_path / "r")
    assert_one_line_error(code, out, err, name)


def test_conditional_options_on_other_tasks(lm_run, tmp_path, base):
    corpus = base / "corpus.txt"
    assert_one_line_error(*cli("train", corpus, "--label-dim", "4", "--max-steps", "2", *HW, "-o", tmp_path / "r"),
                          "--label-dim: for --task conditional only")
    assert_one_line_error(*cli("train", corpus, "--no-label-init", "--max-steps", "2", *HW, "-o", tmp_path / "s"),
                          "--label-init: for --task conditional only")


def test_one_label_and_stdin_are_refused(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "x.txt").write_text("ab\ncd\nef\ngh\n", encoding="utf-8")
    assert_one_line_error(*cli("train", "--task", "conditional", tmp_path / "one", *HW, "-o", tmp_path / "r"),
                          "at least two")
    assert_one_line_error(*cli("train", "--task", "conditional", "-", *HW, "-o", tmp_path / "r"), "one labelled")


def test_a_tsv_with_a_subword_tokenizer_and_resume(tmp_path, data):
    """TSV input, --tokenizer bpe, --no-label-init, a GRU; a resumed run equals one run."""
    rows = [(w, lab) for lab, ws in data[1].items() for w in ws]
    file = tmp_path / "w.tsv"
    file.write_text("word\tlanguage\n" + "".join(f"{w}\t{lab}\n" for w, lab in rows), encoding="utf-8")
    common = ["train", "--task", "conditional", file, "--tokenizer", "bpe", "--vocab-size", "300", "--cell", "gru",
              "--no-label-init", "--hidden-size", "16", "--embedding-dim", "8", "--batch-size", "8",
              "--eval-interval", "10", *HW]
    first = json.loads(ok(*common, "--max-steps", "12", "-o", tmp_path / "a", "--json"))
    assert first["steps"] == 12
    code, out, err = cli("train", "--task", "conditional", file, "--resume", "--label-dim", "9", "--max-steps", "20",
                         "-o", tmp_path / "a", "--quiet")
    assert_one_line_error(code, out, err, "--label-dim")
    resumed = json.loads(ok("train", "--task", "conditional", file, "--resume", "--max-steps", "20", "--threads", "1",
                            "--quiet", "-o", tmp_path / "a", "--json"))
    whole = json.loads(ok(*common, "--max-steps", "20", "-o", tmp_path / "b", "--json"))
    assert resumed["resumed_from"] == 12
    for key in ("val_loss", "val_bpc", "final_val_loss", "best_step"):
        assert resumed[key] == whole[key], key
    from charrnn.checkpoint import load_checkpoint

    a, b = load_checkpoint(tmp_path / "a", latest=True), load_checkpoint(tmp_path / "b", latest=True)
    assert a.model_config.label_init is False and a.tokenizer.kind == "bpe"
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    lines = ok("sample", tmp_path / "a", "--label", "a", "-N", "3", "--seed", "1").split("\n")
    assert len(lines) == 4 and not any(line.startswith(" ") for line in lines)  # the word's leading space is not shown
