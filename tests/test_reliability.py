"""Reliability through the command line: signals, kill -9, resume, bad input, any Unicode."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn.checkpoint import load_checkpoint
from conftest import TINY_TEXT
from test_cli import TINY_MODEL, assert_one_line_error, run

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# Makes the save that follows a first signal hang, so that a second signal lands in it.
SLOW_SAVE_DRIVER = """
import sys, time
import charrnn.checkpoint as c
real = c.save_file
def slow(tensors, path, metadata=None):
    if '"interrupted": true' in (metadata or {}).get("metrics", ""):
        sys.stderr.write("slow save started\\n"); sys.stderr.flush()
        time.sleep(60)
    return real(tensors, path, metadata=metadata)
c.save_file = slow
from charrnn.cli import main
main(sys.argv[1:])
"""


def start_training(tmp_path, run, *extra, driver=None):
    corpus = tmp_path / "c.txt"
    if not corpus.exists():
        corpus.write_text(TINY_TEXT * 50)
    log = open(tmp_path / f"stderr-{time.monotonic_ns()}.txt", "w+b")
    head = [sys.executable, "-c", driver] if driver else [sys.executable, "-m", "charrnn"]
    proc = subprocess.Popen([*head, "train", corpus, "--out", run, *TINY_MODEL, "--eval-interval", "5", *extra],
                            stdout=subprocess.PIPE, stderr=log, env=ENV)
    return proc, log


def wait_for(cond, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def read(log) -> str:
    log.seek(0)
    return log.read().decode()


def test_sigint_then_resume_continues_the_run(tmp_path):
    run_dir = tmp_path / "run"
    proc, log = start_training(tmp_path, run_dir, "--max-steps", "1000000")
    assert wait_for(lambda: any(r.startswith('{"event": "eval"') for r in _lines(run_dir)))
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    last = read(log).strip().splitlines()[-1]
    assert "interrupted at step" in last and "saved to" in last and "--resume" in last
    step = load_checkpoint(run_dir, latest=True, resume=True).step
    code, out, err = run_in_process(tmp_path, run_dir, "--resume", "--max-steps", str(step + 3), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["resumed_from"] == step and summary["steps"] == step + 3


def _lines(run_dir: Path) -> list[str]:
    try:
        return (run_dir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []


def run_in_process(tmp_path, run_dir, *extra):
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from charrnn.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in ["train", tmp_path / "c.txt", "--out", run_dir, *TINY_MODEL, "--eval-interval", "5", *extra]])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def test_second_ctrl_c_stops_at_once_and_keeps_the_last_complete_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    proc, log = start_training(tmp_path, run_dir, "--max-steps", "1000000", driver=SLOW_SAVE_DRIVER)
    assert wait_for(lambda: any(r.startswith('{"event": "eval"') for r in _lines(run_dir)))
    proc.send_signal(signal.SIGINT)
    assert wait_for(lambda: "slow save started" in read(log), timeout=30)
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert time.monotonic() - t < 5  # at once, not after the 60 s save
    text = read(log)
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert "interrupted again" in last and "stopped at once" in last and "latest.safetensors holds step" in last
    ck = load_checkpoint(run_dir, latest=True, resume=True)  # the last complete one
    assert ck.metrics.get("interrupted") is None
    assert not list(run_dir.glob(".*.tmp"))  # the half-written file was removed


def test_kill_9_at_random_points_leaves_a_run_that_loads_and_resumes(tmp_path):
    rng = random.Random(1234)
    run_dir = tmp_path / "run"
    steps = []
    for i in range(4):
        extra = ["--max-steps", "1000000"] + (["--resume"] if i else [])
        proc, log = start_training(tmp_path, run_dir, *extra)
        assert wait_for(lambda: (run_dir / "latest.safetensors").exists())
        time.sleep(rng.uniform(0.0, 1.5))
        proc.kill()  # SIGKILL: no handler runs
        proc.wait(timeout=30)
        best = load_checkpoint(run_dir)
        latest = load_checkpoint(run_dir, latest=True, resume=True)
        assert best.build_model() is not None and latest.resume is not None
        steps.append(latest.step)
        for line in (run_dir / "metrics.jsonl").read_bytes().split(b"\n")[:-1]:
            json.loads(line)  # every complete line is a whole record
    assert steps == sorted(steps)
    code, out, err = run_in_process(tmp_path, run_dir, "--resume", "--max-steps", str(steps[-1] + 2), "--json")
    assert code == 0, err
    assert json.loads(out)["steps"] == steps[-1] + 2


# ------------------------------------------------------------------ resume options


@pytest.fixture
def small_run(tmp_path, capsys):
    (tmp_path / "c.txt").write_text(TINY_TEXT)
    code, out, err = run(capsys, "train", tmp_path / "c.txt", "--out", tmp_path / "run", *TINY_MODEL, "--max-steps", "6")
    assert code == 0, err
    return tmp_path / "c.txt", tmp_path / "run"


def test_resume_through_the_cli(small_run, capsys):
    corpus, run_dir = small_run
    code, out, err = run(capsys, "train", corpus, "--out", run_dir, "--resume", "--max-steps", "9", "--json",
                         "--eval-interval", "3")
    assert code == 0, err
    s = json.loads(out)
    assert s["resumed_from"] == 6 and s["steps"] == 9 and s["steps_this_run"] == 3
    assert "resuming at step 6" in err
    # Model options may be repeated as they were; the run's own settings are used.
    code, out, err = run(capsys, "train", corpus, "--out", run_dir, "--resume", *TINY_MODEL, "--json")
    assert code == 0 and json.loads(out)["steps_this_run"] == 0  # its limit was already reached


@pytest.mark.parametrize("opts, pattern", [
    (["--hidden-size", "32"], "--hidden-size 32 (the run has 16)"),
    (["--cell", "gru"], "--cell gru (the run has lstm)"),
    (["--batch-size", "5", "--lr", "0.1"], "--batch-size 5 (the run has 4), --lr 0.1 (the run has 0.003)"),
    (["--overwrite"], "give one of them"),
])
def test_resume_with_conflicting_options_names_them(small_run, capsys, opts, pattern):
    corpus, run_dir = small_run
    code, out, err = run(capsys, "train", corpus, "--out", run_dir, "--resume", *opts)
    assert_one_line_error(code, out, err, pattern)
    assert code == 2


def test_resume_errors(small_run, capsys, tmp_path):
    corpus, run_dir = small_run
    code, out, err = run(capsys, "train", corpus, "--out", tmp_path / "none", "--resume")
    assert_one_line_error(code, out, err, "no training run to resume")
    other = tmp_path / "other.txt"
    other.write_text(TINY_TEXT.upper() + TINY_TEXT)
    code, out, err = run(capsys, "train", other, "--out", run_dir, "--resume")
    assert_one_line_error(code, out, err, "differs from the one this run was trained on")
    code, out, err = run(capsys, "train", corpus, "--out", run_dir)
    assert_one_line_error(code, out, err, "pass --resume to continue it")


# ------------------------------------------------------------------ bad input table


def _latin1_after_utf8(p: Path) -> Path:
    p.write_bytes(("héllo wörld " * 50).encode() + b"caf\xe9 " + b"more text " * 20)
    return p


def _newer_checkpoint(small_run_dir: Path, p: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(small_run_dir / "best.safetensors"), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["format_version"] = "99"
    save_file(tensors, str(p), metadata=meta)
    return p


@pytest.mark.parametrize("case", [
    "directory", "binary", "nul", "mixed-encodings", "empty", "one-char", "smaller-than-window",
    "stdin-empty", "eval-stdin-empty", "eval-one-char", "newer-checkpoint", "out-is-a-file",
    "bad-rollback-after", "bad-rollback-factor", "bad-val-fraction", "bad-length",
])
def test_bad_input_gives_one_line_and_an_exit_code(small_run, capsys, tmp_path, monkeypatch, case):
    import io

    corpus, run_dir = small_run
    t = tmp_path / "in"
    args = {
        "directory": lambda: (["train", tmp_path], 1, "directory"),
        "binary": lambda: (["train", _write(t, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 40)], 1, "binary"),
        "nul": lambda: (["train", _write(t, b"text " * 100 + b"\x00" + b"more " * 100)], 1, "NUL"),
        "mixed-encodings": lambda: (["train", _latin1_after_utf8(t)], 1, "invalid UTF-8 at byte offset 703 (byte 0xe9)"),
        "empty": lambda: (["train", _write(t, b"")], 1, "empty"),
        "one-char": lambda: (["train", _write(t, b"a")], 1, "too few"),
        "smaller-than-window": lambda: (["train", _write(t, b"abcdefghij" * 3), *TINY_MODEL], 1, "--batch-size 4 and --bptt 8"),
        "stdin-empty": lambda: (["train", "-"], 1, "empty"),
        "eval-stdin-empty": lambda: (["eval", "perplexity", run_dir, "-"], 1, "at least 2"),
        "eval-one-char": lambda: (["eval", "perplexity", run_dir, _write(t, b"a")], 1, "at least 2"),
        "newer-checkpoint": lambda: (["sample", _newer_checkpoint(run_dir, tmp_path / "new.safetensors")], 1, "newer"),
        "out-is-a-file": lambda: (["train", corpus, "--out", corpus], 1, "not a directory"),
        "bad-rollback-after": lambda: (["train", corpus, "--rollback-after", "0"], 2, "--rollback-after"),
        "bad-rollback-factor": lambda: (["train", corpus, "--rollback-lr-factor", "0"], 2, "rollback_lr_factor"),
        "bad-val-fraction": lambda: (["train", corpus, "--val-fraction", "1"], 2, "val_fraction"),
        "bad-length": lambda: (["sample", run_dir, "-n", "-5"], 2, "-n"),
    }[case]()
    argv, want_code, pattern = args
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code, out, err = run(capsys, *argv, *(["--out", tmp_path / "o"] if argv[0] == "train" and "--out" not in argv else []))
    assert code == want_code, err
    assert_one_line_error(code, out, err, pattern)


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def test_a_huge_line_trains(tmp_path, capsys):
    # One 2 MB line without a newline: no per-line processing to choke on.
    corpus = _write(tmp_path / "line.txt", ("word " * 400_000).encode())
    code, out, err = run(capsys, "train", corpus, "--out", tmp_path / "run", *TINY_MODEL, "--max-steps", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["steps"] == 2


# ------------------------------------------------------------------ any Unicode


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corpus=st.text(min_size=0, max_size=300), prime=st.text(max_size=20), probe=st.text(max_size=50))
def test_any_unicode_through_train_sample_and_eval(tmp_path_factory, corpus, prime, probe):
    """Arbitrary text never crashes train, sample or eval: exit 0, or 1 with one line."""
    from test_cli import run as _  # noqa: F401  (same in-process runner, without capsys)

    d = tmp_path_factory.mktemp("u")
    path = d / "c.txt"
    path.write_text(corpus, encoding="utf-8", errors="surrogatepass")
    model = ["--layers", "1", "--hidden-size", "4", "--embedding-dim", "3", "--batch-size", "1", "--bptt", "3",
             "--device", "cpu", "--precision", "fp32", "--eval-interval", "2", "--max-steps", "2"]
    code, out, err = _main("train", path, "--out", d / "run", *model, "--quiet")
    usable = len(corpus) >= 20 and "\x00" not in corpus
    assert code in (0, 1) and "Traceback" not in err
    assert code == 0 or not usable, err
    if code:
        assert len([line for line in err.splitlines() if line.strip()]) == 1
        return
    code, out, err = _main("sample", d / "run", "--prime", prime, "-n", "30", "--seed", "1")
    assert code == 0, err
    out.encode("utf-8")  # valid UTF-8: no lone surrogates
    assert out.startswith(prime)
    probe_file = d / "probe.txt"
    probe_file.write_text(probe, encoding="utf-8")
    code, out, err = _main("eval", "perplexity", d / "run", probe_file, "--json")
    if len(probe) >= 2 and "\x00" not in probe:
        assert code == 0, err
        json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    else:
        assert code == 1 and "Traceback" not in err


def _main(*argv):
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from charrnn.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def _closed(fd):
    return lambda: os.close(fd)


def test_closed_stdin_and_stdout(small_run):
    """Started with stdin or stdout closed (`<&-`, `>&-`): a clear error, or the product
    goes nowhere as with a closed pipe; never a traceback."""
    corpus, run_dir = small_run
    base = [sys.executable, "-m", "charrnn"]
    p = subprocess.run([*base, "train", "-", "--out", run_dir.parent / "x"], capture_output=False, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, preexec_fn=_closed(0), env=ENV, timeout=120)
    assert p.returncode == 1 and p.stderr.decode().strip() == "charrnn: error: standard input is closed: nothing to read from '-'"
    p = subprocess.run([*base, "sample", run_dir, "-n", "5", "--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       preexec_fn=_closed(0), env=ENV, timeout=120)
    assert p.returncode == 0 and len(p.stdout.decode()) >= 5, p.stderr  # no prime: starts from scratch
    p = subprocess.run([*base, "sample", run_dir, "-n", "5"], stderr=subprocess.PIPE, preexec_fn=_closed(1), env=ENV,
                       timeout=120)
    assert p.returncode == 0 and b"Traceback" not in p.stderr
