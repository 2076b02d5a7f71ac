"""The training loop: truncated BPTT over parallel streams, AdamW, warmup + cosine decay.

The loop never prints and never opens files itself: it reports through ``on_event`` and
stores checkpoints and metrics through the ``RunDirectory`` it is given.

Stopping: ``max_steps``, ``epochs`` and ``time_budget`` are limits; the first one reached
ends the run. The learning-rate schedule follows the same limits: its progress is the
largest fraction done of any of them, so a run with only a time budget decays its learning
rate over that budget. A time budget keeps back what the final evaluation and save need,
so the run ends inside it with both done. On a resumed run the budget counts the time
already spent by the earlier processes of the run.

Resume: ``latest.safetensors`` holds everything the loop needs to go on exactly where it
was: weights, optimizer moments and step counts, the step counter (so the schedule
position), the data position (epoch and window), the carried hidden state, the RNG states
and the loss accumulators. A run stopped after N steps and resumed for M more makes the
same updates and logs the same losses as one run of N + M steps (bitwise on the CPU with
the same thread count).

Signals: while the loop runs (in the main thread), SIGINT and SIGTERM ask it to stop at the
end of the current step; it then saves the latest checkpoint and raises
TrainingInterrupted. A second signal abandons that at once (KeyboardInterrupt), leaving the
last complete checkpoint on disk.

Divergence: a step whose loss or gradient norm is not finite is skipped: the optimizer
does not apply it (on the device, without a host sync, where the fused AdamW is available)
and the carried state goes back to what it was before the window. After ``rollback_after``
skipped steps in a row the weights and optimizer state are reloaded from the latest
checkpoint (always finite, since bad steps never reach the weights) and the learning rate
is multiplied by ``rollback_lr_factor``; after ``max_rollbacks`` rollbacks the run stops
with TrainingDiverged. There is no "loss grew too much" abort.

Several processes (``dist``, see distributed.py): rank r of W trains rows
[r*B/W, (r+1)*B/W) of the same (B, S) stream layout, DistributedDataParallel averages the
gradients, and each step's loss is summed over the ranks, so the update, the clipping, the
skip decision and the logged loss are those of one process with batch B. Signals and the
time budget are decided together at each check (every step on the CPU, every log interval
on CUDA); rank 0 validates and broadcasts the result; each save gathers every rank's
hidden state and RNG state, and rank 0 alone writes files and reports events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import distributed
from .checkpoint import Checkpoint, RunDirectory, load_checkpoint
from .config import ModelConfig, TrainConfig
from .data import StreamBatches
from .distributed import DistContext
from .errors import CheckpointError, CorpusError, TrainingDiverged, TrainingInterrupted
from .evaluation import EvalResult, evaluate, scored_char_count
from .model import RNNLanguageModel, State, detach_state
from .runtime import autocast, bf16_fallback_note, resolve_device, resolve_precision
from .sizing import run_seconds
from .prepare import Corpus
from .tokenizers import Tokenizer

VAL_STREAMS = 16  # parallel streams for validation (each warmed up; see evaluation.py)
RESUME_VERSION = 1  # version of the training state stored in latest.safetensors
RANK_SEED_STRIDE = 1_000_003  # rank r > 0 draws dropout masks from seed + r * this


@dataclass
class Event:
    """A report from the loop. kind: "start", "progress", "eval", "skip", "rollback" or "done"."""

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


def _optimizer(model: RNNLanguageModel, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, bool]:
    """AdamW, and whether it is the fused kernel (which can skip a step on the device)."""
    # Weight decay on matrices only; biases and the embedding table are not decayed
    # (the embedding is a matrix, but rows of rare tokens get few gradient updates).
    emb = model.embedding.weight
    decay = [p for p in model.parameters() if p.dim() >= 2 and p is not emb]
    rest = [p for p in model.parameters() if p.dim() < 2 or p is emb]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    try:
        # Fused AdamW: one kernel for all parameters (about 10x faster than the foreach
        # version on this CPU), and it honours ``found_inf`` as GradScaler uses it.
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99), fused=True), True
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without the kernel
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99)), False


class Trainer:
    """One training run: build (or restore) the model and loop until a limit is reached."""

    def __init__(
        self,
        corpus: Corpus,
        model_config: ModelConfig,
        train_config: TrainConfig,
        run_dir: RunDirectory | None,
        on_event: Callable[[Event], None] = lambda e: None,
        start_time: float | None = None,
        resume: Checkpoint | None = None,
        dist: DistContext | None = None,
        sizing: dict[str, Any] | None = None,
    ):
        self.t0 = time.perf_counter() if start_time is None else start_time
        self.cfg = cfg = train_config
        # One process, or one rank of several: ``main`` (rank 0) writes files and reports.
        # Under torchrun with one process there is nothing to share: train as one process
        # (DDP there cost 8-19% on an H100), unless CHARRNN_FORCE_DDP=1 (tests of the DDP path).
        several = dist is not None and (dist.world_size > 1 or os.environ.get("CHARRNN_FORCE_DDP") == "1")
        self.dist = dist if several else None
        self.main = dist is None or dist.main
        self.world = self.dist.world_size if self.dist else 1
        if self.main and run_dir is None:
            raise TypeError("the main process needs a run directory")
        self.run_dir = run_dir
        self.on_event = on_event if self.main else (lambda e: None)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = dist.device if dist is not None else resolve_device(cfg.device)
        self.dtype = resolve_precision(cfg.precision, self.device)
        # How the model size was chosen (sizing.SizeChoice as a dict), kept in every checkpoint.
        self.sizing = sizing
        if resume is not None:
            model_config = resume.model_config
            self.sizing = resume.sizing
            if resume.tokenizer.state()[0] != corpus.tokenizer.state()[0]:
                raise CheckpointError(f"{resume.path}: the corpus was tokenized with another tokenizer than the run's")

        self.tok = tok = corpus.tokenizer
        self.val_ids = corpus.val
        if self.val_ids.numel() < 2:
            raise CorpusError("the validation text needs at least 2 tokens")
        # Validation bpc divides by the characters the scored tokens cover, as eval does.
        self.val_chars = scored_char_count(tok, corpus.val_text_chars, self.val_ids)
        self.batches = StreamBatches.build(corpus.train, cfg.batch_size, cfg.bptt)
        if self.dist:
            distributed.check_batch(cfg.batch_size, self.world)
            # This rank's streams: a contiguous block of rows of the global layout.
            rows = cfg.batch_size // self.world
            self.rows = slice(self.dist.rank * rows, (self.dist.rank + 1) * rows)
            self.batches.data = self.batches.data[self.rows]
        if self.device.type == "cuda":
            # The whole id array goes to the GPU once (2 bytes a token: 400 MB for a 200M-token
            # corpus): windows are then device views, with no host-to-device copy per step.
            self.batches.data = self.batches.data.to(self.device)
        self.fingerprint = corpus.fingerprint
        self.train_tokens = corpus.train.numel()
        model_config = dataclasses.replace(model_config, vocab_size=tok.vocab_size)

        torch.manual_seed(cfg.seed)
        self.model = RNNLanguageModel(model_config).to(self.device)
        self.model.train()
        # What a step calls: the model itself, or its DDP wrapper that averages gradients.
        self.net: torch.nn.Module = self.model
        if self.dist:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids, gradient_as_bucket_view=True)
            if self.dist.rank:
                torch.manual_seed(cfg.seed + RANK_SEED_STRIDE * self.dist.rank)  # own dropout masks
        self.opt, self.fused = _optimizer(self.model, cfg)
        self.params = [p for g in self.opt.param_groups for p in g["params"]]
        # Divergence checks read a device flag: every step on the CPU (free there) or
        # without the fused optimizer (the step must be skipped on the host), else at
        # each log interval, so CUDA steps need no extra host sync.
        self.check_every = 1 if (self.device.type == "cpu" or not self.fused) else cfg.log_interval

        epochs = cfg.effective_epochs
        limits = [s for s in (cfg.max_steps, epochs and math.ceil(epochs * self.batches.windows_per_epoch)) if s]
        self.planned_steps = min(limits) if limits else None

        # Loop state (all of it goes into the latest checkpoint).
        self.step = 0
        self.best: dict[str, Any] | None = None  # metrics of the best evaluation
        self.last_val: dict[str, Any] | None = None  # EvalResult fields of the last evaluation
        self.last_eval_step = -1
        self.state: State | None = None
        self.rollbacks = 0
        self.lr_factor = 1.0
        self.skipped = 0
        dev = self.device
        self.loss_sum = torch.zeros((), device=dev)  # summed finite losses since the last log
        self.ok_count = torch.zeros((), dtype=torch.long, device=dev)  # their number
        self.bad_new = torch.zeros((), dtype=torch.long, device=dev)  # skipped since the last check
        self.bad_run = torch.zeros((), dtype=torch.long, device=dev)  # skipped in a row, now
        self.bad_run_max = torch.zeros((), dtype=torch.long, device=dev)  # longest run since the check
        self.resumed_from: int | None = None
        self.saved_step: int | None = None  # step of the last complete latest checkpoint
        self._stop_signal: int | None = None
        self._in_a_row = 0  # skipped steps in a row at the last divergence check
        if resume is not None:
            self._restore(resume)

        # Timing (not part of the state).
        self.eval_seconds: float | None = None
        self.save_seconds = 0.5
        self.step_seconds = 0.0
        self.tokens_seen = 0
        self.tokens_per_sec = 0.0
        self.lr = cfg.lr

    # ------------------------------------------------------------------ state

    def _resume_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """JSON and tensors from which ``_restore`` continues the run exactly here."""
        opt_state = self.opt.state_dict()
        tensors: dict[str, torch.Tensor] = {}
        for index, entries in opt_state["state"].items():
            for name, value in entries.items():
                tensors[f"opt.{index}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
        cuda_rng = 0
        if self.dist is None:
            tensors["rng.cpu"] = torch.get_rng_state()
            if self.device.type == "cuda":
                for i, s in enumerate(torch.cuda.get_rng_state_all()):
                    tensors[f"rng.cuda.{i}"] = s
                    cuda_rng += 1
        else:
            # Every rank's generators: rank 0's under the one-process names, the others' by rank.
            for r, s in enumerate(distributed.all_gather(self.dist, torch.get_rng_state())):
                tensors["rng.cpu" if r == 0 else f"rng.rank{r}.cpu"] = s
            if self.device.type == "cuda":
                for r, s in enumerate(distributed.all_gather(self.dist, torch.cuda.get_rng_state(self.device))):
                    tensors["rng.cuda.0" if r == 0 else f"rng.rank{r}.cuda"] = s
                cuda_rng = 1
        hidden = 0
        if self.state is not None:
            parts = self.state if isinstance(self.state, tuple) else (self.state,)
            if self.dist:  # (L, N/W, H) per rank -> the global (L, N, H), rows in rank order
                parts = tuple(torch.cat(distributed.all_gather(self.dist, s), dim=1) for s in parts)
            for i, s in enumerate(parts):
                tensors[f"hidden.{i}"] = s
            hidden = len(parts)
        for name in ("loss_sum", "ok_count", "bad_new", "bad_run", "bad_run_max"):
            tensors[f"acc.{name}"] = getattr(self, name)
        meta = {
            "version": RESUME_VERSION,
            "step": self.step,
            "epoch": self.batches.epoch,
            "position": self.batches.position,
            "elapsed": time.perf_counter() - self.t0,
            "best": self.best,
            "last_val": self.last_val,
            "last_eval_step": self.last_eval_step,
            "rollbacks": self.rollbacks,
            "lr_factor": self.lr_factor,
            "skipped": self.skipped,
            "fingerprint": self.fingerprint,
            "optimizer_groups": opt_state["param_groups"],
            "hidden": hidden,
            "cuda_rng": cuda_rng,
            "world_size": self.world,
        }
        return meta, tensors

    def _load_optimizer(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        groups = []
        for saved, current in zip(meta["optimizer_groups"], self.opt.param_groups):
            g = dict(saved)
            for k in ("fused", "foreach", "capturable"):  # how to run, not what to compute
                if k in current:
                    g[k] = current[k]
            groups.append(g)
        self.opt.load_state_dict({"state": state, "param_groups": groups})

    def _restore(self, ck: Checkpoint) -> None:
        r, t = ck.resume or {}, ck.resume_tensors
        where = ck.path
        if r.get("version") != RESUME_VERSION:
            raise CheckpointError(f"{where}: training state version {r.get('version')} is not supported by this charrnn")
        if r.get("fingerprint") != self.fingerprint:
            raise CorpusError(
                "the training or validation text differs from the one this run was trained on "
                "(same corpus files and validation split needed to resume)"
            )
        try:
            self.model.load_state_dict(ck.weights, strict=True)
            self._load_optimizer(r, t)
            if not 0 <= r["position"] <= self.batches.windows_per_epoch:
                raise ValueError("data position out of range")
            self.step = int(r["step"])
            self.batches.epoch, self.batches.position = int(r["epoch"]), int(r["position"])
            self.best, self.last_val = r["best"], r["last_val"]
            self.last_eval_step = int(r["last_eval_step"])
            self.rollbacks, self.lr_factor, self.skipped = int(r["rollbacks"]), float(r["lr_factor"]), int(r["skipped"])
            parts = tuple(t[f"hidden.{i}"] for i in range(int(r["hidden"])))
            if any(p.dim() != 3 or p.shape[1] != self.cfg.batch_size for p in parts):
                raise ValueError("carried state of another batch size")
            if self.dist:
                parts = tuple(p[:, self.rows] for p in parts)  # this rank's streams
            parts = tuple(p.to(self.device) for p in parts)
            self.state = None if not parts else parts if len(parts) > 1 else parts[0]
            for name in ("loss_sum", "ok_count", "bad_new", "bad_run", "bad_run_max"):
                getattr(self, name).copy_(t[f"acc.{name}"])
            rank = self.dist.rank if self.dist else 0
            cpu_key = "rng.cpu" if rank == 0 else f"rng.rank{rank}.cpu"
            if cpu_key in t:
                torch.set_rng_state(t[cpu_key])
            else:  # a rank the saved run did not have: its own stream, from the seed and the step
                torch.manual_seed(self.cfg.seed + RANK_SEED_STRIDE * rank + self.step)
            if self.device.type == "cuda":
                if self.dist is None and r["cuda_rng"] == torch.cuda.device_count():
                    torch.cuda.set_rng_state_all([t[f"rng.cuda.{i}"] for i in range(r["cuda_rng"])])
                elif self.dist is not None:
                    cuda_key = "rng.cuda.0" if rank == 0 else f"rng.rank{rank}.cuda"
                    if cuda_key in t:
                        torch.cuda.set_rng_state(t[cuda_key], self.device)
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{where}: training state is damaged or does not fit this run ({e})") from None
        self.resumed_from = self.step
        self.saved_step = self.step
        # The budget covers the whole run: count the time the earlier processes spent.
        self.t0 -= float(r["elapsed"])

    # ------------------------------------------------------------------ saving

    def _on_main(self, fn: Callable[[], Any]) -> Any:
        """Run a write on the main process; with several, every rank learns if it failed."""
        return distributed.main_first(self.dist, fn)

    def _log(self, record: dict[str, Any]) -> None:
        self._on_main(lambda: self.run_dir.log(record))

    def _save(self, which: str, metrics: dict[str, Any], state=None) -> None:
        self._on_main(lambda: self.run_dir.save(which, self.model, self.cfg, self.tok, self.step, metrics, state,
                                                self.sizing))

    def _save_latest(self, metrics: dict[str, Any]) -> str | None:
        self._save("latest", metrics, self._resume_state())  # the state gathers from every rank
        self.saved_step = self.step
        return str(self.run_dir.latest) if self.main else None

    def _validate(self) -> tuple[EvalResult, float]:
        def run() -> tuple[EvalResult, float]:
            t = time.perf_counter()
            res = evaluate(self.model, self.val_ids, unk_id=self.tok.unk_id, chars=self.val_chars,
                           streams=VAL_STREAMS, dtype=self.dtype)
            return res, time.perf_counter() - t

        if self.dist is None:
            return run()
        # Rank 0 validates; the others wait for its numbers.
        found = self._on_main(run)
        v = torch.zeros(5, dtype=torch.float64)
        if found is not None:
            res, secs = found
            v = torch.tensor([res.nll, res.tokens, res.chars, res.unknown, secs], dtype=torch.float64)
        v = distributed.all_reduce(self.dist, v).tolist()
        return EvalResult(v[0], int(v[1]), int(v[2]), int(v[3])), v[4]

    def _record_eval(self, final: bool) -> None:
        res, secs = self._validate()
        self.eval_seconds = secs
        self.last_val = {"loss": res.loss, "bpc": res.bpc, "unknown": res.unknown}
        self.last_eval_step = self.step
        now = time.perf_counter()
        metrics = {"step": self.step, "time": round(now - self.t0, 3), "val_loss": res.loss, "val_bpc": res.bpc,
                   "val_unknown": res.unknown, "lr": self.lr, "tokens_per_sec": self.tokens_per_sec,
                   "epoch": self.step / self.batches.windows_per_epoch}
        # A NaN score (weights blown up to huge but finite values) is worse than any other:
        # it is best only when there is nothing else yet.
        best_loss = self.best["val_loss"] if self.best is not None else None
        improved = best_loss is None or (math.isfinite(res.loss) and not res.loss >= best_loss)
        t = time.perf_counter()
        if improved:
            self.best = dict(metrics)
            self._save("best", {**metrics, "best_val_bpc": res.bpc, "best_step": self.step})
        # best before latest: a crash between the two leaves a latest whose idea of the
        # best is older, and replaying from it rewrites the same best again.
        self._save_latest({**metrics, "best_val_bpc": self.best["val_bpc"], "best_step": self.best["step"]})
        self.save_seconds = max((time.perf_counter() - t) / (2 if improved else 1), 0.05)
        self._log({"event": "eval", **metrics, "best": improved, "final": final})
        self._emit("eval", {**metrics, "best_val_bpc": self.best["val_bpc"], "improved": improved, "final": final})

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        self.on_event(Event(kind, self.step, time.perf_counter() - self.t0, data))

    # ------------------------------------------------------------------ schedule

    def _reserve(self) -> float:
        """Seconds kept back from a time budget for the final evaluation and save."""
        est_eval = self.eval_seconds
        if est_eval is None:
            # A forward pass over the validation tokens, without backward or optimizer
            # step, costs about a third of training on as many tokens.
            rate = self.tokens_seen / max(time.perf_counter() - self.train_t0, 1e-6) if self.tokens_seen else 5e4
            est_eval = self.val_ids.numel() / max(3 * rate, 1.0)
        return 1.2 * est_eval + 2 * self.save_seconds + 0.5

    def _progress(self, now: float) -> float:
        fractions = [0.0]
        if self.planned_steps:
            fractions.append(self.step / self.planned_steps)
        if self.cfg.time_budget:
            fractions.append((now - self.t0) / max(self.cfg.time_budget - self._reserve(), 1e-6))
        return max(fractions)

    def _predicted_seconds(self) -> float | None:
        """When the run should end, in seconds since ``t0``: the time budget, or the steps
        left at the measured speed (``sizing``); None when nothing was measured."""
        if self.cfg.time_budget:
            return self.cfg.time_budget
        speed = (self.sizing or {}).get("tokens_per_sec")
        if not speed or self.planned_steps is None:
            return None
        left = run_seconds(speed, max(self.planned_steps - self.step, 0), self.cfg, self.val_ids.numel())
        return time.perf_counter() - self.t0 + left + self.save_seconds * 2

    def _limit_reached(self, now: float, ahead: int = 1) -> bool:
        """Whether to stop now; ``ahead``: steps until the next chance to stop."""
        if self.planned_steps is not None and self.step >= self.planned_steps:
            return True
        budget = self.cfg.time_budget
        return budget is not None and now - self.t0 + ahead * self.step_seconds + self._reserve() >= budget

    def _control(self, now: float) -> tuple[int | None, bool]:
        """(signal to stop on, limit reached), the same on every rank.

        With several processes the ranks exchange their signal and rank 0's clock at each
        check (every ``check_every`` steps); between checks only the step limit applies.
        """
        if self.dist is None:
            return self._stop_signal, self._limit_reached(now)
        steps_done = self.planned_steps is not None and self.step >= self.planned_steps
        if self.step % self.check_every:
            return None, steps_done
        limit = self._limit_reached(now, ahead=self.check_every) if self.main else steps_done
        mine = torch.tensor([self._stop_signal or 0, int(limit)], dtype=torch.long)
        sig, limit = distributed.all_reduce(self.dist, mine, "max").tolist()
        return (sig or None), bool(limit)

    # ------------------------------------------------------------------ stepping

    def _step(self) -> None:
        """One window: forward, backward, clip, and an update unless something is not finite."""
        cfg, opt = self.cfg, self.opt
        x, y, new_epoch = self.batches.next()
        if new_epoch:
            self.state = None  # the streams jump back to their starts: the old state means nothing
        before = self.state
        x = x.to(self.device, dtype=torch.long, non_blocking=True)
        y = y.to(self.device, dtype=torch.long, non_blocking=True)
        with autocast(self.device, self.dtype):
            logits, state = self.net(x, before)
        loss = self.loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        loss = loss.detach()
        if self.dist:  # the mean over the global batch (equal tokens per rank), the same on every rank
            loss = distributed.all_reduce(self.dist, loss.float()) / self.world
        ok = torch.isfinite(loss) & torch.isfinite(norm)
        if self.fused:
            opt.found_inf = (~ok).float()  # the kernel leaves weights and moments alone when set
            opt.step()
        elif bool(ok):
            opt.step()
        # A skipped window leaves the carried state as it was before it.
        state = detach_state(state)
        if isinstance(state, tuple):
            old = before if before is not None else (None,) * len(state)
            self.state = tuple(torch.where(ok, s, o if o is not None else 0.0) for s, o in zip(state, old))
        else:
            self.state = torch.where(ok, state, before if before is not None else 0.0)
        self.loss_sum += torch.where(ok, loss.float(), 0.0)
        self.ok_count += ok
        bad = (~ok).long()
        self.bad_new += bad
        self.bad_run.mul_(bad).add_(bad)  # consecutive skipped steps: reset on a good one
        torch.maximum(self.bad_run_max, self.bad_run, out=self.bad_run_max)
        self.step += 1
        self.tokens_seen += x.numel() * self.world
        self.window_tokens += x.numel() * self.world

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of a window (a method, so tests can poison it)."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def _check_divergence(self) -> None:
        new = int(self.bad_new)
        if not new:
            self._in_a_row = 0
            return
        longest, now_in_a_row = int(self.bad_run_max), int(self.bad_run)
        # A new streak began since the last check unless all new skips continue the old one.
        new_streak = self._in_a_row == 0 or new > now_in_a_row
        self._in_a_row = now_in_a_row
        self.skipped += new
        self.bad_new.zero_()
        self.bad_run_max.copy_(self.bad_run)
        self._log({"event": "skip", "step": self.step, "skipped": new, "total_skipped": self.skipped})
        self._emit("skip", {"skipped": new, "total_skipped": self.skipped, "in_a_row": longest,
                            "new_streak": new_streak, "rollback_after": self.cfg.rollback_after})
        if longest >= self.cfg.rollback_after:
            self._rollback(longest)

    def _rollback(self, in_a_row: int) -> None:
        if self.rollbacks >= self.cfg.max_rollbacks:
            latest = self.run_dir.latest if self.run_dir is not None else "latest.safetensors"
            where = f"{latest} (step {self.saved_step})" if self.saved_step is not None else "none"
            raise TrainingDiverged(
                f"training diverged: {in_a_row} steps in a row had a non-finite loss or gradient at step "
                f"{self.step}, after {self.rollbacks} rollback(s) (learning rate now x{self.lr_factor:g}); "
                f"the last good checkpoint is {where}"
            )
        # Rank 0 holds the file; the other ranks load a copy of its bytes.
        path = distributed.share_file(self.dist, self.run_dir.latest if self.main else None, ".safetensors")

        def load() -> Checkpoint:
            ck = load_checkpoint(path, resume=True)
            try:
                self.model.load_state_dict(ck.weights, strict=True)
                self._load_optimizer(ck.resume or {}, ck.resume_tensors)
            except (KeyError, ValueError, RuntimeError) as e:
                raise CheckpointError(f"{ck.path}: cannot roll back to it ({e})") from None
            return ck

        ck = distributed.each(self.dist, load)
        self.rollbacks += 1
        self.lr_factor *= self.cfg.rollback_lr_factor
        self.state = None
        self._in_a_row = 0
        for t in (self.bad_run, self.bad_run_max):
            t.zero_()
        data = {"rollback": self.rollbacks, "to_step": ck.step, "lr_factor": self.lr_factor, "in_a_row": in_a_row}
        self._log({"event": "rollback", "step": self.step, **data})
        self._emit("rollback", data)

    def _log_progress(self) -> None:
        count = int(self.ok_count)  # the one host sync per log interval
        train_loss = float(self.loss_sum) / count if count else None
        t = time.perf_counter()
        self.tokens_per_sec = self.window_tokens / max(t - self.window_t, 1e-9)
        self.step_seconds = (t - self.window_t) / max(self.window_steps, 1)
        self.window_t, self.window_tokens, self.window_steps = t, 0, 0
        self.loss_sum.zero_()
        self.ok_count.zero_()
        rec = {"step": self.step, "time": round(t - self.t0, 3), "train_loss": train_loss,
               "train_bpc": None if train_loss is None else train_loss / math.log(2), "lr": self.lr,
               "tokens_per_sec": self.tokens_per_sec, "epoch": self.step / self.batches.windows_per_epoch,
               "skipped": self.skipped}
        self._log({"event": "train", **rec})
        self._emit("progress", {**rec, "planned_steps": self.planned_steps, "progress": self._progress(t),
                                "val_bpc": self.last_val["bpc"] if self.last_val else None})

    # ------------------------------------------------------------------ the run

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop at the end of the current step, saving it (what a first Ctrl-C does)."""
        if self._stop_signal is None:
            self._stop_signal = signum

    @contextlib.contextmanager
    def _signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._stop_signal is None:
                self._stop_signal = signum
            else:
                raise KeyboardInterrupt  # a second signal: give up at once

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def run(self) -> TrainResult:
        with self._signals(), self._ddp_released():
            try:
                return self._run()
            except KeyboardInterrupt:
                saved = str(self.run_dir.latest) if self.saved_step is not None and self.main else None
                raise TrainingInterrupted(self.step, saved, self._stop_signal or signal.SIGINT, forced=True,
                                          saved_step=self.saved_step) from None
            except (RuntimeError, distributed.PeerLost) as e:
                if self.dist is None or not (isinstance(e, distributed.PeerLost) or distributed.is_comm_error(e)):
                    raise
                last = (f"the last checkpoint is {self.run_dir.latest} (step {self.saved_step}); continue with "
                        f"--resume" if self.main and self.saved_step is not None else "")
                reason = (str(e) if isinstance(e, distributed.PeerLost)
                          else f"lost contact with another process of the run ({distributed.first_line(e)})")
                raise distributed.PeerLost(f"{reason} at step {self.step}" + (f"; {last}" if last else "")) from None

    @contextlib.contextmanager
    def _ddp_released(self):
        """Drop the DDP wrapper when the run ends, however it ends: its reducer must be gone
        before the process group is destroyed (else gloo's threads can abort the exit)."""
        try:
            yield
        finally:
            if self.net is not self.model:
                self.net = self.model
                gc.collect()

    def _stop_now(self) -> None:
        metrics = {"step": self.step, "time": round(time.perf_counter() - self.t0, 3), "interrupted": True,
                   "lr": self.lr}
        if self.best:
            metrics.update(best_val_bpc=self.best["val_bpc"], best_step=self.best["step"])
        path = self._save_latest(metrics)
        self._log({"event": "interrupted", "step": self.step, "signal": self._stop_signal})
        raise TrainingInterrupted(self.step, path, self._stop_signal or signal.SIGINT)

    def _run(self) -> TrainResult:
        cfg = self.cfg
        self.predicted_seconds = self._predicted_seconds()
        self._emit("start", {
            "params": self.model.num_parameters(), "device": str(self.device),
            "precision": str(self.dtype).replace("torch.", "") if self.dtype else "fp32",
            "precision_note": bf16_fallback_note(cfg.precision, self.device),
            "train_tokens": self.train_tokens, "val_tokens": self.val_ids.numel(),
            "vocab_size": self.tok.vocab_size, "planned_steps": self.planned_steps, "time_budget": cfg.time_budget,
            "windows_per_epoch": self.batches.windows_per_epoch, "processes": self.world,
            "model_config": dataclasses.asdict(self.model.config), "resumed_from": self.resumed_from,
            "sizing": self.sizing, "predicted_seconds": self.predicted_seconds,
        })
        if self.resumed_from is None:
            # Both checkpoints exist from the start: the run directory is loadable and
            # resumable whenever the process dies, and a rollback always has a target.
            self._save("best", {"step": 0})
            self._save_latest({"step": 0})
        else:
            self._on_main(lambda: self.run_dir.truncate_log(self.step))
            missing = torch.tensor([int(self.main and not self.run_dir.best.exists())])
            if self.dist:
                missing = distributed.all_reduce(self.dist, missing, "max")
            if missing.item():  # deleted by hand: the next evaluation writes it again
                self.best = None
        self.train_t0 = self.window_t = time.perf_counter()
        self.window_tokens = self.window_steps = 0
        steps_before = self.step
        while True:
            now = time.perf_counter()
            signum, limit = self._control(now)
            if signum is not None:
                self._stop_signal = signum
                self._stop_now()
            if limit:
                break
            self.lr = lr_at(cfg, self.step, self._progress(now)) * self.lr_factor
            for g in self.opt.param_groups:
                g["lr"] = self.lr
            self._step()
            self.window_steps += 1
            log_now = self.step % cfg.log_interval == 0 or self.step == self.planned_steps
            if log_now or self.step % self.check_every == 0:
                self._check_divergence()
            if log_now:
                self._log_progress()
            if self.step % cfg.eval_interval == 0:
                # Skip a periodic evaluation that would eat into the final one's reserve
                # (rank 0's clock decides for every rank).
                room = cfg.time_budget is None or time.perf_counter() - self.t0 + 2 * self._reserve() < cfg.time_budget
                if self.dist and cfg.time_budget is not None:
                    flag = torch.tensor([int(self.main and room)])
                    room = bool(distributed.all_reduce(self.dist, flag, "max").item())
                if room:
                    self._record_eval(final=False)

        if self.step == 0:
            raise CorpusError("no training step fit in the limits given (time budget too short?)")
        self._check_divergence()
        if self.last_eval_step != self.step:
            self._record_eval(final=True)
        elapsed = time.perf_counter() - self.t0
        best, last = self.best, self.last_val
        assert best is not None and last is not None
        summary = {
            "val_loss": best["val_loss"],
            "val_bpc": best["val_bpc"],
            "best_step": best["step"],
            "final_val_loss": last["loss"],
            "final_val_bpc": last["bpc"],
            "val_unknown": last["unknown"],
            "steps": self.step,
            "resumed_from": self.resumed_from,
            "steps_this_run": self.step - steps_before,
            "skipped_steps": self.skipped,
            "rollbacks": self.rollbacks,
            "epochs": self.step / self.batches.windows_per_epoch,
            "tokens_per_sec": self.tokens_seen / max(elapsed, 1e-9),
            "train_tokens_per_sec": self.tokens_seen / max(time.perf_counter() - self.train_t0, 1e-9),
            "params": self.model.num_parameters(),
            "sizing": self.sizing,
            "predicted_seconds": self.predicted_seconds,
            "elapsed": elapsed,
            "device": str(self.device),
            "processes": self.world,
            "checkpoint": str(self.run_dir.best) if self.main else None,
            "latest": str(self.run_dir.latest) if self.main else None,
            "run_dir": str(self.run_dir.path) if self.main else None,
        }
        self._emit("done", summary)
        return TrainResult(summary, self.model, self.tok)


def train(
    train_text: str | None,
    val_text: str | None,
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: RunDirectory,
    on_event: Callable[[Event], None] = lambda e: None,
    tokenizer: Tokenizer | None = None,
    start_time: float | None = None,
    resume: Checkpoint | None = None,
    corpus: Corpus | None = None,
    dist: DistContext | None = None,
    sizing: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a model on ``train_text``, validating on ``val_text``; return the summary.

    ``corpus`` (from ``prepare.prepare_corpus``) gives the token ids instead of the texts.
    ``tokenizer`` defaults to a char tokenizer of the training text. ``start_time``
    (time.perf_counter) is when the time budget started counting; by default, now.
    ``resume`` (a checkpoint loaded with ``resume=True``) continues that run with its
    model config and tokenizer; ``model_config`` and ``tokenizer`` are then ignored.
    """
    if corpus is None:
        if train_text is None or val_text is None:
            raise TypeError("train() needs train_text and val_text, or corpus")
        corpus = Corpus.from_texts(train_text, val_text, resume.tokenizer if resume is not None else tokenizer)
    return Trainer(corpus, model_config, train_config, run_dir, on_event, start_time, resume, dist, sizing).run()
