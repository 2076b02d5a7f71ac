import json
import math

import pytest
import torch

from charrnn.checkpoint import RunDirectory, load_checkpoint
from charrnn.config import DEFAULT_EPOCHS, ModelConfig, TrainConfig
from charrnn.errors import ConfigError, CorpusTooSmallError
from charrnn.training import lr_at, train
from conftest import CELLS

SMALL = dict(layers=1, hidden_size=16, embedding_dim=8, dropout=0.0)


def _train(tmp_path, text, model=None, **kw):
    cfg = dict(batch_size=4, bptt=8, max_steps=30, eval_interval=10, log_interval=5, warmup_steps=2,
               device="cpu", precision="fp32", lr=1e-2)
    cfg.update(kw)
    events = []
    res = train(text[: int(len(text) * 0.9)], text[int(len(text) * 0.9):], model or ModelConfig(**SMALL),
                TrainConfig(**cfg), RunDirectory(tmp_path / "run"), on_event=events.append)
    return res, events


@pytest.mark.parametrize("cell", CELLS)
def test_training_lowers_the_loss_and_saves_a_loadable_run(tmp_path, tiny_text, cell):
    res, events = _train(tmp_path, tiny_text, ModelConfig(cell=cell, **SMALL), max_steps=60)
    progress = [e for e in events if e.kind == "progress"]
    assert progress[-1].data["train_loss"] < progress[0].data["train_loss"] - 0.5
    s = res.summary
    assert s["steps"] == 60 and s["params"] == res.model.num_parameters()
    assert s["val_bpc"] == pytest.approx(s["val_loss"] / math.log(2))
    ck = load_checkpoint(s["checkpoint"])
    assert ck.model_config.cell == cell and ck.metrics["val_bpc"] == pytest.approx(s["val_bpc"])
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [l for l in lines if l["event"] == "eval"]
    assert [l["step"] for l in evals] == [10, 20, 30, 40, 50, 60]
    for key in ("step", "time", "val_loss", "val_bpc", "tokens_per_sec", "lr"):
        assert key in evals[0]
    assert "train_loss" in lines[0]


def test_hidden_state_is_carried_between_windows_and_detached(tmp_path, tiny_text, monkeypatch):
    """The state given to window k+1 is the (detached) state window k ended with."""
    from charrnn.models import lm as model_mod

    seen = []
    orig = model_mod.RNNLanguageModel.forward

    def spy(self, ids, state=None, hidden=False):
        result = orig(self, ids, state, hidden)
        if self.training:
            seen.append((state, result[1]))
        return result

    monkeypatch.setattr(model_mod.RNNLanguageModel, "forward", spy)
    res, _ = _train(tmp_path, tiny_text, max_steps=6, eval_interval=100)
    windows = res.summary["steps"]
    assert len(seen) == windows
    assert seen[0][0] is None  # an epoch starts from a zero state
    for (_, prev_out), (next_in, _) in zip(seen, seen[1:]):
        for a, b in zip(prev_out, next_in):
            assert b.grad_fn is None and not b.requires_grad
            assert torch.equal(a.detach(), b)


def test_state_resets_at_each_epoch(tmp_path, tiny_text, monkeypatch):
    from charrnn.models import lm as model_mod

    states = []
    orig = model_mod.RNNLanguageModel.forward

    def spy(self, ids, state=None, hidden=False):
        if self.training:
            states.append(state)
        return orig(self, ids, state, hidden)

    monkeypatch.setattr(model_mod.RNNLanguageModel, "forward", spy)
    text = tiny_text[:400]  # 360 training chars, batch 4 -> 90 per stream -> 12 windows of 8
    res, events = _train(tmp_path, text, max_steps=30, eval_interval=100)
    per_epoch = next(e for e in events if e.kind == "start").data["windows_per_epoch"]
    assert [i for i, s in enumerate(states) if s is None] == list(range(0, 30, per_epoch))


def test_epochs_limit_and_default(tmp_path, tiny_text):
    res, events = _train(tmp_path, tiny_text, max_steps=None, epochs=2)
    per_epoch = next(e for e in events if e.kind == "start").data["windows_per_epoch"]
    assert res.summary["steps"] == 2 * per_epoch
    assert TrainConfig().effective_epochs == DEFAULT_EPOCHS
    assert TrainConfig(time_budget=5).effective_epochs is None


def test_time_budget_ends_inside_the_budget_with_final_eval_and_save(tmp_path, tiny_text):
    res, events = _train(tmp_path, tiny_text * 20, max_steps=None, time_budget=3.0, eval_interval=10_000)
    assert res.summary["elapsed"] <= 3.0
    assert events[-2].kind == "eval" and events[-2].data["final"]
    assert load_checkpoint(tmp_path / "run").step == res.summary["steps"] > 0


def test_corpus_too_small_for_the_layout(tmp_path):
    with pytest.raises(CorpusTooSmallError):
        _train(tmp_path, "abcdefghij" * 5, batch_size=8, bptt=16)


def test_same_seed_same_run(tmp_path, tiny_text):
    a, _ = _train(tmp_path / "a", tiny_text, max_steps=12)
    b, _ = _train(tmp_path / "b", tiny_text, max_steps=12)
    for (k, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), k


def test_gradients_are_clipped(tmp_path, tiny_text, monkeypatch):
    norms = []
    orig = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        total = orig(params, max_norm, *a, **k)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        norms.append((float(total), float(after), max_norm))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    _train(tmp_path, tiny_text, max_steps=5, grad_clip=0.01)
    assert len(norms) == 5
    for total, after, max_norm in norms:
        assert max_norm == 0.01 and after <= 0.01 * 1.001 and total > after


def test_learning_rate_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    assert [lr_at(cfg, s, 0.0) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(cfg, 10, 0.0) == 1.0
    assert lr_at(cfg, 10, 0.5) == pytest.approx(0.55)
    assert lr_at(cfg, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(cfg, 10, 2.0) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kw", [dict(batch_size=0), dict(lr=0), dict(lr=float("nan")), dict(grad_clip=0), dict(val_fraction=1.0),
           dict(time_budget=0), dict(max_steps=0), dict(device="tpu"), dict(precision="fp8")]
)
def test_bad_train_config_is_a_config_error(kw):
    with pytest.raises(ConfigError):
        TrainConfig(**kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_on_gpu(tmp_path, tiny_text, precision):
    res, _ = _train(tmp_path, tiny_text, device="cuda", precision=precision, max_steps=20)
    assert res.summary["device"].startswith("cuda") and math.isfinite(res.summary["val_bpc"])
    assert load_checkpoint(tmp_path / "run").build_model("cpu") is not None


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_validation_bpc_is_per_character_for_every_tokenizer(tmp_path, tiny_text, kind):
    from charrnn.api import load
    from charrnn.text.tokenizers import train_tokenizer

    split = int(len(tiny_text) * 0.9)
    train_text, val_text = tiny_text[:split], tiny_text[split:]
    tok = train_tokenizer(kind, train_text, None if kind == "char" else 300)
    res = train(train_text, val_text, ModelConfig(**SMALL), TrainConfig(batch_size=2, bptt=8, max_steps=4,
                device="cpu", precision="fp32"), RunDirectory(tmp_path / "run"), tokenizer=tok)
    ev = load(tmp_path / "run", latest=True).evaluate(val_text)
    assert res.summary["final_val_bpc"] == pytest.approx(ev.bpc, rel=1e-6)
    assert ev.chars > ev.tokens or kind == "char"


def test_a_nan_validation_score_is_replaced_by_the_next_finite_one(tmp_path, tiny_text, monkeypatch):
    import charrnn.tasks.lm as lm_task
    from charrnn.tasks.perplexity import EvalResult

    real = lm_task.evaluate
    calls = []

    def first_nan(*args, **kw):
        calls.append(1)
        res = real(*args, **kw)
        return EvalResult(float("nan"), res.tokens, res.chars, res.unknown) if len(calls) == 1 else res

    monkeypatch.setattr(lm_task, "evaluate", first_nan)
    res, events = _train(tmp_path, tiny_text, max_steps=30, eval_interval=10)
    evals = [e.data for e in events if e.kind == "eval"]
    assert math.isnan(evals[0]["val_loss"]) and evals[0]["improved"]  # nothing better yet
    assert evals[1]["improved"] and math.isfinite(evals[1]["val_loss"])
    assert res.summary["best_step"] == 30 if evals[2]["improved"] else res.summary["best_step"] == 20
    assert load_checkpoint(tmp_path / "run").step == res.summary["best_step"]


def test_bf16_on_a_cpu_without_native_bf16_runs_fp32_and_says_so(tmp_path, tiny_text, monkeypatch):
    """oneDNN has no bf16 LSTM kernel on AVX2-only CPUs (it raised 'could not create a
    primitive descriptor'); there bf16 falls back to fp32 with a note in the start event."""
    from charrnn import runtime

    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    res, events = _train(tmp_path, tiny_text, ModelConfig(cell="lstm", **SMALL), precision="bf16", max_steps=6)
    start = events[0].data
    assert start["precision"] == "fp32" and "no native bf16" in start["precision_note"]
    assert res.summary["steps"] == 6
    assert runtime.resolve_precision("bf16", torch.device("cpu")) is None
    assert runtime.resolve_precision("auto", torch.device("cpu")) is None
    # The run keeps what was asked for, so a resume on a bf16 machine uses bf16.
    assert load_checkpoint(tmp_path / "run", latest=True).train_config.precision == "bf16"
    # Where the CPU has it, bf16 is bf16 and nothing is said.
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    assert runtime.resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16
    assert runtime.bf16_fallback_note("bf16", torch.device("cpu")) is None
