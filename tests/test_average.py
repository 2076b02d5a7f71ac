"""charrnn average (training/average.py): the averaged checkpoint against the hand-computed
mean of its runs' weights, and the runs it refuses."""

from __future__ import annotations

import pytest
import torch

import charrnn
from charrnn.checkpoint import load_checkpoint
from charrnn.cli import main
from charrnn.errors import CheckpointError, ConfigError
from charrnn.training.average import average

TINY = dict(hidden_size=5, embedding_dim=3, layers=1, batch_size=4, bptt=8, max_steps=3, eval_interval=3, threads=1,
            device="cpu", precision="fp32", progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import TINY_TEXT

    where = tmp_path_factory.mktemp("avg")
    (where / "c.txt").write_text(TINY_TEXT, encoding="utf-8")
    for seed in (1, 2, 3):
        charrnn.train(where / "c.txt", out=where / f"s{seed}", seed=seed, **TINY)
    charrnn.train(where / "c.txt", out=where / "wide", seed=1, **{**TINY, "hidden_size": 6})
    return where


def test_the_average_is_the_mean_of_the_weights(runs, tmp_path):
    path = average([runs / "s1", runs / "s2", runs / "s3"], tmp_path / "avg")
    got = load_checkpoint(path)
    cks = [load_checkpoint(runs / f"s{s}") for s in (1, 2, 3)]
    assert set(got.weights) == set(cks[0].weights)
    for name, value in got.weights.items():
        by_hand = (cks[0].weights[name] + cks[1].weights[name] + cks[2].weights[name]) / 3
        torch.testing.assert_close(value, by_hand, rtol=1e-6, atol=1e-7)
        assert not torch.equal(value, cks[0].weights[name]) or torch.equal(cks[0].weights[name], cks[1].weights[name])
    assert got.metrics["averaged_from"] == [str(ck.path) for ck in cks]
    model = charrnn.load(tmp_path / "avg", device="cpu")  # an ordinary checkpoint: loads, samples, evaluates
    assert len(model.generate("the ", length=10, seed=1)) == 10
    assert not (tmp_path / "avg" / "latest.safetensors").exists()  # nothing to resume


def test_runs_of_another_shape_or_task_are_refused(runs, tmp_path):
    with pytest.raises(CheckpointError, match="hidden_size"):
        average([runs / "s1", runs / "wide"], tmp_path / "x")
    with pytest.raises(ConfigError, match="at least two"):
        average([runs / "s1"], tmp_path / "x")
    average([runs / "s1", runs / "s2"], tmp_path / "y")
    with pytest.raises(Exception, match="already holds"):
        average([runs / "s1", runs / "s2"], tmp_path / "y")


def test_the_command(runs, tmp_path, capsys):
    try:
        main(["average", str(runs / "s1"), str(runs / "s2"), "-o", str(tmp_path / "avg")])
    except SystemExit as e:
        assert e.code in (0, None)
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "avg" / "best.safetensors") and "averaged 2" in err
    with pytest.raises(SystemExit) as e:
        main(["average", str(runs / "s1"), str(runs / "wide"), "-o", str(tmp_path / "bad")])
    out, err = capsys.readouterr()
    assert e.value.code == 1 and out == "" and len(err.strip().splitlines()) == 1 and "hidden_size" in err
