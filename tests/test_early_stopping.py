"""Early stopping (--patience): after that many evaluations in a row without a better
validation score the learning rate anneals to its floor over as many evaluations again, then
the run ends, says so, keeps its best checkpoint, and resumes exactly."""

from __future__ import annotations

import math

import pytest
import torch

import charrnn
from charrnn.checkpoint import load_checkpoint, read_metrics
from charrnn.errors import ConfigError

# A tiny classifier on labels it cannot learn (random): its validation accuracy stalls.
TINY = dict(task="classify", hidden_size=4, embedding_dim=3, batch_size=4, eval_interval=2, threads=1,
            device="cpu", precision="fp32", progress=False, lr=1e-4, warmup_steps=0, min_lr_ratio=1.0)  # constant lr


@pytest.fixture
def data(tmp_path):
    import random

    rng = random.Random(0)
    rows = ["text\tlabel"] + [f"{''.join(rng.choice('abc') for _ in range(5))}\t{rng.choice('xy')}" for _ in range(60)]
    (tmp_path / "d.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path / "d.tsv"


def _evals(run):
    return [r for r in read_metrics(run / "metrics.jsonl") if r.get("event") == "eval"]


def _stall_step(evals, patience):
    """By hand: the step of the first evaluation that is ``patience`` after the last best."""
    stale, best = 0, None
    for r in evals:
        if best is None or r["val_accuracy"] > best:
            best, stale = r["val_accuracy"], 0
        else:
            stale += 1
        if stale == patience:
            return r["step"]
    return None


def test_a_stalled_run_anneals_then_stops(data, tmp_path):
    events = []
    opts = {**TINY, "min_lr_ratio": 0.1, "log_interval": 1}
    charrnn.train(data, out=tmp_path / "r", max_steps=200, patience=2, on_event=events.append, **opts)
    records = read_metrics(tmp_path / "r" / "metrics.jsonl")
    evals = _evals(tmp_path / "r")
    stall = _stall_step(evals, 2)
    assert stall is not None and stall < 200, evals
    assert [r["step"] for r in evals if r.get("annealing")] == [stall]
    end = stall + 2 * TINY["eval_interval"]  # as many evaluations again
    assert evals[-1]["step"] == end and evals[-1].get("stopped_early") is True
    done = [e for e in events if e.kind == "done"][0].data
    assert done["stopped_early"] is True and done["steps"] == end
    assert load_checkpoint(tmp_path / "r").step == done["best_step"]
    # By hand: the cosine (no warmup) over 200 steps until the stall; from there the
    # schedule's progress runs from the stall's to 1 over the anneal's 4 steps, so the
    # rate reaches the floor (1e-5) at the run's end. A record at step k shows the rate of
    # the step from k - 1 to k.
    lrs = {r["step"]: r["lr"] for r in records if r.get("event") == "train"}

    def cosine(p):
        return 1e-5 + (1e-4 - 1e-5) * 0.5 * (1 + math.cos(math.pi * p))

    for k in range(1, end + 1):
        p = (k - 1) / 200
        if k - 1 >= stall:
            p = max(p, stall / 200 + (1 - stall / 200) * (k - 1 - stall) / 4)
        assert lrs[k] == pytest.approx(cosine(p), rel=1e-6), k
    assert cosine(stall / 200) > 9e-5 and lrs[end] < 3e-5  # a real fall, not a nudge


def test_without_patience_the_run_goes_to_its_limit(data, tmp_path):
    events = []
    charrnn.train(data, out=tmp_path / "r", max_steps=12, on_event=events.append, **TINY)
    done = [e for e in events if e.kind == "done"][0].data
    assert done["steps"] == 12 and done["stopped_early"] is False


def test_the_count_resumes(data, tmp_path):
    """Stopped by a step limit between evaluations, then resumed: the stale count goes on
    from where it was, so the stop comes at the same step as in one run."""
    charrnn.train(data, out=tmp_path / "one", max_steps=200, patience=3, **TINY)
    whole = _evals(tmp_path / "one")[-1]["step"]
    cut = max(2, (whole // 2) // 2 * 2)
    charrnn.train(data, out=tmp_path / "two", max_steps=cut, patience=3, **TINY)
    charrnn.train(data, out=tmp_path / "two", resume=True, max_steps=200, progress=False, threads=1)
    assert _evals(tmp_path / "two")[-1]["step"] == whole
    assert [r["step"] for r in _evals(tmp_path / "two") if r.get("annealing")] == \
        [r["step"] for r in _evals(tmp_path / "one") if r.get("annealing")]
    a, b = load_checkpoint(tmp_path / "one", latest=True), load_checkpoint(tmp_path / "two", latest=True)
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_patience_must_be_a_count(data, tmp_path):
    with pytest.raises(ConfigError, match="patience"):
        charrnn.train(data, out=tmp_path / "r", max_steps=4, patience=-1, **TINY)


def test_example_tasks_stop_early_by_default_without_a_step_or_epoch_limit(data, tmp_path):
    from charrnn.checkpoint import load_checkpoint as load

    charrnn.train(data, out=tmp_path / "budget", time_budget=30, **TINY)
    assert load(tmp_path / "budget").train_config.patience == 5
    charrnn.train(data, out=tmp_path / "steps", max_steps=4, **TINY)
    assert load(tmp_path / "steps").train_config.patience is None
    charrnn.train(data, out=tmp_path / "off", time_budget=30, patience=0, **TINY)
    assert load(tmp_path / "off").train_config.patience == 0
