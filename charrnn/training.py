"""The training loop: truncated BPTT over parallel streams, AdamW, warmup + cosine decay.

The loop never prints and never opens files itself: it reports through ``on_event`` and
stores checkpoints and metrics through the ``RunDirectory`` it is given.

Stopping: ``max_steps``, ``epochs`` and ``time_budget`` are limits; the first one reached
ends the run. The learning-rate schedule follows the same limits: its progress is the
largest fraction done of any of them, so a run with only a time budget decays its learning
rate over that budget. A time budget keeps back what the final evaluation and save need,
so the run ends inside it with both done.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .checkpoint import RunDirectory
from .config import ModelConfig, TrainConfig
from .data import StreamBatches, compact
from .errors import CorpusError, TrainingInterrupted
from .evaluation import EvalResult, evaluate
from .model import RNNLanguageModel, State, detach_state
from .runtime import autocast, resolve_device, resolve_precision
from .tokenizers import Tokenizer, train_tokenizer

VAL_STREAMS = 16  # parallel streams for validation (each warmed up; see evaluation.py)


@dataclass
class Event:
    """A report from the loop. kind: "start", "progress", "eval" or "done"."""

    kind: str
    step: int
    elapsed: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    summary: dict[str, Any]
    model: RNNLanguageModel
    tokenizer: Tokenizer


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to lr * min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = min(max(progress, 0.0), 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * p))


def _optimizer(model: RNNLanguageModel, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    # Weight decay on matrices only; biases and the embedding table are not decayed
    # (the embedding is a matrix, but rows of rare tokens get few gradient updates).
    emb = model.embedding.weight
    decay = [p for p in model.parameters() if p.dim() >= 2 and p is not emb]
    rest = [p for p in model.parameters() if p.dim() < 2 or p is emb]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    kwargs: dict[str, Any] = {"lr": cfg.lr, "betas": (0.9, 0.99)}
    if device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, **kwargs)


def train(
    train_text: str,
    val_text: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: RunDirectory,
    on_event: Callable[[Event], None] = lambda e: None,
    tokenizer: Tokenizer | None = None,
    start_time: float | None = None,
) -> TrainResult:
    """Train a model on ``train_text``, validating on ``val_text``; return the summary.

    ``start_time`` (time.perf_counter) is when the time budget started counting; by
    default, now.
    """
    t0 = time.perf_counter() if start_time is None else start_time
    cfg = train_config
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)

    tok = tokenizer or train_tokenizer("char", train_text)
    train_ids = compact(tok.encode(train_text), tok.vocab_size)
    val_ids = compact(tok.encode(val_text), tok.vocab_size)
    if val_ids.numel() < 2:
        raise CorpusError("the validation text needs at least 2 tokens")
    batches = StreamBatches.build(train_ids, cfg.batch_size, cfg.bptt)
    model_config = dataclasses.replace(model_config, vocab_size=tok.vocab_size)

    torch.manual_seed(cfg.seed)
    model = RNNLanguageModel(model_config).to(device)
    model.train()
    opt = _optimizer(model, cfg, device)
    params = [p for g in opt.param_groups for p in g["params"]]
    n_params = model.num_parameters()

    epochs = cfg.effective_epochs
    step_limits = [s for s in (cfg.max_steps, epochs and math.ceil(epochs * batches.windows_per_epoch)) if s]
    planned_steps = min(step_limits) if step_limits else None

    def validate() -> tuple[EvalResult, float]:
        t = time.perf_counter()
        res = evaluate(model, val_ids, unk_id=tok.unk_id, streams=VAL_STREAMS, dtype=dtype)
        return res, time.perf_counter() - t

    on_event(Event("start", 0, time.perf_counter() - t0, {
        "params": n_params, "device": str(device), "precision": str(dtype).replace("torch.", "") if dtype else "fp32",
        "train_tokens": train_ids.numel(), "val_tokens": val_ids.numel(), "vocab_size": tok.vocab_size,
        "planned_steps": planned_steps, "time_budget": cfg.time_budget,
        "windows_per_epoch": batches.windows_per_epoch, "model_config": dataclasses.asdict(model_config),
    }))

    # Time kept back for the final evaluation and save; refined once one has been timed.
    eval_seconds = None
    save_seconds = 0.5
    step = 0
    best: dict[str, Any] | None = None
    last_eval_step = -1
    last_val: EvalResult | None = None
    state: State | None = None
    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    window_t, window_tokens = time.perf_counter(), 0
    train_t0 = time.perf_counter()
    tokens_seen = 0
    tokens_per_sec = 0.0
    lr = cfg.lr

    def reserve() -> float:
        est_eval = eval_seconds
        if est_eval is None:
            # A forward pass over the validation tokens, without backward or optimizer
            # step, costs about a third of training on as many tokens.
            rate = tokens_seen / max(time.perf_counter() - train_t0, 1e-6) if tokens_seen else 5e4
            est_eval = val_ids.numel() / max(3 * rate, 1.0)
        return 1.2 * est_eval + 2 * save_seconds + 0.5

    def progress(now: float) -> float:
        fractions = [0.0]
        if planned_steps:
            fractions.append(step / planned_steps)
        if cfg.time_budget:
            fractions.append((now - t0) / max(cfg.time_budget - reserve(), 1e-6))
        return max(fractions)

    def record_eval(final: bool) -> None:
        nonlocal best, last_eval_step, last_val, eval_seconds, save_seconds
        res, secs = validate()
        eval_seconds = secs
        last_val, last_eval_step = res, step
        now = time.perf_counter()
        metrics = {"step": step, "time": round(now - t0, 3), "val_loss": res.loss, "val_bpc": res.bpc,
                   "val_unknown": res.unknown, "lr": lr, "tokens_per_sec": tokens_per_sec,
                   "epoch": step / batches.windows_per_epoch}
        improved = best is None or res.loss < best["val_loss"]
        t = time.perf_counter()
        if improved:
            best = dict(metrics)
            run_dir.save("best", model, cfg, tok, step, {**metrics, "best_val_bpc": res.bpc, "best_step": step})
        run_dir.save("latest", model, cfg, tok, step, {**metrics, "best_val_bpc": best["val_bpc"], "best_step": best["step"]})
        save_seconds = max((time.perf_counter() - t) / (2 if improved else 1), 0.05)
        run_dir.log({"event": "eval", **metrics, "best": improved, "final": final})
        on_event(Event("eval", step, now - t0, {**metrics, "best_val_bpc": best["val_bpc"], "improved": improved, "final": final}))

    step_seconds = 0.0
    try:
        while True:
            now = time.perf_counter()
            if planned_steps is not None and step >= planned_steps:
                break
            if cfg.time_budget is not None and now - t0 + step_seconds + reserve() >= cfg.time_budget:
                break
            lr = lr_at(cfg, step, progress(now))
            for g in opt.param_groups:
                g["lr"] = lr

            x, y, new_epoch = batches.next()
            if new_epoch:
                state = None  # the streams jump back to their starts: the old state means nothing
            x = x.to(device, dtype=torch.long, non_blocking=True)
            y = y.to(device, dtype=torch.long, non_blocking=True)
            with autocast(device, dtype):
                logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            state = detach_state(state)
            step += 1
            loss_sum += loss.detach()
            loss_count += 1
            window_tokens += x.numel()
            tokens_seen += x.numel()

            if step % cfg.log_interval == 0 or step == planned_steps:
                train_loss = float(loss_sum) / loss_count  # the one host sync per log interval
                t = time.perf_counter()
                tokens_per_sec = window_tokens / max(t - window_t, 1e-9)
                step_seconds = (t - window_t) / loss_count
                window_t, window_tokens = t, 0
                loss_sum.zero_()
                loss_count = 0
                rec = {"step": step, "time": round(t - t0, 3), "train_loss": train_loss,
                       "train_bpc": train_loss / math.log(2), "lr": lr, "tokens_per_sec": tokens_per_sec,
                       "epoch": step / batches.windows_per_epoch}
                run_dir.log({"event": "train", **rec})
                on_event(Event("progress", step, t - t0, {**rec, "planned_steps": planned_steps,
                                                           "progress": progress(t),
                                                           "val_bpc": last_val.bpc if last_val else None}))
            if step % cfg.eval_interval == 0:
                # Skip a periodic evaluation that would eat into the final one's reserve.
                if cfg.time_budget is None or time.perf_counter() - t0 + 2 * reserve() < cfg.time_budget:
                    record_eval(final=False)
    except KeyboardInterrupt:
        # Keep what was learned: save the weights at this step as the latest checkpoint
        # (the best one, from the last evaluation, stays as it is), then report.
        if step > 0:
            run_dir.save("latest", model, cfg, tok, step, {"step": step, "time": time.perf_counter() - t0,
                                                          "interrupted": True, "lr": lr})
        raise TrainingInterrupted(step, str(run_dir.latest) if step > 0 else None) from None

    if step == 0:
        raise CorpusError("no training step fit in the limits given (time budget too short?)")
    if last_eval_step != step:
        record_eval(final=True)
    elapsed = time.perf_counter() - t0
    assert best is not None and last_val is not None
    summary = {
        "val_loss": best["val_loss"],
        "val_bpc": best["val_bpc"],
        "best_step": best["step"],
        "final_val_loss": last_val.loss,
        "final_val_bpc": last_val.bpc,
        "val_unknown": last_val.unknown,
        "steps": step,
        "epochs": step / batches.windows_per_epoch,
        "tokens_per_sec": tokens_seen / max(elapsed, 1e-9),
        "train_tokens_per_sec": tokens_seen / max(time.perf_counter() - train_t0, 1e-9),
        "params": n_params,
        "elapsed": elapsed,
        "device": str(device),
        "checkpoint": str(run_dir.best),
        "latest": str(run_dir.latest),
        "run_dir": str(run_dir.path),
    }
    on_event(Event("done", step, elapsed, summary))
    return TrainResult(summary, model, tok)
