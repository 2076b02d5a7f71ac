"""The command line end to end on a tiny corpus: products on stdout, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn.cli import main

TINY_MODEL = ["--layers", "1", "--hidden-size", "16", "--embedding-dim", "8", "--batch-size", "4", "--bptt", "8",
              "--device", "cpu", "--precision", "fp32", "--eval-interval", "10"]


def run(capsys, *argv):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def run_proc(*argv, input=None, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, argv)], input=input, capture_output=True,
                          env=env, timeout=120)


def assert_one_line_error(code, out, err, pattern=""):
    assert code != 0
    assert out == ""
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("charrnn: error: ") and pattern in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run shared by the tests of this module."""
    base = tmp_path_factory.mktemp("cli")
    corpus = base / "tiny.txt"
    from conftest import TINY_TEXT

    corpus.write_text(TINY_TEXT, encoding="utf-8")
    run_dir = base / "run"
    proc = run_proc("train", corpus, "--out", run_dir, "--max-steps", "30", "--json", *TINY_MODEL)
    assert proc.returncode == 0, proc.stderr.decode()
    return corpus, run_dir, proc


def test_train_json_summary_is_the_only_stdout(trained):
    corpus, run_dir, proc = trained
    summary = json.loads(proc.stdout)  # stdout is exactly one JSON object
    for key in ("val_loss", "val_bpc", "steps", "tokens_per_sec", "params", "checkpoint"):
        assert key in summary
    assert summary["steps"] == 30 and Path(summary["checkpoint"]) == run_dir / "best.safetensors"
    assert (run_dir / "metrics.jsonl").is_file() and (run_dir / "latest.safetensors").is_file()
    err = proc.stderr.decode()
    assert "val bpc" in err and "Traceback" not in err


def test_sample_prints_only_text_and_is_reproducible(capsys, trained):
    _, run_dir, _ = trained
    code, a, err = run(capsys, "sample", run_dir, "--prime", "the ", "-n", "40", "--seed", "3")
    assert code == 0 and a.startswith("the ") and len(a) == 4 + 40 + 1 and err == ""
    code, b, _ = run(capsys, "sample", run_dir, "--prime", "the ", "-n", "40", "--seed", "3")
    assert a == b
    code, c, _ = run(capsys, "sample", run_dir, "--prime", "the ", "-n", "40", "--seed", "3", "--no-echo-prime")
    assert c == a[4:]


def test_sample_greedy_matches_the_api(capsys, trained):
    import charrnn

    _, run_dir, _ = trained
    code, out, _ = run(capsys, "sample", run_dir, "-p", "a cat", "-n", "25", "--greedy", "--no-echo-prime")
    lm = charrnn.load(run_dir, device="cpu")
    assert out == lm.generate("a cat", length=25, greedy=True) + "\n"


def test_sample_unknown_prime_characters_warn_but_work(capsys, trained):
    _, run_dir, _ = trained
    code, out, err = run(capsys, "sample", run_dir, "-p", "한국 😀", "-n", "10", "--seed", "1")
    assert code == 0 and out.startswith("한국 😀")
    assert "warning" in err and "never saw" in err


def test_sample_prime_from_file_and_stdin(trained, tmp_path):
    _, run_dir, _ = trained
    prime = tmp_path / "prime.txt"
    prime.write_text("the dog")
    proc = run_proc("sample", run_dir, "--prime-file", prime, "-n", "5", "--seed", "1")
    assert proc.returncode == 0 and proc.stdout.decode().startswith("the dog")
    proc2 = run_proc("sample", run_dir, "-n", "5", "--seed", "1", input=b"the dog")
    assert proc2.stdout == proc.stdout


def test_sample_streams_into_a_closed_pipe_quietly(trained):
    _, run_dir, _ = trained
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = f"{sys.executable} -m charrnn sample {run_dir} -n 100000 --seed 1 | head -c 20"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, env=env, timeout=120)
    assert len(proc.stdout) == 20
    assert proc.stderr == b"" and proc.returncode == 0


def test_eval_perplexity_json_and_table(capsys, trained):
    corpus, run_dir, _ = trained
    code, out, err = run(capsys, "eval", "perplexity", run_dir, corpus, "--json")
    assert code == 0 and err == ""
    res = json.loads(out)
    assert set(res) >= {"perplexity", "bpc", "loss", "tokens", "chars", "unknown"}
    text = corpus.read_text()
    assert res["tokens"] == len(text) - 1 and res["unknown"] == 0
    import math

    assert res["perplexity"] == pytest.approx(math.exp(res["loss"]))
    code, out, _ = run(capsys, "eval", "perplexity", run_dir, corpus)
    assert code == 0 and "bits per character" in out


def test_eval_bf16_without_native_bf16_warns_and_scores_as_fp32(capsys, trained, monkeypatch):
    from charrnn import runtime

    corpus, run_dir, _ = trained
    code, out, err = run(capsys, "eval", "perplexity", run_dir, corpus, "--json", "--device", "cpu")
    exact = json.loads(out)["bpc"]
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    code, out, err = run(capsys, "eval", "perplexity", run_dir, corpus, "--json", "--device", "cpu",
                         "--precision", "bf16")
    assert code == 0 and "Traceback" not in err
    assert [l for l in err.splitlines() if l.strip()] == [
        "charrnn: warning: this CPU has no native bf16 (it needs AVX512-BF16 or AMX): running fp32 instead, "
        "which is faster here and exact"]
    assert json.loads(out)["bpc"] == exact


def test_eval_from_stdin_with_unknown_characters(trained):
    _, run_dir, _ = trained
    proc = run_proc("eval", "perplexity", run_dir, "-", "--json", input="the cat 😀 sat".encode())
    assert proc.returncode == 0
    res = json.loads(proc.stdout)
    assert res["unknown"] == 1 and res["tokens"] == len("the cat 😀 sat") - 2
    assert "warning" in proc.stderr.decode()


def test_info_text_and_json(capsys, trained):
    _, run_dir, _ = trained
    code, out, _ = run(capsys, "info", run_dir, "--json")
    data = json.loads(out)
    assert data["step"] == 30 and data["model_config"]["hidden_size"] == 16 and data["params"] > 0
    code, out, _ = run(capsys, "info", run_dir)
    assert code == 0 and "1x16 LSTM" in out and "best val bpc" in out


def test_python_m_charrnn_and_help():
    proc = run_proc("--help")
    assert proc.returncode == 0 and b"train" in proc.stdout and b"sample" in proc.stdout


# ----------------------------------------------------------------- user mistakes


def test_missing_corpus(capsys):
    assert_one_line_error(*run(capsys, "train", "missing.txt"), "missing.txt")


def test_empty_corpus(capsys, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    assert_one_line_error(*run(capsys, "train", tmp_path / "empty.txt"), "empty")


def test_corpus_too_small_names_the_options(capsys, tmp_path):
    (tmp_path / "small.txt").write_text("hello world, " * 20)
    code, out, err = run(capsys, "train", tmp_path / "small.txt", "--out", tmp_path / "r")
    assert_one_line_error(code, out, err, "--batch-size")
    assert "--bptt" in err


def test_invalid_utf8_names_the_offset_and_the_way_out(capsys, tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"abc" * 100 + b"\xc3\x28")
    code, out, err = run(capsys, "train", tmp_path / "bad.txt")
    assert_one_line_error(code, out, err, "byte offset 300")
    assert "--replace-invalid" in err
    # The way out works: bad bytes become U+FFFD and training goes ahead.
    (tmp_path / "bad2.txt").write_bytes(("the cat sat. " * 60).encode() + b"\xff" + b" on the mat." * 20)
    code, out, err = run(capsys, "train", tmp_path / "bad2.txt", "--replace-invalid", "--out", tmp_path / "r",
                         "--max-steps", "2", "--json", *TINY_MODEL)
    assert code == 0 and json.loads(out)["steps"] == 2


def test_directory_and_binary_corpus(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "train", tmp_path), "directory")
    (tmp_path / "x.bin").write_bytes(bytes(range(256)))
    assert_one_line_error(*run(capsys, "train", tmp_path / "x.bin"), "binary")


@pytest.mark.parametrize(
    "opts, pattern",
    [(["-t", "0"], "temperature"), (["-t", "-1"], "temperature"), (["--top-p", "0"], "top_p"),
     (["--top-p", "1.5"], "top_p"), (["--top-k", "0"], "top-k"), (["-n", "-3"], "length")],
)
def test_bad_sample_options(capsys, trained, opts, pattern):
    _, run_dir, _ = trained
    code, out, err = run(capsys, "sample", run_dir, *opts)
    assert_one_line_error(code, out, err, pattern)
    assert code == 2


def test_bad_train_option_values(capsys, tiny_corpus):
    assert_one_line_error(*run(capsys, "train", tiny_corpus, "--cell", "lstmm"), "--cell")
    assert_one_line_error(*run(capsys, "train", tiny_corpus, "--dropout", "1.5"), "--dropout")
    assert_one_line_error(*run(capsys, "train", tiny_corpus, "--tie-weights"), "tie_weights")
    assert_one_line_error(*run(capsys, "train", tiny_corpus, "--no-such-option"), "no-such-option")


def test_truncated_checkpoint_and_text_as_checkpoint(capsys, trained, tmp_path):
    corpus, run_dir, _ = trained
    data = (run_dir / "best.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    assert_one_line_error(*run(capsys, "sample", cut), "cut.safetensors")
    assert_one_line_error(*run(capsys, "eval", "perplexity", corpus, corpus), "not a readable charrnn checkpoint")
    assert_one_line_error(*run(capsys, "info", tmp_path / "nothing"), "no such")


def test_existing_run_is_not_overwritten_without_asking(capsys, trained):
    corpus, run_dir, _ = trained
    before = (run_dir / "best.safetensors").read_bytes()
    assert_one_line_error(*run(capsys, "train", corpus, "--out", run_dir), "--overwrite")
    assert (run_dir / "best.safetensors").read_bytes() == before


def test_errors_through_a_real_process_have_no_traceback(tmp_path):
    proc = run_proc("sample", tmp_path / "nope", "-n", "3")
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode().count("\n") == 1 and b"Traceback" not in proc.stderr


@pytest.mark.parametrize("sig, code, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_ctrl_c_and_sigterm_save_the_current_step(tmp_path, sig, code, word):
    import signal
    import time as _time

    from charrnn.checkpoint import load_checkpoint

    corpus = tmp_path / "c.txt"
    from conftest import TINY_TEXT

    corpus.write_text(TINY_TEXT * 50)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "train", corpus, "--out", tmp_path / "run",
                             "--max-steps", "1000000", *TINY_MODEL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = _time.time() + 60
    metrics = tmp_path / "run" / "metrics.jsonl"
    while _time.time() < deadline and (not metrics.exists() or metrics.stat().st_size == 0):
        _time.sleep(0.1)
    _time.sleep(0.5)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    text = err.decode()
    assert f"{word}" in text and "at step" in text and "Traceback" not in text and out == b""
    ck = load_checkpoint(tmp_path / "run", latest=True)
    assert ck.step > 0 and ck.metrics["interrupted"] is True
    assert ck.build_model() is not None


# ----------------------------------------------------------------- decoding options (issue 3)


def test_beam_json_reports_hypotheses_with_logprobs(capsys, trained):
    import charrnn

    _, run_dir, _ = trained
    code, out, err = run(capsys, "sample", run_dir, "-p", "the ", "-n", "12", "--beam", "4", "--num-return", "3", "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    hyps = data["samples"]
    assert len(hyps) == 3 and [h["score"] for h in hyps] == sorted([h["score"] for h in hyps], reverse=True)
    for key in ("text", "logprob", "tokens", "finish_reason"):
        assert key in hyps[0]
    assert data["tokens"] == sum(h["tokens"] for h in hyps) and data["seconds"] > 0 and data["tokens_per_sec"] > 0
    # The reported log-probability is the model's score of the returned text.
    lm = charrnn.load(run_dir, device="cpu")
    scored = lm.evaluate("the " + hyps[0]["text"]).nll - lm.evaluate("the ").nll
    assert hyps[0]["logprob"] == pytest.approx(-scored, abs=1e-3)
    code, text_out, _ = run(capsys, "sample", run_dir, "-p", "the ", "-n", "12", "--beam", "1", "--no-echo-prime")
    code, greedy_out, _ = run(capsys, "sample", run_dir, "-p", "the ", "-n", "12", "--greedy", "--no-echo-prime")
    assert text_out == greedy_out


def test_num_samples_with_separator_and_json(capsys, trained):
    _, run_dir, _ = trained
    code, out, _ = run(capsys, "sample", run_dir, "-p", "a", "-n", "10", "-N", "3", "--seed", "5", "--separator", "\n--\n")
    assert code == 0
    parts = out[:-1].split("\n--\n")
    assert len(parts) == 3 and all(p.startswith("a") and len(p) == 11 for p in parts)
    code, out, _ = run(capsys, "sample", run_dir, "-p", "a", "-n", "10", "-N", "3", "--seed", "5", "--json")
    assert [s["text"] for s in json.loads(out)["samples"]] == [p[1:] for p in parts]
    # Sample i of a batch is the single sample with seed + i.
    code, single, _ = run(capsys, "sample", run_dir, "-p", "a", "-n", "10", "--seed", "6")
    assert single[:-1] == parts[1]


def test_stop_string_ends_the_output(capsys, trained):
    _, run_dir, _ = trained
    code, full, _ = run(capsys, "sample", run_dir, "-p", "the", "-n", "200", "--seed", "2", "--no-echo-prime")
    assert "." in full
    code, out, _ = run(capsys, "sample", run_dir, "-p", "the", "-n", "200", "--seed", "2", "--no-echo-prime", "--stop", ".")
    assert out == full[: full.index(".")] + "\n"


@pytest.mark.parametrize(
    "opts, pattern",
    [(["--beam", "0"], "beam"), (["--repetition-penalty", "-1"], "repetition_penalty"),
     (["-N", "0"], "num_samples"), (["--beam", "2", "--top-k", "3"], "--top-k"),
     (["--beam", "2", "-N", "2"], "--num-samples"), (["--num-return", "2"], "--num-return"),
     (["--no-repeat-ngram", "-1"], "no_repeat_ngram"), (["--length-penalty", "-1"], "length_penalty")],
)
def test_bad_decoding_options(capsys, trained, opts, pattern):
    _, run_dir, _ = trained
    assert_one_line_error(*run(capsys, "sample", run_dir, *opts), pattern)


def test_readme_python_api_example_runs(trained, tmp_path, capsys):
    """The README's Python example, run as written against a trained run at its path."""
    import re
    import shutil

    from conftest import ROOT

    _, run_dir, _ = trained
    shutil.copytree(run_dir, tmp_path / "checkpoints" / "tinyshakespeare")
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert len(out) > 200


def test_progress_display_shows_a_window_of_skipped_steps_without_a_loss():
    """A log window in which every step was skipped has no training loss (None)."""
    import io

    from rich.console import Console

    from charrnn.cli.progress import TrainingDisplay
    from charrnn.training import Event

    display = TrainingDisplay(Console(file=io.StringIO(), force_terminal=True), enabled=True)
    with display:
        display.handle(Event("progress", 10, 1.0, {"progress": 0.5, "train_loss": None, "val_bpc": None,
                                                  "tokens_per_sec": 100.0}))
        display.handle(Event("progress", 20, 2.0, {"progress": 0.6, "train_loss": 1.25, "val_bpc": 1.5,
                                                  "tokens_per_sec": 100.0}))
    assert display.progress.tasks[0].fields["loss"] == "1.250"


def test_several_processes_refuse_stdin_and_an_uneven_batch_before_starting(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["train", "-", "--nproc", "2"])
    assert e.value.code == 2
    assert "several processes reads the corpus from files" in capsys.readouterr().err
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc " * 1000)
    with pytest.raises(SystemExit) as e:
        main(["train", str(corpus), "--nproc", "2", "--batch-size", "5", "--device", "cpu"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "charrnn: error: batch size 5 (the global batch) does not divide evenly among 2 processes"
