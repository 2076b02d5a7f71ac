"""Exact resume, divergence policy and crash safety of training runs (in-process)."""

import errno
import math

import pytest
import torch

from charrnn import checkpoint as checkpoint_module
from charrnn.checkpoint import RunDirectory, load_checkpoint, read_metrics
from charrnn.config import ModelConfig, TrainConfig
from charrnn.text.streams import StreamBatches, compact
from charrnn.text.prepare import Corpus
from charrnn.errors import CheckpointError, CorpusError, TrainingDiverged, TrainingInterrupted
from charrnn.text.tokenizers import CharTokenizer
from charrnn.tasks.lm import LanguageModelTask
from charrnn.training import Trainer
from conftest import CELLS, SCAN_CELLS, TINY_TEXT

TEXT = TINY_TEXT
TRAIN, VAL = TEXT[: int(len(TEXT) * 0.9)], TEXT[int(len(TEXT) * 0.9):]
# Dropout on, so the RNG state matters; two layers, so the carried state has 2 layers.
MODEL = dict(layers=2, hidden_size=7, embedding_dim=5, dropout=0.2)
BASE = dict(batch_size=3, bptt=11, eval_interval=6, log_interval=4, warmup_steps=3, lr=1e-2, device="cpu",
            precision="fp32", seed=5)


def windows_per_epoch() -> int:
    tok = CharTokenizer.train(TRAIN)
    return StreamBatches.build(compact(tok.encode(TRAIN), tok.vocab_size), 3, 11).windows_per_epoch


def make(run_dir, cell="lstm", resume=False, trainer_cls=Trainer, events=None, task_cls=LanguageModelTask,
         model=None, **kw):
    cfg = TrainConfig(**{**BASE, **kw})
    ck = load_checkpoint(run_dir, latest=True, resume=True) if resume else None
    rd = RunDirectory(run_dir, resume=resume)
    corpus = Corpus.from_texts(TRAIN, VAL, ck.tokenizer if ck else None)
    task = task_cls(corpus, ModelConfig(cell=cell, **{**MODEL, **(model or {})}), cfg)
    t = trainer_cls(task, cfg, rd, on_event=(events.append if events is not None else lambda e: None), resume=ck)
    task.trainer = t  # the test tasks below act on the trainer's step
    return t


def train_losses(run_dir):
    return [(r["step"], r["train_loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "train"]


def val_losses(run_dir):
    return [(r["step"], r["val_loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "eval"]


class StopAfter(LanguageModelTask):
    """Asks to stop while computing the loss of step ``stop_at`` (as a signal would)."""

    stop_at = 0

    def cross_entropy(self, logits, targets):
        if self.trainer.step + 1 == self.stop_at:
            self.trainer.request_stop()
        return super().cross_entropy(logits, targets)


@pytest.mark.parametrize("cell, precision", [(c, "fp32") for c in CELLS + SCAN_CELLS] + [("lstm", "bf16"), ("mingru", "bf16")])
def test_stop_and_resume_equals_one_run_bitwise(tmp_path, cell, precision):
    wpe = windows_per_epoch()
    total = 2 * wpe + 5  # crosses epoch boundaries after the resume
    stop = wpe + 2  # not a multiple of log_interval: the loss accumulators are mid-interval
    assert stop % BASE["log_interval"] and stop % BASE["eval_interval"]

    whole = make(tmp_path / "whole", cell, max_steps=total, precision=precision).run()

    StopAfter.stop_at = stop
    with pytest.raises(TrainingInterrupted) as info:
        make(tmp_path / "parts", cell, task_cls=StopAfter, max_steps=total, precision=precision).run()
    assert info.value.step == stop and info.value.saved.endswith("latest.safetensors")
    assert load_checkpoint(tmp_path / "parts", latest=True).step == stop
    resumed = make(tmp_path / "parts", cell, resume=True, max_steps=total, precision=precision).run()

    assert resumed.summary["resumed_from"] == stop and resumed.summary["steps"] == total
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert train_losses(tmp_path / "whole") == train_losses(tmp_path / "parts")
    assert val_losses(tmp_path / "whole") == val_losses(tmp_path / "parts")
    assert whole.summary["val_loss"] == resumed.summary["val_loss"]


def test_resume_restores_optimizer_rng_data_position_and_hidden_state(tmp_path):
    StopAfter.stop_at = 9
    with pytest.raises(TrainingInterrupted):
        make(tmp_path / "run", task_cls=StopAfter, max_steps=40).run()
    t = make(tmp_path / "run", resume=True, max_steps=40)
    ck = load_checkpoint(tmp_path / "run", latest=True, resume=True)
    assert t.step == 9 and t.task.batches.position == 9 % windows_per_epoch()
    assert isinstance(t.task.state, tuple) and t.task.state[0].shape == (2, 3, 7)  # (layers, N, H)
    assert torch.equal(t.task.state[0], ck.resume_tensors["hidden.0"])
    assert all(int(s["step"]) == 9 for s in t.opt.state.values())  # Adam's bias-correction step
    assert torch.equal(torch.get_rng_state(), ck.resume_tensors["rng.cpu"])
    assert t.guard.ok_count.item() == 9 % BASE["log_interval"]


def test_resume_with_changed_limits_and_a_finished_run(tmp_path):
    first = make(tmp_path / "run", max_steps=10).run()
    assert first.summary["steps"] == 10
    again = make(tmp_path / "run", resume=True, max_steps=10).run()  # nothing left to do
    assert again.summary["steps_this_run"] == 0 and again.summary["val_loss"] == first.summary["val_loss"]
    longer = make(tmp_path / "run", resume=True, max_steps=16, eval_interval=8).run()
    assert longer.summary["steps"] == 16 and longer.summary["resumed_from"] == 10
    steps = [s for s, _ in train_losses(tmp_path / "run")]
    assert steps == sorted(set(steps))  # no step logged twice


def test_resume_refuses_other_data_and_weights_only_checkpoints(tmp_path):
    make(tmp_path / "run", max_steps=4).run()
    ck = load_checkpoint(tmp_path / "run", latest=True, resume=True)
    with pytest.raises(CorpusError, match="differs"):
        cfg = TrainConfig(**BASE, max_steps=8)
        task = LanguageModelTask(Corpus.from_texts(TRAIN[::-1], VAL, ck.tokenizer), ModelConfig(**MODEL), cfg)
        Trainer(task, cfg, RunDirectory(tmp_path / "run", resume=True), resume=ck)
    with pytest.raises(CheckpointError, match="no training state"):
        load_checkpoint(tmp_path / "run" / "best.safetensors", resume=True)
    with pytest.raises(CheckpointError, match="no training run to resume"):
        RunDirectory(tmp_path / "empty", resume=True)


def test_metrics_log_after_the_resumed_step_is_dropped_and_partial_lines_skipped(tmp_path):
    make(tmp_path / "run", max_steps=12).run()
    log = tmp_path / "run" / "metrics.jsonl"
    # As if the process died after logging step 12 but before any later save, mid-line.
    with open(log, "a") as f:
        f.write('{"event": "train", "step": 13, "train_lo')
    assert all(r["step"] <= 12 for r in read_metrics(log))
    rd = RunDirectory(tmp_path / "run", resume=True)
    rd.truncate_log(8)
    assert max(r["step"] for r in read_metrics(log)) == 8
    assert log.read_text().endswith("\n") and "train_lo\n" not in log.read_text()


# ----------------------------------------------------------------------- divergence


class PoisonedTask(LanguageModelTask):
    """Makes the loss non-finite at the steps (1-based) in ``Poisoned.bad``."""

    def cross_entropy(self, logits, targets):
        loss = super().cross_entropy(logits, targets)
        return loss * float("nan") if self.trainer.step + 1 in Poisoned.bad else loss


class Poisoned(Trainer):
    """Records whether the weights stayed as they were at each poisoned step."""

    bad: set = set()
    snapshots: list = []

    def train_step(self):
        before = [p.detach().clone() for p in self.model.parameters()]
        super().train_step()
        if self.step in self.bad:
            after = list(self.model.parameters())
            Poisoned.snapshots.append(all(torch.equal(a, b) for a, b in zip(before, after)))


def test_a_non_finite_step_is_skipped_and_never_reaches_the_weights(tmp_path):
    Poisoned.bad, Poisoned.snapshots = {4, 9}, []
    events = []
    res = make(tmp_path / "run", trainer_cls=Poisoned, task_cls=PoisonedTask, events=events, max_steps=14).run()
    assert Poisoned.snapshots == [True, True]
    assert res.summary["skipped_steps"] == 2 and res.summary["rollbacks"] == 0
    assert [e.data["skipped"] for e in events if e.kind == "skip"] == [1, 1]
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    # Adam's step count did not advance on the skipped steps.
    t_state = load_checkpoint(tmp_path / "run", latest=True, resume=True).resume_tensors
    assert float(t_state["opt.0.step"]) == 12
    # The logged training loss is over the finite steps only.
    assert all(math.isfinite(loss) for _, loss in train_losses(tmp_path / "run"))


def test_non_finite_gradient_with_a_finite_loss_is_skipped(tmp_path):
    class BadGrad(Trainer):
        def train_step(self):
            if self.step + 1 == 3:
                h = self.model.decoder.weight.register_hook(lambda g: g * float("inf"))
                super().train_step()
                h.remove()
            else:
                super().train_step()

    res = make(tmp_path / "run", trainer_cls=BadGrad, max_steps=6).run()
    assert res.summary["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


def test_bad_steps_in_a_row_roll_back_to_the_last_checkpoint_with_a_lower_lr(tmp_path):
    # Evaluations (and saves) at steps 6 and 12; steps 14..16 are bad: roll back to 12.
    Poisoned.bad, Poisoned.snapshots = {14, 15, 16}, []
    events = []
    seen = {}

    def on_event(e):
        events.append(e)
        if e.kind == "rollback":
            ck = load_checkpoint(tmp_path / "run", latest=True)
            seen["equal"] = all(torch.equal(ck.weights[k], v) for k, v in t.model.state_dict().items())

    t = make(tmp_path / "run", trainer_cls=Poisoned, task_cls=PoisonedTask, max_steps=20, rollback_after=3)
    t.on_event = on_event
    res = t.run()
    rb = [e for e in events if e.kind == "rollback"]
    assert len(rb) == 1 and rb[0].data["to_step"] == 12 and rb[0].data["lr_factor"] == 0.5
    assert seen["equal"]
    assert res.summary["rollbacks"] == 1 and res.summary["steps"] == 20
    lrs = [e.data["lr"] for e in events if e.kind == "progress"]
    assert lrs[-1] < BASE["lr"] * 0.5 + 1e-12
    # The lowered learning rate is part of the state: a resumed run keeps it.
    assert load_checkpoint(tmp_path / "run", latest=True, resume=True).resume["lr_factor"] == 0.5


def test_training_that_keeps_diverging_stops_with_a_clear_error(tmp_path):
    Poisoned.bad, Poisoned.snapshots = set(range(5, 1000)), []
    events = []
    t = make(tmp_path / "run", trainer_cls=Poisoned, task_cls=PoisonedTask, events=events, max_steps=100, rollback_after=2, max_rollbacks=2)
    with pytest.raises(TrainingDiverged, match=r"2 steps in a row.*after 2 rollback\(s\).*last good checkpoint"):
        t.run()
    assert len([e for e in events if e.kind == "rollback"]) == 2
    for which in ("best", "latest"):
        ck = load_checkpoint(tmp_path / "run" / f"{which}.safetensors")
        assert all(torch.isfinite(v).all() for v in ck.weights.values())


# ----------------------------------------------------------------------- crash safety


def _oserror():
    return OSError(errno.ENOSPC, "No space left on device")


def _safetensors_error():  # what safetensors itself raises on a full disk
    from safetensors import SafetensorError

    return SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.parametrize("error", [_oserror, _safetensors_error])
def test_disk_full_during_training_is_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, error):
    make(tmp_path / "run", max_steps=6).run()
    before = (tmp_path / "run" / "latest.safetensors").read_bytes()
    real = checkpoint_module.save_file

    def full(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")  # part of the file got written, then the disk filled up
        raise error()

    monkeypatch.setattr(checkpoint_module, "save_file", full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        make(tmp_path / "run", resume=True, max_steps=12).run()
    monkeypatch.setattr(checkpoint_module, "save_file", real)
    assert (tmp_path / "run" / "latest.safetensors").read_bytes() == before
    assert not list((tmp_path / "run").glob(".*.tmp"))
    assert (tmp_path / "run" / "latest.safetensors").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert make(tmp_path / "run", resume=True, max_steps=12).run().summary["steps"] == 12


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_new_run_has_loadable_checkpoints_from_step_0(tmp_path):
    seen = {}

    class Peek(Trainer):
        def train_step(self):
            if self.step == 0:
                seen["best"] = load_checkpoint(tmp_path / "run").step
                seen["latest"] = load_checkpoint(tmp_path / "run", latest=True, resume=True).step
            super().train_step()

    make(tmp_path / "run", trainer_cls=Peek, max_steps=2).run()
    assert seen == {"best": 0, "latest": 0}
