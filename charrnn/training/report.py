"""What the loop reports: evaluations (with the best and latest saves), progress, the summary.

Functions of the Trainer (loop.py), kept apart so the loop itself reads top to bottom.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING

from . import distributed
from .events import TrainResult

if TYPE_CHECKING:
    from .loop import Trainer


def validate(tr: Trainer) -> tuple[dict[str, float], float]:
    def run() -> tuple[dict[str, float], float]:
        t = time.perf_counter()
        return tr.task.validate(tr.model, tr.dtype), time.perf_counter() - t

    if tr.dist is None:
        return run()
    # Rank 0 validates; the others wait for its numbers.
    found = tr.on_main(run)
    data = distributed.broadcast_bytes(tr.dist, json.dumps(found).encode() if found is not None else None)
    metrics, secs = json.loads(data)
    return metrics, secs

def improved(tr: Trainer, metrics: dict[str, float]) -> bool:
    # A NaN score (weights blown up to huge but finite values) is worse than any other:
    # it is best only when there is nothing else yet.
    if tr.best is None:
        return True
    new, old = metrics[tr.task.best_key], tr.best[tr.task.best_key]
    if not math.isfinite(new):
        return False
    return new > old if tr.task.higher_is_better else not new >= old

def record_eval(tr: Trainer, final: bool) -> None:
    found, secs = validate(tr)
    tr.limits.eval_seconds = secs
    tr.last_val = found
    tr.last_eval_step = tr.step
    now = time.perf_counter()
    headline = tr.task.headline
    metrics = {"step": tr.step, "time": round(now - tr.t0, 3), **found, "lr": tr.lr,
               tr.task.rate_name: tr.rate, "epoch": tr.step / tr.task.batches.windows_per_epoch}
    is_best = improved(tr, found)
    tr.stale_evals = 0 if is_best else tr.stale_evals + 1
    patience = tr.cfg.patience
    annealing = bool(patience and not final and tr.anneal is None and tr.stale_evals >= patience)
    if annealing:  # stalled: anneal the learning rate over as many evaluations again, then stop
        tr.anneal = (tr.step, tr.limits.progress(tr.step, now))
    tr.averager.add(tr.model, tr.step)
    t = time.perf_counter()
    if is_best:
        tr.best = dict(metrics)
        tr.save("best", {**metrics, f"best_{headline}": found[headline], "best_step": tr.step})
    # best before latest: a crash between the two leaves a latest whose idea of the
    # best is older, and replaying from it rewrites the same best again.
    tr.save_latest({**metrics, f"best_{headline}": tr.best[headline], "best_step": tr.best["step"]})
    tr.limits.save_seconds = max((time.perf_counter() - t) / (2 if is_best else 1), 0.05)
    ends = bool(patience) and tr.anneal is not None and not final and tr.step >= tr.anneal[0] + tr.anneal_steps
    tr.log({"event": "eval", **metrics, "best": is_best, "final": final,
            **({"annealing": True} if annealing else {}), **({"stopped_early": True} if ends else {})})
    tr.emit("eval", {**metrics, f"best_{headline}": tr.best[headline], "improved": is_best, "final": final,
                       "headline": headline, "stale_evals": tr.stale_evals, "annealing": annealing,
                       "anneal_steps": tr.anneal_steps, "stopped_early": ends, "best_step": tr.best["step"]})

def log_progress(tr: Trainer) -> None:
    train_loss = tr.guard.train_loss()
    t = time.perf_counter()
    lim = tr.limits
    tr.rate = tr.items_this_log / max(t - tr.log_t, 1e-9)
    lim.step_seconds = (t - tr.log_t) / max(tr.steps_this_log, 1)
    tr.log_t, tr.items_this_log, tr.steps_this_log = t, 0, 0
    rec = {"step": tr.step, "time": round(t - tr.t0, 3), "train_loss": train_loss,
           **tr.task.train_metrics(train_loss), "lr": tr.lr, tr.task.rate_name: tr.rate,
           "epoch": tr.step / tr.task.batches.windows_per_epoch, "skipped": tr.guard.skipped}
    tr.log({"event": "train", **rec})
    last = tr.last_val or {}
    tr.emit("progress", {**rec, "planned_steps": tr.planned_steps, "progress": lim.progress(tr.step, t),
                           "headline": tr.task.headline, tr.task.headline: last.get(tr.task.headline)})


def finish(tr: Trainer, steps_before: int) -> TrainResult:
    elapsed = time.perf_counter() - tr.t0
    best, last = tr.best, tr.last_val
    assert best is not None and last is not None
    rate = tr.task.rate_name
    summary = {
        "task": tr.task.name,
        **tr.task.summary(best, last),
        "best_step": best["step"],
        "steps": tr.step,
        "resumed_from": tr.resumed_from,
        "steps_this_run": tr.step - steps_before,
        "skipped_steps": tr.guard.skipped,
        "rollbacks": tr.guard.rollbacks,
        "stopped_early": tr.stopped_early,  # the validation score stalled, the rate annealed (--patience)
        "averaged": tr.averager.result,  # --average-last: what the mean of the last evaluations scored
        "epochs": tr.step / tr.task.batches.windows_per_epoch,
        rate: tr.limits.items_seen / max(elapsed, 1e-9),
        f"train_{rate}": tr.limits.items_seen / max(time.perf_counter() - tr.limits.train_t0, 1e-9),
        "params": sum(p.numel() for p in tr.model.parameters()),
        "sizing": tr.sizing,
        "predicted_seconds": tr.predicted_seconds,
        "elapsed": elapsed,
        "device": str(tr.device),
        "processes": tr.world,
        "checkpoint": str(tr.run_dir.best) if tr.main else None,
        "latest": str(tr.run_dir.latest) if tr.main else None,
        "run_dir": str(tr.run_dir.path) if tr.main else None,
    }
    tr.emit("done", summary)
    return TrainResult(summary, tr.model, tr.task.checkpoint_parts()["tokenizer"])
