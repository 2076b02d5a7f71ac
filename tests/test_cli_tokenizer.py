"""The tokenizer commands, and subword models through train, sample and eval (issue 4)."""

import io
import json
import math
import os
import subprocess
import sys

import pytest
from conftest import TINY_TEXT
from test_cli import TINY_MODEL, assert_one_line_error, run

# Everything that is special to the tokenizers, without a trailing line break.
TRICKY_TEXT = ("the cat sat on the mat.\r\nα zebra 😀 한국어 ▁ x\t\ty\n\n  two  spaces \x01\x1b[0m\u2028"
               "unseen ∮ 𝔘 \ufffd end")


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory):
    from charrnn.text.tokenizers import SentencePieceTokenizer, save_tokenizer

    path = tmp_path_factory.mktemp("tok") / "bpe.tok"
    save_tokenizer(path, SentencePieceTokenizer.train("bpe", TINY_TEXT, 300))
    return path


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    """A tiny model trained with --tokenizer bpe; the corpus is gone afterwards."""
    from charrnn.cli import main

    base = tmp_path_factory.mktemp("bpe")
    corpus = base / "tiny.txt"
    corpus.write_text(TINY_TEXT * 3, encoding="utf-8")
    run_dir = base / "run"
    try:
        main(["train", str(corpus), "--tokenizer", "bpe", "--vocab-size", "300", "--out", str(run_dir),
              "--max-steps", "20", "--quiet", *TINY_MODEL])
    except SystemExit as e:
        assert not e.code
    corpus.unlink()
    return run_dir


def _stdin(monkeypatch, data: bytes):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_tokenizer_train_writes_a_file_and_reports(capsys, tmp_path, tiny_corpus):
    from charrnn.text.tokenizers import load_tokenizer

    code, out, err = run(capsys, "tokenizer", "train", tiny_corpus, "--kind", "unigram", "--vocab-size", "290",
                         "-o", tmp_path / "u.tok", "--json")
    assert code == 0
    summary = json.loads(out)
    tok = load_tokenizer(tmp_path / "u.tok")
    assert summary["kind"] == tok.kind == "unigram" and summary["vocab_size"] == tok.vocab_size <= 290
    assert summary["tokens"] == len(tok.encode(TINY_TEXT)) and summary["chars"] == len(TINY_TEXT)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []  # written atomically
    code, out, err = run(capsys, "tokenizer", "train", tiny_corpus, "--vocab-size", "5000", "-o", tmp_path / "b.tok")
    assert code == 0 and out == ""
    assert "warning" in err and "supports only" in err and "characters per token" in err


def test_encode_then_decode_is_byte_exact_in_process(capsys, monkeypatch, tok_file, tmp_path):
    from charrnn.text.tokenizers import load_tokenizer

    tok = load_tokenizer(tok_file)
    for text in (TRICKY_TEXT, TRICKY_TEXT + "\n", "", "\n", "one line"):
        _stdin(monkeypatch, text.encode())
        code, ids_out, err = run(capsys, "tokenizer", "encode", "-", "--tokenizer", tok_file)
        assert code == 0 and err == ""
        lines = ids_out.split("\n")
        assert len(lines) == len(text.split("\n"))  # one output line per input line
        assert [[int(x) for x in line.split()] for line in lines] == tok.encode_lines(text.split("\n"))
        (tmp_path / "ids.txt").write_text(ids_out, encoding="utf-8")
        code, back, err = run(capsys, "tokenizer", "decode", tmp_path / "ids.txt", "--tokenizer", tok_file)
        assert code == 0 and back == text


def test_encode_decode_through_a_real_pipe(tok_file, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(TRICKY_TEXT.encode())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    py = sys.executable
    cmd = (f"{py} -m charrnn tokenizer encode {src} --tokenizer {tok_file} | "
           f"{py} -m charrnn tokenizer decode - --tokenizer {tok_file} > {tmp_path / 'out.txt'}")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stderr == b""
    assert (tmp_path / "out.txt").read_bytes() == src.read_bytes()


def test_encode_pieces_and_tokenizer_from_a_checkpoint(capsys, bpe_run, tmp_path):
    (tmp_path / "t.txt").write_text("the cat 😀\nsat", encoding="utf-8")
    code, pieces, _ = run(capsys, "tokenizer", "encode", tmp_path / "t.txt", "--tokenizer", bpe_run, "--pieces")
    assert code == 0
    assert pieces.split("\n")[0].split(" ")[:2] == ["the", "▁cat"] and "<0xF0>" in pieces
    # A run directory and its checkpoint file give the ids of the tokenizer inside.
    code, a, _ = run(capsys, "tokenizer", "encode", tmp_path / "t.txt", "--tokenizer", bpe_run)
    code, b, _ = run(capsys, "tokenizer", "encode", tmp_path / "t.txt", "--tokenizer", bpe_run / "best.safetensors")
    from charrnn.checkpoint import load_checkpoint

    tok = load_checkpoint(bpe_run).tokenizer
    assert a == b == "\n".join(" ".join(map(str, ids)) for ids in tok.encode_lines(["the cat 😀", "sat"]))


def test_subword_run_samples_and_evaluates_from_the_checkpoint_alone(capsys, bpe_run, tmp_path):
    code, out, err = run(capsys, "info", bpe_run, "--json")
    assert code == 0 and json.loads(out)["tokenizer"] == "bpe"
    code, a, err = run(capsys, "sample", bpe_run, "-p", "the ", "-n", "30", "--seed", "3")
    assert code == 0 and err == "" and a.startswith("the ") and a.endswith("\n")
    code, b, _ = run(capsys, "sample", bpe_run, "-p", "the ", "-n", "30", "--seed", "3", "--json")
    data = json.loads(b)
    assert data["samples"][0]["tokens"] == 30 and a == "the " + data["text"] + "\n"
    code, c, _ = run(capsys, "sample", bpe_run, "-p", "the ", "--max-chars", "25", "--seed", "3", "--no-echo-prime")
    assert code == 0 and len(c) == 25 + 1
    code, d, _ = run(capsys, "sample", bpe_run, "-p", "the ", "--beam", "3", "--num-return", "2", "-n", "8", "--json")
    assert code == 0 and len(json.loads(d)["samples"]) == 2
    # eval: perplexity per token, bits per character of the input.
    text = "the dog sat on the log. a cat met a dog.\n"
    (tmp_path / "held.txt").write_text(text, encoding="utf-8")
    code, out, err = run(capsys, "eval", "perplexity", bpe_run, tmp_path / "held.txt", "--json")
    assert code == 0 and err == ""
    res = json.loads(out)
    import charrnn

    tok = charrnn.load(bpe_run, device="cpu").tokenizer
    ids = tok.encode(text)
    assert res["tokens"] == len(ids) - 1 < res["chars"] and res["unknown"] == 0
    assert res["chars"] == len(text) - len(tok.decode(ids[:1]))
    assert res["bpc"] == pytest.approx(res["loss"] * res["tokens"] / math.log(2) / res["chars"])
    assert res["perplexity"] == pytest.approx(math.exp(res["loss"]))
    code, out, _ = run(capsys, "eval", "perplexity", bpe_run, tmp_path / "held.txt")
    assert code == 0 and "bits per character" in out and "per token" in out


def test_train_reuses_a_tokenizer_file(capsys, tok_file, tiny_corpus, tmp_path):
    from charrnn.checkpoint import load_checkpoint
    from charrnn.text.tokenizers import load_tokenizer

    code, _out, err = run(capsys, "train", tiny_corpus, "--tokenizer-file", tok_file, "--out", tmp_path / "r",
                         "--max-steps", "2", "--quiet", *TINY_MODEL)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "r").tokenizer.proto == load_tokenizer(tok_file).proto


@pytest.mark.parametrize("opts, pattern", [
    (["--tokenizer", "bpe", "--tokenizer-file", "x.tok"], "--tokenizer-file"),
    (["--vocab-size", "500"], "--vocab-size"),
    (["--tokenizer", "char", "--vocab-size", "500"], "--vocab-size"),
    (["--tokenizer", "bpe", "--vocab-size", "100"], "too small"),
    (["--tokenizer", "unigram", "--vocab-size", "262"], "at least 27"),
    (["--tokenizer", "morse"], "--tokenizer"),
])
def test_train_tokenizer_option_mistakes_are_usage_errors(capsys, tiny_corpus, tmp_path, opts, pattern):
    code, out, err = run(capsys, "train", tiny_corpus, "--out", tmp_path / "r", *opts)
    assert_one_line_error(code, out, err, pattern)
    assert code == 2


def test_train_with_a_capped_vocabulary_warns(capsys, tiny_corpus, tmp_path):
    code, out, err = run(capsys, "train", tiny_corpus, "--tokenizer", "word", "--out", tmp_path / "r",
                         "--max-steps", "2", "--quiet", "--json", *TINY_MODEL)
    assert code == 0 and json.loads(out)["steps"] == 2
    assert err.count("\n") == 1 and "warning" in err and "supports only" in err


def test_tokenizer_command_mistakes(capsys, monkeypatch, tok_file, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("5 6\n7 x 8\n")
    assert_one_line_error(*run(capsys, "tokenizer", "decode", ids, "--tokenizer", tok_file), "line 2: 'x' is not a token id")
    ids.write_text("5 6\n\n99999")
    assert_one_line_error(*run(capsys, "tokenizer", "decode", ids, "--tokenizer", tok_file), "line 3: token id 99999")
    ids.write_text("-1")
    assert_one_line_error(*run(capsys, "tokenizer", "decode", ids, "--tokenizer", tok_file), "token id -1")
    assert_one_line_error(*run(capsys, "tokenizer", "encode", ids, "--tokenizer", tmp_path / "none.tok"), "no such")
    assert_one_line_error(*run(capsys, "tokenizer", "encode", ids, "--tokenizer", ids), "not a charrnn tokenizer")
    assert_one_line_error(*run(capsys, "tokenizer", "encode", tmp_path / "missing.txt", "--tokenizer", tok_file),
                          "missing.txt")
    code, out, err = run(capsys, "tokenizer", "encode", ids)
    assert_one_line_error(code, out, err, "--tokenizer")
    assert code == 2
    assert_one_line_error(*run(capsys, "tokenizer", "train", tmp_path / "missing.txt", "-o", tmp_path / "t"), "missing")


def test_char_tokenizer_file_round_trip(capsys, monkeypatch, tiny_corpus, tmp_path):
    code, _, _err = run(capsys, "tokenizer", "train", tiny_corpus, "--kind", "char", "-o", tmp_path / "c.tok")
    assert code == 0
    _stdin(monkeypatch, b"the cat\nsat")
    code, out, _ = run(capsys, "tokenizer", "encode", "-", "--tokenizer", tmp_path / "c.tok")
    assert code == 0 and [len(line.split()) for line in out.split("\n")] == [7, 3]
    _stdin(monkeypatch, out.encode())
    code, back, _ = run(capsys, "tokenizer", "decode", "-", "--tokenizer", tmp_path / "c.tok")
    assert back == "the cat\nsat"
