"""The regularisation options of `charrnn train` and `charrnn eval perplexity --dynamic`
on the command line: stored, shown, refused where they do not apply, reported."""

import json

import pytest
from conftest import TINY_TEXT
from test_cli import TINY_MODEL, assert_one_line_error, run

from charrnn.checkpoint import load_checkpoint

REG = ["--weight-drop", "0.3", "--input-dropout", "0.1", "--embedding-dropout", "0.1", "--variational", "--ar", "1",
       "--tar", "0.5", "--dropout", "0.2"]


@pytest.fixture(scope="module")
def reg_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("reg")
    corpus = base / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    out = base / "run"
    from charrnn.cli import main

    try:
        main(["train", str(corpus), "--out", str(out), "--max-steps", "12", "--quiet", *TINY_MODEL, *REG])
    except SystemExit as e:
        assert not e.code
    return corpus, out


def test_options_reach_the_checkpoint_info_and_run_file(capsys, reg_run):
    corpus, out = reg_run
    ck = load_checkpoint(out)
    m, t = ck.model_config, ck.train_config
    assert (m.weight_drop, m.input_dropout, m.embedding_dropout, m.variational, m.dropout) == (0.3, 0.1, 0.1, True, 0.2)
    assert (t.ar, t.tar) == (1.0, 0.5)
    code, text, _ = run(capsys, "info", out)
    assert code == 0 and "weight drop 0.3" in text and "variational dropout" in text
    toml = (out / "config.toml").read_text()
    assert "[regularisation]" in toml and "weight-drop = 0.3" in toml


def test_resume_keeps_them_and_refuses_a_change(capsys, reg_run):
    corpus, out = reg_run
    code, _, err = run(capsys, "train", corpus, "--out", out, "--resume", "--max-steps", "14", "--weight-drop", "0.5")
    assert_one_line_error(code, _, err, "--weight-drop 0.5 (the run has 0.3)")
    code, _, err = run(capsys, "train", corpus, "--out", out, "--resume", "--max-steps", "14", "--quiet")
    assert code == 0, err
    assert load_checkpoint(out, latest=True).model_config.weight_drop == 0.3


def test_other_tasks_refuse_them(capsys, tmp_path):
    data = tmp_path / "l.tsv"
    data.write_text("text\tlabel\n" + "a b\tx\nc d\ty\n" * 20)
    code, out, err = run(capsys, "train", data, "--task", "classify", "--ar", "1", "--weight-drop", "0.2")
    assert_one_line_error(code, out, err, "--weight-drop, --ar: for --task lm only (not for a classifier")


def test_eval_dynamic_reports_both_scores(capsys, reg_run):
    corpus, out = reg_run
    code, text, err = run(capsys, "eval", "perplexity", out, corpus, "--json", "--dynamic", "--dynamic-lr", "0")
    assert code == 0, err
    res = json.loads(text)
    dyn = res["dynamic"]
    # No adaptation: the one-stream score (the static one here is one stream too: a short text).
    assert dyn["bpc"] == pytest.approx(res["bpc"], rel=1e-6) and dyn["streams"] == 1
    assert dyn["settings"]["lr"] == 0 and dyn["seconds_per_100k_chars"] > 0
    code, text, err = run(capsys, "eval", "perplexity", out, corpus, "--json", "--dynamic", "--dynamic-lr", "0.01",
                          "--dynamic-segment", "16")
    dyn = json.loads(text)["dynamic"]
    assert dyn["bpc"] < json.loads(text)["bpc"] and dyn["change_percent"] < 0
    code, text, err = run(capsys, "eval", "perplexity", out, corpus, "--dynamic")
    assert code == 0 and "dynamic: bits per character" in text and "dynamic vs static bpc" in text


def test_dynamic_bad_values_and_wrong_model(capsys, reg_run, tmp_path):
    corpus, out = reg_run
    code, o, err = run(capsys, "eval", "perplexity", out, corpus, "--dynamic", "--dynamic-rule", "adam")
    assert code == 2 and "adam" in err and "Traceback" not in err
    data = tmp_path / "l.tsv"
    data.write_text("text\tlabel\n" + "a b\tx\nc d\ty\n" * 20)
    no_bptt = [a for i, a in enumerate(TINY_MODEL) if "--bptt" not in TINY_MODEL[max(i - 1, 0):i + 1]]  # no windows
    code, o, err = run(capsys, "train", data, "--task", "classify", "--out", tmp_path / "c", "--max-steps", "2",
                       "--quiet", *no_bptt)
    assert code == 0, err
    code, o, err = run(capsys, "eval", "perplexity", tmp_path / "c", data, "--dynamic")
    assert_one_line_error(code, o, err, "--dynamic is for language models")
