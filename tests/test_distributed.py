"""Training with several processes (torchrun, DDP over gloo on the CPU), 2 processes.

Each run starts real processes through the command line (``charrnn train --nproc 2`` or
``torchrun``), so these tests take a few seconds each.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from charrnn.checkpoint import load_checkpoint, read_metrics
from charrnn.config import ModelConfig
from charrnn.models.lm import RNNLanguageModel
from conftest import TINY_TEXT

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")

# A tiny model, without dropout (its masks are drawn per process, so they cannot match).
MODEL = ["--hidden-size", "16", "--layers", "2", "--embedding-dim", "8", "--dropout", "0"]
RUN = ["--batch-size", "6", "--bptt", "12", "--precision", "fp32", "--quiet", "--eval-interval", "1000",
       "--device", "cpu"]  # gloo on the CPU, also where there is a GPU
# Two processes that each take one core; the one-process reference also gets one thread.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Weights after a few steps: one process with batch B against two with B/2 each. The sums
# over the batch are split differently, so they agree to float rounding (measured: at most
# 1.2e-7 after 8 steps for both cells), not bitwise; the steps moved them by ~1e-2.
TOL = 1e-5


def charrnn(*args, cwd=None, check=True, timeout=120, env=None):
    proc = subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env or ENV, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TINY_TEXT * 20, encoding="utf-8")
    return path


def weights(run: Path, prefix="model.") -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(run / "latest.safetensors").items() if k.startswith(prefix)}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.mark.parametrize("cell,tokenizer", [("lstm", "char"), ("gru", "bpe"), ("mingru", "char")])
def test_two_processes_make_the_updates_of_one_with_the_global_batch(tmp_path, corpus, cell, tokenizer):
    # bpe: rank 0 trains the tokenizer and rank 1 encodes with a copy of it.
    tok = ["--tokenizer", "bpe", "--vocab-size", "300"] if tokenizer == "bpe" else []
    args = [corpus, "--cell", cell, *tok, *MODEL, *RUN, "--max-steps", "8", "--log-interval", "4"]
    charrnn("train", *args, "--out", tmp_path / "one", "--threads", "1")
    charrnn("train", *args, "--out", tmp_path / "two", "--nproc", "2")
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert max_diff(one, two) < TOL
    # The comparison means something: the 8 steps moved the weights far more than TOL.
    vocab = load_checkpoint(tmp_path / "one").tokenizer.vocab_size
    torch.manual_seed(0)
    init = RNNLanguageModel(ModelConfig(vocab_size=vocab, cell=cell, layers=2, hidden_size=16, embedding_dim=8,
                                        dropout=0.0)).state_dict()
    assert max_diff(one, {f"model.{k}": v for k, v in init.items()}) > 1000 * TOL
    assert load_checkpoint(tmp_path / "two").tokenizer.kind == tokenizer
    # The carried state of all 6 streams (3 per process) and the optimizer moments agree too.
    assert max_diff(weights(tmp_path / "one", "resume.hidden"), weights(tmp_path / "two", "resume.hidden")) < TOL
    assert weights(tmp_path / "two", "resume.hidden")["resume.hidden.0"].shape == (2, 6, 16)
    assert max_diff(weights(tmp_path / "one", "resume.opt"), weights(tmp_path / "two", "resume.opt")) < TOL
    # The logged training loss is the global batch's.
    losses = [[r["train_loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["event"] == "train"]
              for run in ("one", "two")]
    assert len(losses[0]) == 2 and losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_under_torchrun_only_rank_0_writes_and_the_checkpoint_loads_in_one_process(tmp_path, corpus):
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "charrnn",
         "train", str(corpus), *MODEL, "--batch-size", "6", "--bptt", "12", "--max-steps", "12",
         "--eval-interval", "5", "--log-interval", "3", "--device", "cpu", "--json"],
        capture_output=True, text=True, cwd=work, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # one JSON document: rank 1 printed nothing
    assert summary["processes"] == 2 and summary["steps"] == 12
    assert proc.stderr.count("charrnn: 2x16 LSTM") == 1  # one start line (rank 0's; --quiet not given)
    assert "x 2 processes" in proc.stderr
    run = work / "checkpoints" / "corpus"
    assert sorted(p.name for p in work.rglob("*") if p.is_file()) == ["best.safetensors", "config.toml",
                                                                       "latest.safetensors", "metrics.jsonl"]
    records = read_metrics(run / "metrics.jsonl")
    for event in ("train", "eval"):
        steps = [r["step"] for r in records if r["event"] == event]
        assert steps == sorted(set(steps)), f"{event} records written more than once: {steps}"
    assert [r["step"] for r in records if r["event"] == "eval"] == [5, 10, 12]
    # The checkpoint is an ordinary one: one process loads it and samples.
    ck = load_checkpoint(run, latest=True, resume=True)
    assert ck.step == 12 and ck.resume["world_size"] == 2
    out = charrnn("sample", run, "-n", "40", "--seed", "3", "--prime", "the ", cwd=work)
    assert out.stdout.startswith("the ") and len(out.stdout) >= 40


def test_a_distributed_run_resumes_also_with_another_process_count(tmp_path, corpus):
    args = [corpus, *MODEL, *RUN, "--log-interval", "3"]
    charrnn("train", *args, "--out", tmp_path / "whole", "--nproc", "2", "--max-steps", "12")
    charrnn("train", *args, "--out", tmp_path / "parts", "--nproc", "2", "--max-steps", "6")
    resumed = charrnn("train", corpus, "--out", tmp_path / "parts", "--resume", "--nproc", "2", "--max-steps", "12",
                      "--json")
    assert json.loads(resumed.stdout)["resumed_from"] == 6
    # Stopped and resumed, the run makes the updates of the uninterrupted one (gloo on the
    # CPU reduces in a fixed order, so exactly).
    assert max_diff(weights(tmp_path / "whole"), weights(tmp_path / "parts")) == 0.0
    whole = [r for r in read_metrics(tmp_path / "whole" / "metrics.jsonl") if r["event"] == "train"]
    parts = [r for r in read_metrics(tmp_path / "parts" / "metrics.jsonl") if r["event"] == "train"]
    assert [r["train_loss"] for r in whole] == [r["train_loss"] for r in parts]

    # The same run goes on in one process with the same global batch (6 streams in one):
    # within float rounding of two processes going on.
    charrnn("train", corpus, "--out", tmp_path / "whole", "--resume", "--nproc", "2", "--max-steps", "18")
    one = charrnn("train", corpus, "--out", tmp_path / "parts", "--resume", "--threads", "1", "--max-steps", "18",
                  "--json")
    assert json.loads(one.stdout)["processes"] == 1
    assert max_diff(weights(tmp_path / "whole"), weights(tmp_path / "parts")) < TOL

    # A global batch that does not divide among the processes: one clear line, exit 2.
    bad = charrnn("train", corpus, "--out", tmp_path / "parts", "--resume", "--nproc", "4", "--max-steps", "24",
                  check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("charrnn: error: batch size 6 (the global batch) does not divide evenly among "
                                  "4 processes")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_machines(tmp_path, corpora: tuple[str, str], *args) -> list[subprocess.CompletedProcess]:
    """Run charrnn as two one-process "machines" (torchrun, static rendezvous), each in its
    own directory with its own copy of the corpus: nothing shared but the network."""
    port = _free_port()
    procs = []
    for node, text in enumerate(corpora):
        home = tmp_path / f"machine{node}"
        home.mkdir(exist_ok=True)
        (home / "corpus.txt").write_text(text, encoding="utf-8")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
             "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "charrnn",
             "train", "corpus.txt", "--out", "run", *MODEL, *RUN, *map(str, args)],
            cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV))
    done = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def test_two_machines_need_no_shared_filesystem_but_the_same_corpus(tmp_path):
    text = TINY_TEXT * 20
    first = _two_machines(tmp_path, (text, text), "--max-steps", "6", "--eval-interval", "3")
    assert [p.returncode for p in first] == [0, 0], first[0].stderr + first[1].stderr
    assert (tmp_path / "machine0" / "run" / "latest.safetensors").exists()
    assert not (tmp_path / "machine1" / "run").exists()  # machine 1 wrote nothing
    # Resume: machine 1 has no run directory; it gets the checkpoint from machine 0.
    again = _two_machines(tmp_path, (text, text), "--resume", "--max-steps", "9", "--json")
    assert [p.returncode for p in again] == [0, 0], again[0].stderr + again[1].stderr
    assert json.loads(again[0].stdout)["resumed_from"] == 6 and again[1].stdout == ""
    # Another text on machine 1: refused, in one line from process 0.
    other = _two_machines(tmp_path, (text, text.upper()), "--overwrite", "--max-steps", "3")
    assert [p.returncode for p in other] != [0, 0]
    assert ("charrnn: error: process(es) 1 read other text than process 0: every process of the run needs the "
            "same corpus files") in other[0].stderr


def _rank_pid(marker: str, rank: int) -> int | None:
    """The pid of the charrnn process of ``rank`` whose environment holds ``marker``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in env and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


def _start(tmp_path, corpus, run, marker):
    log = open(tmp_path / f"{marker}.err", "w+")
    env = {**ENV, "CHARRNN_TEST_MARKER": marker}
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "train", str(corpus), "--out", str(run), *MODEL, *RUN,
                             "--nproc", "2", "--eval-interval", "10", "--max-steps", "100000"],
                            stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    marker_env = f"CHARRNN_TEST_MARKER={marker}"
    deadline = time.time() + 90
    while time.time() < deadline:  # until the first periodic checkpoint is on disk
        if any(r.get("event") == "eval" for r in read_metrics(run / "metrics.jsonl")):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("no evaluation within 90 s")
    pid = _rank_pid(marker_env, 1)
    assert pid is not None
    return proc, log, pid


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's pid through /proc")
def test_killing_one_rank_ends_the_run_with_a_clear_error_and_a_loadable_checkpoint(tmp_path, corpus):
    run = tmp_path / "run"
    proc, log, pid = _start(tmp_path, corpus, run, uuid.uuid4().hex)
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    log.seek(0)
    err = log.read()
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert "charrnn: error: process 1 of 2 was killed by SIGKILL" in err
    lost = [line for line in err.splitlines() if "lost contact with another process" in line]
    assert len(lost) == 1 and lost[0].startswith("charrnn: error: ") and "continue with --resume" in lost[0]
    ck = load_checkpoint(run, latest=True, resume=True)
    assert ck.step >= 10 and ck.step % 10 == 0
    assert f"(step {ck.step})" in lost[0]
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    # The run goes on from there.
    done = charrnn("train", corpus, "--out", run, "--resume", "--nproc", "2", "--max-steps", str(ck.step + 6),
                   "--json")
    assert json.loads(done.stdout)["resumed_from"] == ck.step
    assert charrnn("sample", run, "-n", "20", "--seed", "1").stdout.strip()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's pid through /proc")
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step_with_a_save(tmp_path, corpus):
    run = tmp_path / "run"
    proc, log, pid = _start(tmp_path, corpus, run, uuid.uuid4().hex)
    os.kill(pid, signal.SIGINT)  # Ctrl-C to rank 1 alone: rank 0 must stop at the same step
    proc.wait(timeout=60)
    log.seek(0)
    err = log.read()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.startswith("charrnn: interrupted")]
    assert len(lines) == 1, err
    step = int(lines[0].split("at step ")[1].split(";")[0])
    ck = load_checkpoint(run, latest=True, resume=True)
    assert ck.step == step and ck.resume["world_size"] == 2
    assert ck.resume_tensors["hidden.0"].shape[1] == 6  # both ranks' streams were gathered


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_torchrun_with_one_process_trains_like_plain_charrnn(tmp_path, corpus):
    """NCCL and DDP on one GPU (forced: one process normally trains without DDP) make the
    updates of a plain run (the same cuDNN kernels)."""
    args = [corpus, *MODEL, *RUN, "--max-steps", "8", "--log-interval", "4", "--device", "cuda"]
    charrnn("train", *args, "--out", tmp_path / "plain")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m", "charrnn",
         "train", *map(str, args), "--out", str(tmp_path / "ddp"), "--json"],
        capture_output=True, text=True, env={**ENV, "CHARRNN_FORCE_DDP": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["processes"] == 1 and summary["device"].startswith("cuda")
    assert max_diff(weights(tmp_path / "plain"), weights(tmp_path / "ddp")) < TOL


def test_two_processes_train_a_classifier_as_one_with_the_global_batch(tmp_path):
    """Classification under DDP: each process takes its rows of every global batch (7 rows:
    4 and 3, so the shares differ) and the mean over processes is the batch's loss."""
    import random

    rng = random.Random(1)
    lines = ["sentence\tlabel"] + [
        " ".join(rng.choice("ab" if i % 2 else "yz") * rng.randint(1, 3) for _ in range(rng.randint(1, 4)))
        + f"\t{'ab' if i % 2 else 'yz'}" for i in range(40)]
    data = tmp_path / "data.tsv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["--task", "classify", data, "--tokenizer", "char", "--hidden-size", "8", "--embedding-dim", "6",
            "--dropout", "0", "--batch-size", "8", "--precision", "fp32", "--quiet", "--eval-interval", "1000",
            "--device", "cpu", "--max-steps", "6", "--log-interval", "3", "--val-fraction", "0.2", "--warmup-steps", "0",
            "--lr", "0.01"]
    charrnn("train", *args, "--out", tmp_path / "one", "--threads", "1")
    charrnn("train", *args, "--out", tmp_path / "two", "--nproc", "2")
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert max_diff(one, two) < TOL
    # The steps moved the weights far more than the tolerance (the trainer seeds, then builds).
    from charrnn.models.classifier import SequenceClassifier

    ck = load_checkpoint(tmp_path / "one")
    torch.manual_seed(ck.train_config.seed)
    init = SequenceClassifier(ck.model_config).state_dict()
    assert max_diff(one, {f"model.{k}": v for k, v in init.items()}) > 1000 * TOL
    logs = [[(r["step"], r["train_loss"]) for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["event"] == "train"]
            for run in ("one", "two")]
    assert [s for s, _ in logs[0]] == [s for s, _ in logs[1]] == [3, 6]
    assert [x for _, x in logs[0]] == pytest.approx([x for _, x in logs[1]], abs=1e-6)


def test_two_processes_train_an_encoder_decoder_as_one_with_the_global_batch(tmp_path):
    """Sequence to sequence under DDP: each process takes its rows of every global batch
    (8 rows: 4 each, with different numbers of target tokens) and scales its summed token
    loss by the whole batch's token count."""
    import random

    rng = random.Random(2)
    words = ["".join(rng.choice("abcd") for _ in range(rng.randint(1, 5))) for _ in range(40)]
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{w}\t{' '.join(reversed(w))}\n" for w in words), encoding="utf-8")
    args = ["--task", "seq2seq", data, "--target-tokenizer", "space", "--hidden-size", "8", "--embedding-dim", "6",
            "--dropout", "0", "--batch-size", "8", "--precision", "fp32", "--quiet", "--eval-interval", "1000",
            "--device", "cpu", "--max-steps", "6", "--log-interval", "3", "--val-fraction", "0.2", "--warmup-steps", "0",
            "--lr", "0.01"]
    charrnn("train", *args, "--out", tmp_path / "one", "--threads", "1")
    charrnn("train", *args, "--out", tmp_path / "two", "--nproc", "2")
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert max_diff(one, two) < TOL
    from charrnn.models.seq2seq import Seq2Seq

    ck = load_checkpoint(tmp_path / "one")
    torch.manual_seed(ck.train_config.seed)
    init = Seq2Seq(ck.model_config).state_dict()
    assert max_diff(one, {f"model.{k}": v for k, v in init.items()}) > 1000 * TOL
    logs = [[(r["step"], r["train_loss"]) for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["event"] == "train"]
            for run in ("one", "two")]
    assert [s for s, _ in logs[0]] == [s for s, _ in logs[1]] == [3, 6]
    assert [x for _, x in logs[0]] == pytest.approx([x for _, x in logs[1]], abs=1e-6)


def test_two_processes_train_a_tagger_as_one_with_the_global_batch(tmp_path):
    """Tagging under DDP (with a CRF, whose parameters are read outside the model's
    forward): each process takes its rows of every global batch (8 sentences, 4 each, of
    different lengths) and scales its summed loss by the whole batch's token count."""
    import random

    rng = random.Random(3)
    blocks = []
    for _ in range(40):
        words = ["".join(rng.choice("abcd") for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 6))]
        blocks.append("".join(f"{w}\t{'B-X' if w[0] in 'ab' else 'O'}\n" for w in words))
    data = tmp_path / "tags.tsv"
    data.write_text("\n".join(blocks), encoding="utf-8")
    args = ["--task", "tag", data, "--crf", "--hidden-size", "8", "--embedding-dim", "6", "--char-hidden-size", "4",
            "--char-embedding-dim", "3", "--dropout", "0", "--word-dropout", "0", "--batch-size", "8", "--precision",
            "fp32", "--quiet", "--eval-interval", "1000", "--device", "cpu", "--max-steps", "6", "--log-interval", "3",
            "--val-fraction", "0.2", "--warmup-steps", "0", "--lr", "0.01"]
    charrnn("train", *args, "--out", tmp_path / "one", "--threads", "1")
    charrnn("train", *args, "--out", tmp_path / "two", "--nproc", "2")
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert max_diff(one, two) < TOL
    from charrnn.models.tagger import Tagger

    ck = load_checkpoint(tmp_path / "one")
    torch.manual_seed(ck.train_config.seed)
    init = Tagger(ck.model_config).state_dict()
    assert max_diff(one, {f"model.{k}": v for k, v in init.items()}) > 1000 * TOL
    assert any(k.startswith("model.crf.") for k in one)
    logs = [[(r["step"], r["train_loss"]) for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["event"] == "train"]
            for run in ("one", "two")]
    assert [s for s, _ in logs[0]] == [s for s, _ in logs[1]] == [3, 6]
    assert [x for _, x in logs[0]] == pytest.approx([x for _, x in logs[1]], abs=1e-6)
