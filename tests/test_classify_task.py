"""The classification task in the one trainer: loss, validation, exact resume, learning."""

import random

import pytest
import torch
import torch.nn.functional as F

from charrnn.checkpoint import RunDirectory, load_checkpoint, read_metrics
from charrnn.config import TrainConfig
from charrnn.task_configs import ClassifierConfig
from charrnn.errors import CorpusError, TrainingInterrupted
from charrnn.tasks.classify import ClassifyTask, classify_ids, prepare_labelled
from charrnn.tasks.metrics import report
from charrnn.text.tokenizers import train_tokenizer
from charrnn.training import Trainer
from conftest import CELLS

LABELS = {"north": "ktv", "south": "aeiou", "east": "lmnrs"}  # each label's texts draw from its letters


def make_tsv(path, n=90, seed=3):
    rng = random.Random(seed)
    lines = ["sentence\tlabel"]
    for i in range(n):
        label = list(LABELS)[i % 3]
        letters = LABELS[label] + "xyz"  # shared letters make it not quite trivial
        length = rng.randint(2, 9)
        lines.append("".join(rng.choice(letters) for _ in range(length)) + "\t" + label)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def data_file(tmp_path):
    return make_tsv(tmp_path / "train.tsv")


MODEL = dict(hidden_size=7, embedding_dim=5, layers=2, dropout=0.2)  # dropout on: RNG state matters
BASE = dict(batch_size=8, eval_interval=6, log_interval=4, warmup_steps=3, lr=1e-2, device="cpu", precision="fp32",
            seed=5, val_fraction=0.2)


class StopAt(ClassifyTask):
    stop_at = 0

    def loss(self, net, batch, device, dtype):
        if self.trainer.step + 1 == self.stop_at:
            self.trainer.request_stop()
        return super().loss(net, batch, device, dtype)


def make(run_dir, data_file, resume=False, task_cls=ClassifyTask, model=None, balanced=False, **kw):
    cfg = TrainConfig(**{**BASE, **kw})
    ck = load_checkpoint(run_dir, latest=True, resume=True) if resume else None
    data = prepare_labelled(data_file, None, cfg.val_fraction, cfg.seed, ck.tokenizer if ck else None)
    task = task_cls(data, ClassifierConfig(**(model or MODEL)), cfg, balanced=balanced)
    t = Trainer(task, cfg, RunDirectory(run_dir, resume=resume), resume=ck)
    task.trainer = t
    return t


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_stop_and_resume_equals_one_run_bitwise(tmp_path, data_file, cell, bidirectional):
    model = {**MODEL, "cell": cell, "bidirectional": bidirectional}
    whole = make(tmp_path / "whole", data_file, model=model, max_steps=23).run()
    StopAt.stop_at = 13  # mid log interval, mid epoch (9 batches an epoch), after an evaluation
    with pytest.raises(TrainingInterrupted):
        make(tmp_path / "parts", data_file, task_cls=StopAt, model=model, max_steps=23).run()
    resumed = make(tmp_path / "parts", data_file, resume=True, model=model, max_steps=23).run()
    assert resumed.summary["resumed_from"] == 13 and resumed.summary["steps"] == 23
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name

    def log(run):
        return [(r["event"], r["step"], r.get("train_loss"), r.get("val_accuracy"))
                for r in read_metrics(run / "metrics.jsonl") if r["event"] in ("train", "eval")]

    assert log(tmp_path / "whole") == log(tmp_path / "parts")


def test_the_loss_is_torch_cross_entropy_and_process_shares_add_up(data_file):
    cfg = TrainConfig(**BASE)
    data = prepare_labelled(data_file, None, cfg.val_fraction, cfg.seed)
    for balanced in (False, True):
        task = ClassifyTask(data, ClassifierConfig(**{**MODEL, "dropout": 0.0}), cfg, balanced=balanced)
        model = task.build_model(torch.device("cpu"))
        (ids, lengths, labels), _ = batch = task.batches.next()
        loss, n = task.loss(model, batch, torch.device("cpu"), None)
        weight = task.weights if balanced else None
        ref = F.cross_entropy(model(ids, lengths), labels, weight=weight)  # weighted mean, as torch defines it
        assert n == len(labels) and torch.allclose(loss, ref, atol=1e-6)
        # Two processes: each its rows, scaled so that the mean over them is the batch's loss.
        parts = []
        for rank in range(2):
            task.shard(rank, 2)
            parts.append(task.loss(model, batch, torch.device("cpu"), None)[0])
        task.shard(0, 1)
        assert torch.allclose((parts[0] + parts[1]) / 2, ref, atol=1e-6)


def test_validation_metrics_against_a_hand_computation(data_file):
    cfg = TrainConfig(**BASE)
    data = prepare_labelled(data_file, None, cfg.val_fraction, cfg.seed)
    task = ClassifyTask(data, ClassifierConfig(**MODEL), cfg)
    model = task.build_model(torch.device("cpu"))
    got = task.validate(model, None)
    model.eval()
    with torch.no_grad():
        logits = torch.stack([model(torch.tensor([seq]), torch.tensor([len(seq)]))[0] for seq in data.val_ids])
    gold = torch.tensor(task.val_labels)
    assert got["val_loss"] == pytest.approx(float(F.cross_entropy(logits, gold)), abs=1e-5)
    pred = logits.argmax(-1)
    assert got["val_accuracy"] == pytest.approx(float((pred == gold).float().mean()))
    assert got["val_macro_f1"] == pytest.approx(report(gold.tolist(), pred.tolist(), data.labels).macro_f1)
    # classify_ids keeps the input order whatever the length sorting inside it did.
    assert torch.allclose(classify_ids(model, data.val_ids, torch.device("cpu"), batch_size=3), logits, atol=1e-5)


def test_a_classifier_learns_and_the_best_checkpoint_has_the_best_accuracy(tmp_path, data_file):
    res = make(tmp_path / "run", data_file, model={**MODEL, "hidden_size": 16, "dropout": 0.0}, max_steps=120,
               eval_interval=20).run()
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["event"] == "eval"]
    best = max(evals, key=lambda r: r["val_accuracy"])
    assert res.summary["val_accuracy"] == best["val_accuracy"] >= 0.8  # 3 labels: chance is 1/3
    assert load_checkpoint(tmp_path / "run").step == best["step"] == res.summary["best_step"]
    assert res.summary["labels"] == sorted(LABELS)


@pytest.mark.parametrize("kind", ["char", "bpe", "unigram", "word"])
def test_every_tokenizer_trains_a_classifier(tmp_path, data_file, kind):
    cfg = TrainConfig(**{**BASE, "max_steps": 4})
    tok = (lambda text, default: train_tokenizer(kind, text, None if kind == "char" else 300 if kind != "word"
                                                 else 280))
    data = prepare_labelled(data_file, None, cfg.val_fraction, cfg.seed, tok)
    assert data.tokenizer.kind == kind
    res = Trainer(ClassifyTask(data, ClassifierConfig(**MODEL), cfg), cfg, RunDirectory(tmp_path / kind)).run()
    ck = load_checkpoint(tmp_path / kind)
    assert ck.task == "classify" and ck.model_kind == "classifier" and ck.task_state["labels"] == sorted(LABELS)
    assert ck.tokenizer.kind == kind and res.summary["steps"] == 4


def test_resuming_with_other_labels_is_refused(tmp_path, data_file):
    make(tmp_path / "run", data_file, max_steps=2).run()
    ck = load_checkpoint(tmp_path / "run", latest=True, resume=True)
    other = tmp_path / "other.tsv"
    other.write_text(data_file.read_text().replace("north", "west"), encoding="utf-8")
    with pytest.raises(CorpusError, match="labels differ"):
        prepare_labelled(other, None, 0.2, 5, ck.tokenizer, labels=ck.task_state["labels"])
