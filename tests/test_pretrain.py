"""--pretrain / --pretrain-steps (training/pretrain.py): a language model on the task's own
training text, then the task started from it, as one run; resumed from a stop in either
stage it ends with the weights of a run never stopped."""

from __future__ import annotations

import json
import os
import random
import signal

import pytest
import torch

import charrnn
from charrnn.checkpoint import load_checkpoint, read_metrics
from charrnn.errors import ConfigError, TrainingInterrupted
from charrnn.text.tokenizers import load_tokenizer

TINY = dict(task="classify", hidden_size=6, embedding_dim=4, batch_size=4, eval_interval=3, log_interval=1, threads=1,
            device="cpu", precision="fp32", progress=False, tokenizer="char")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    where = tmp_path_factory.mktemp("pre")
    rng = random.Random(0)
    rows = ["text\tlabel"]
    for _ in range(120):
        label = rng.choice("xy")
        rows.append("".join(rng.choice("ab " if label == "x" else "bc ") for _ in range(12)).strip() + f"\t{label}")
    (where / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return where / "train.tsv"


def _stop_at(stage: int, step: int):
    """An on_event that sends this process SIGINT (a Ctrl-C) at ``step`` of ``stage``."""
    def on_event(event):
        if event.kind == "progress" and event.data.get("stage") == stage and event.step == step:
            os.kill(os.getpid(), signal.SIGINT)
    return on_event


def test_two_stages_in_one_run(data, tmp_path):
    events = []
    charrnn.train(data, out=tmp_path / "r", pretrain_steps=6, max_steps=5, on_event=events.append, **TINY)
    summary = [e for e in events if e.kind == "done"][-1].data
    stages = [e.data["stage"] for e in events if e.kind == "stage"]
    assert stages == [1, 2]
    starts = [e for e in events if e.kind == "start"]
    assert [e.data["task"] for e in starts] == ["lm", "classify"]
    lm = load_checkpoint(tmp_path / "r" / "pretrain", latest=True)
    assert lm.task == "lm" and lm.step == 6
    m = lm.model_config
    assert (m.layers, m.hidden_size, m.embedding_dim) == (1, 6, 4)  # the task's shape
    # The LM read the training texts (120 less the 10% set aside to validate), one a line, labels dropped.
    text = (tmp_path / "r" / "pretrain" / "text.txt").read_text(encoding="utf-8").splitlines()
    assert len(text) == 108 and not any("\t" in line for line in text)
    # The task took the LM's tokenizer and started from its weights.
    assert starts[1].data["init"]["from"].startswith(str(tmp_path / "r" / "pretrain"))
    clf = load_checkpoint(tmp_path / "r", latest=True)
    assert clf.tokenizer.state()[0] == load_tokenizer(tmp_path / "r" / "pretrain").state()[0]
    assert clf.step == 5 and summary["task"] == "classify"
    done = json.loads((tmp_path / "r" / "pretrain" / "done.json").read_text())
    assert done["steps"] == 6
    assert any(r.get("event") == "eval" for r in read_metrics(tmp_path / "r" / "pretrain" / "metrics.jsonl"))


@pytest.mark.parametrize("stage, step", [(1, 4), (2, 2)])
def test_a_stop_in_either_stage_resumes_bitwise(data, tmp_path, stage, step):
    opts = dict(pretrain_steps=6, max_steps=5, **TINY)
    charrnn.train(data, out=tmp_path / "whole", **opts)
    with pytest.raises(TrainingInterrupted):
        charrnn.train(data, out=tmp_path / "cut", on_event=_stop_at(stage, step), **opts)
    assert (tmp_path / "cut" / "pretrain" / "done.json").exists() == (stage == 2)
    charrnn.train(data, out=tmp_path / "cut", resume=True, progress=False, threads=1)
    for sub, latest in (("pretrain", True), ("", True), ("", False)):
        a = load_checkpoint(tmp_path / "whole" / sub, latest=latest)
        b = load_checkpoint(tmp_path / "cut" / sub, latest=latest)
        assert a.step == b.step
        assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights), (sub, latest)


def test_what_pretraining_refuses(data, tmp_path):
    with pytest.raises(ConfigError, match="--task classify"):
        charrnn.train(data, out=tmp_path / "a", pretrain_steps=2, max_steps=2,
                      **{**TINY, "task": "lm", "tokenizer": "char"})
    with pytest.raises(ConfigError, match="give one"):
        charrnn.train(data, out=tmp_path / "b", pretrain=5, pretrain_steps=2, **TINY)
    with pytest.raises(ConfigError, match="more than --pretrain"):
        charrnn.train(data, out=tmp_path / "c", pretrain=50, time_budget=40, **TINY)
    with pytest.raises(ConfigError, match="drop one"):
        charrnn.train(data, out=tmp_path / "d", pretrain_steps=2, init=tmp_path, **TINY)


def test_a_conditional_generator_pretrains_too(tmp_path):
    """Single words with a char tokenizer that has no newline: the language model reads
    them separated by spaces, and the generator starts from it."""
    rows = ["text\tlabel"] + [f"{w}\t{'a' if w[0] in 'abc' else 'b'}" for w in
                              ("apple", "banana", "cherry", "damson", "elder", "fig", "grape", "hazel") * 6]
    (tmp_path / "w.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    events = []
    charrnn.train(tmp_path / "w.tsv", out=tmp_path / "g", pretrain_steps=3, max_steps=2, on_event=events.append,
                  **{**{k: v for k, v in TINY.items() if k != "tokenizer"}, "task": "conditional"})
    text = (tmp_path / "g" / "pretrain" / "text.txt").read_text(encoding="utf-8")
    starts = [e for e in events if e.kind == "start"]
    assert "\n" not in text and len(text.split(" ")) == starts[1].data["train_examples"] < 48
    assert [e.data["task"] for e in starts] == ["lm", "conditional"] and starts[1].data["init"]["whole"] >= 1
