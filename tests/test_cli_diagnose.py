"""``charrnn diagnose gradients`` and ``charrnn diagnose memory`` end to end: tables on
stdout, --json, pictures, one-line errors. Tiny sizes throughout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY_TEXT
from test_cli import assert_one_line_error, run
from test_cli_seq2seq import ok

PNG = b"\x89PNG\r\n\x1a\n"
FRESH = ["--hidden-size", "4", "--length", "6", "--sequences", "2", "--warmup", "2"]
TRAINING = ["--training", "--steps", "3", "--hidden-size", "4", "--batch-size", "2", "--bptt", "5"]
MEMORY = ["--cells", "gru", "--lags", "4", "--steps", "2", "--hidden-size", "4", "--seed", "1"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A tiny language model trained for a few steps, and its text."""
    base = tmp_path_factory.mktemp("diagnose")
    corpus = base / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    run_dir = base / "run"
    ok("train", corpus, "--out", run_dir, "--max-steps", "3", "--layers", "1", "--hidden-size", "8",
       "--embedding-dim", "4", "--batch-size", "4", "--bptt", "8", "--device", "cpu", "--precision", "fp32",
       "--threads", "1", "--quiet")
    return corpus, run_dir


def test_fresh_cells_table_json_and_picture(capsys, tmp_path):
    code, out, err = run(capsys, "diagnose", "gradients", *FRESH)
    assert code == 0 and err == ""
    assert "decay per step" in out and all(c in out for c in ("rnn", "lstm", "gru"))
    code, out, _ = run(capsys, "diagnose", "gradients", *FRESH, "--cells", "lstm,rnn", "--json")
    res = json.loads(out)
    assert res["mode"] == "fresh" and [p["cell"] for p in res["profiles"]] == ["lstm", "rnn"]
    assert all(len(p["norms"]) == 6 and 0 < p["fit"]["per_step"] < 1 for p in res["profiles"])
    png = tmp_path / "g.png"
    code, out, err = run(capsys, "diagnose", "gradients", *FRESH, "-o", png)
    assert code == 0 and png.read_bytes().startswith(PNG)


def test_fresh_cells_can_read_a_text(capsys, tiny_corpus):
    code, out, _ = run(capsys, "diagnose", "gradients", *FRESH, "--cells", "gru", "--text", tiny_corpus, "--json")
    assert code == 0 and json.loads(out)["profiles"][0]["cell"] == "gru"


def test_a_trained_checkpoint_on_its_text(capsys, lm_run, tmp_path):
    corpus, run_dir = lm_run
    args = ["diagnose", "gradients", run_dir, "--text", corpus, "--length", "8", "--sequences", "2", "--warmup", "3"]
    code, out, err = run(capsys, *args, "--json")
    assert code == 0 and err == ""
    (prof,) = json.loads(out)["profiles"]
    assert prof["cell"] == "lstm" and prof["hidden_size"] == 8 and len(prof["norms"]) == 8
    assert prof["label"] == "run (lstm 1x8)"
    code, out, _ = run(capsys, *args)
    assert code == 0 and "run (lstm 1x8)" in out and "L_T (nats)" in out
    png = tmp_path / "ck.png"
    code, _, _ = run(capsys, *args, "-o", png)
    assert code == 0 and png.read_bytes().startswith(PNG)


def test_training_with_and_without_clipping(capsys, tiny_corpus, tmp_path):
    code, out, err = run(capsys, "diagnose", "gradients", *TRAINING, "--text", tiny_corpus, "--json")
    assert code == 0 and "two runs of 3 steps" in err
    res = json.loads(out)
    assert res["mode"] == "training" and [r["clip"] for r in res["runs"]] == [1.0, None]
    assert all(len(r["norms"]) == 3 and len(r["losses"]) == 3 for r in res["runs"])
    assert res["runs"][0]["norms"][0] == res["runs"][1]["norms"][0]  # the same start
    png = tmp_path / "clip.png"
    code, out, _ = run(capsys, "diagnose", "gradients", *TRAINING, "--text", tiny_corpus, "-o", png)
    assert code == 0 and "max norm" in out and "no clip" in out and png.read_bytes().startswith(PNG)


def test_memory_table_json_and_picture(capsys, tmp_path):
    code, out, err = run(capsys, "diagnose", "memory", *MEMORY)
    assert code == 0 and "longest lag learned" in out and "gru lag 4" in err
    code, out, _ = run(capsys, "diagnose", "memory", *MEMORY, "--task", "copy", "--remember", "2", "--json")
    res = json.loads(out)
    assert res["lags"] == [4] and res["cells"] == ["gru"] and len(res["results"]) == 1
    assert res["chance"] == pytest.approx(1 / 8) and res["config"]["task"] == "copy"
    png = tmp_path / "m.png"
    code, _, _ = run(capsys, "diagnose", "memory", *MEMORY, "-o", png)
    assert code == 0 and png.read_bytes().startswith(PNG)


@pytest.mark.parametrize("argv, pattern", [
    (["diagnose", "gradients", "--cells", "lstm,tcn"], "'tcn': not a cell"),
    (["diagnose", "memory", "--lags", "10,0"], "at least 1"),
    (["diagnose", "memory", "--lags", "ten"], "whole numbers"),
    (["diagnose", "memory", "--task", "copy", "--lags", "2", "--remember", "3"], "too short"),
    (["diagnose", "gradients", "missing-run", "--text", "x.txt"], "missing-run"),
    (["diagnose", "gradients", "--training"], "needs a text"),
    (["diagnose", "gradients", "-o", "picture.txt"], "extension"),
    (["diagnose", "gradients", "--steps", "5"], "--steps is for --training"),
])
def test_bad_input_is_one_line(capsys, argv, pattern):
    assert_one_line_error(*run(capsys, *argv), pattern)


def test_checkpoint_mistakes_are_one_line(capsys, lm_run):
    corpus, run_dir = lm_run
    assert_one_line_error(*run(capsys, "diagnose", "gradients", run_dir), "own text")
    assert_one_line_error(*run(capsys, "diagnose", "gradients", run_dir, "--text", corpus, "--cells", "rnn"),
                          "--cells is for fresh cells")
    assert_one_line_error(*run(capsys, "diagnose", "gradients", run_dir, "--text", corpus, "--hidden-size", "9"),
                          "--hidden-size is for fresh cells")
    assert_one_line_error(*run(capsys, "diagnose", "gradients", run_dir, "--text", corpus, "--length", "5000"),
                          "needs at least")
    short = Path("short.txt")
    short.write_text("the cat", encoding="utf-8")
    assert_one_line_error(*run(capsys, "diagnose", "gradients", *FRESH, "--text", short), "needs at least")
