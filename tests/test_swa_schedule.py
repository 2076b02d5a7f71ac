"""--average-last (training/swa.py) against the hand-computed mean of the run's weights at its
last evaluations, and the slanted triangular schedule (--schedule slanted) against its
formula, in lr_at and in a run's logged rates."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

import charrnn
from charrnn.checkpoint import load_checkpoint, read_metrics
from charrnn.config import TrainConfig
from charrnn.errors import ConfigError
from charrnn.training.average import average
from charrnn.training.schedule import lr_at

# A constant learning rate (no warmup, floor = peak): a run of N steps is the first N steps
# of a longer one, so the weights at each evaluation are those of shorter runs.
TINY = dict(task="classify", hidden_size=6, embedding_dim=4, batch_size=4, eval_interval=2, threads=1,
            device="cpu", precision="fp32", progress=False, lr=3e-3, warmup_steps=0, min_lr_ratio=1.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    where = tmp_path_factory.mktemp("swa")
    rng = random.Random(0)

    def rows(n):
        out = ["text\tlabel"]
        for _ in range(n):
            label = rng.choice("xy")
            out.append(("".join(rng.choice("ab" if label == "x" else "bc") for _ in range(6))) + f"\t{label}")
        return "\n".join(out) + "\n"

    (where / "train.tsv").write_text(rows(80), encoding="utf-8")
    (where / "dev.tsv").write_text(rows(40), encoding="utf-8")
    return where


def test_the_average_is_the_mean_of_the_last_evaluations(data, tmp_path):
    opts = {**TINY, "val_file": str(data / "dev.tsv")}
    for steps in (4, 6):
        charrnn.train(data / "train.tsv", out=tmp_path / f"s{steps}", max_steps=steps, **opts)
    events = []
    charrnn.train(data / "train.tsv", out=tmp_path / "avg", max_steps=8, average_last=3, on_event=events.append,
                  **opts)
    done = [e for e in events if e.kind == "done"][0].data
    result = done["averaged"]
    assert result["evaluations"] == 3 and (result["from_step"], result["to_step"]) == (4, 8)
    # By hand: the mean of the weights after 4, 6 and 8 steps (the latest checkpoints of the
    # shorter runs and of this one), scored on the validation file.
    mean_path = average([tmp_path / "s4", tmp_path / "s6", tmp_path / "avg"], tmp_path / "mean", latest=True)
    by_hand = charrnn.load(mean_path).evaluate_file(str(data / "dev.tsv"))
    assert result["val_accuracy"] == pytest.approx(by_hand.accuracy, abs=1e-9)
    best = load_checkpoint(tmp_path / "avg")
    if result["kept"]:
        assert best.metrics["averaged"] == 3
        mean = load_checkpoint(mean_path).weights
        for name, value in best.weights.items():
            torch.testing.assert_close(value, mean[name], rtol=0, atol=0)
    else:
        assert best.metrics["val_accuracy"] >= result["val_accuracy"] and "averaged" not in best.metrics
    # The latest checkpoint keeps the last weights (a resumed run trains on from them).
    latest = load_checkpoint(tmp_path / "avg", latest=True)
    assert latest.step == 8 and not all(torch.equal(latest.weights[k], load_checkpoint(mean_path).weights[k])
                                        for k in latest.weights)
    assert any(r.get("event") == "average" for r in read_metrics(tmp_path / "avg" / "metrics.jsonl"))


def test_the_averaged_weights_resume(data, tmp_path):
    opts = {**TINY, "val_file": str(data / "dev.tsv"), "average_last": 3}
    events_whole, events_cut = [], []
    charrnn.train(data / "train.tsv", out=tmp_path / "whole", max_steps=10, on_event=events_whole.append, **opts)
    charrnn.train(data / "train.tsv", out=tmp_path / "cut", max_steps=5, **opts)
    charrnn.train(data / "train.tsv", out=tmp_path / "cut", resume=True, max_steps=10, progress=False, val_file=str(data / "dev.tsv"),
                  on_event=events_cut.append)
    a, b = ([e for e in ev if e.kind == "done"][0].data["averaged"] for ev in (events_whole, events_cut))
    assert a == b and a["evaluations"] == 3
    wa, wb = load_checkpoint(tmp_path / "whole").weights, load_checkpoint(tmp_path / "cut").weights
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_average_last_must_be_a_count(data, tmp_path):
    with pytest.raises(ConfigError, match="average_last"):
        charrnn.train(data / "train.tsv", out=tmp_path / "r", max_steps=2, average_last=-1, **TINY)


def test_slanted_triangular_by_hand():
    cfg = TrainConfig(lr=1e-2, min_lr_ratio=0.1, schedule="slanted", warmup_steps=50)
    # Up from 1e-3 to 1e-2 over the first tenth, down to 1e-3 at the end; warmup_steps unused.
    assert lr_at(cfg, 0, 0.0) == pytest.approx(1e-3)
    assert lr_at(cfg, 3, 0.05) == pytest.approx(1e-3 + 9e-3 * 0.5)
    assert lr_at(cfg, 9, 0.1) == pytest.approx(1e-2)
    assert lr_at(cfg, 50, 0.55) == pytest.approx(1e-3 + 9e-3 * 0.5)
    assert lr_at(cfg, 99, 1.0) == pytest.approx(1e-3)
    cosine = dataclasses.replace(cfg, schedule="cosine")
    assert lr_at(cosine, 0, 0.0) == pytest.approx(1e-2 / 50)  # the cosine's warmup


def test_a_slanted_run_logs_its_rates(data, tmp_path):
    opts = {**TINY, "min_lr_ratio": 0.1, "schedule": "slanted", "log_interval": 1}
    charrnn.train(data / "train.tsv", out=tmp_path / "r", max_steps=20, **opts)
    lrs = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if r.get("event") == "train"}
    for k in range(1, 21):  # the record of step k shows the rate of the step from k - 1
        p = (k - 1) / 20
        shape = p / 0.1 if p < 0.1 else (1 - p) / 0.9
        assert lrs[k] == pytest.approx(3e-4 + (3e-3 - 3e-4) * shape, rel=1e-6), k
    with pytest.raises(ConfigError, match="schedule"):
        charrnn.train(data / "train.tsv", out=tmp_path / "bad", max_steps=2, schedule="linear", **TINY)
