"""Early stopping (--patience): a run ends after that many evaluations in a row without a
better validation score, says so, keeps its best checkpoint, and resumes exactly."""

from __future__ import annotations

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


def test_a_run_stops_after_patience_evaluations_without_improvement(data, tmp_path):
    events = []
    charrnn.train(data, out=tmp_path / "r", max_steps=200, patience=2, on_event=events.append, **TINY)
    evals = _evals(tmp_path / "r")
    # By hand: count the evaluations since the last best; the run ends at the first count of 2.
    stale, stop_at = 0, None
    best = None
    for r in evals:
        if best is None or r["val_accuracy"] > best:
            best, stale = r["val_accuracy"], 0
        else:
            stale += 1
        if stale == 2:
            stop_at = r["step"]
            break
    assert stop_at is not None and stop_at < 200, evals
    assert evals[-1]["step"] == stop_at and evals[-1].get("stopped_early") is True
    done = [e for e in events if e.kind == "done"][0].data
    assert done["stopped_early"] is True and done["steps"] == stop_at
    assert load_checkpoint(tmp_path / "r").step == done["best_step"] < stop_at


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
    a, b = load_checkpoint(tmp_path / "one", latest=True), load_checkpoint(tmp_path / "two", latest=True)
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_patience_must_be_a_positive_count(data, tmp_path):
    with pytest.raises(ConfigError, match="patience"):
        charrnn.train(data, out=tmp_path / "r", max_steps=4, patience=0, **TINY)
