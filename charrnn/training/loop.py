"""The one training loop, for every task: AdamW, warmup + cosine decay, limits, events.

The loop knows a Task (tasks/base.py), never what is inside a batch: the task supplies
batches, the loss of a batch and validation metrics. What the loop keeps is generic:
the schedule and limits (schedule.py), skipping and rollback (guard.py), the resumable
state (state.py), signals, several processes, events and metrics.jsonl. It never prints
and never opens files itself: it reports through ``on_event`` and stores checkpoints and
metrics through the ``RunDirectory`` it is given.

Signals: while the loop runs (in the main thread), SIGINT and SIGTERM ask it to stop at the
end of the current step; it then saves the latest checkpoint and raises
TrainingInterrupted. A second signal abandons that at once (KeyboardInterrupt), leaving the
last complete checkpoint on disk.

Several processes (``dist``, see distributed.py): rank r of W trains its share of each
batch (``Task.shard``), DistributedDataParallel averages the gradients, and each step's
loss is averaged over the ranks, so the update, the clipping, the skip decision and the
logged loss are those of one process with the whole batch. Signals and the time budget
are decided together at each check (every step on the CPU, every log interval on CUDA);
rank 0 validates and broadcasts the result, and rank 0 alone writes files and reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import signal
import threading
import time
from typing import Any, Callable

import torch

from ..checkpoint import Checkpoint, RunDirectory
from ..config import TrainConfig
from ..errors import CheckpointError, CorpusError, TrainingInterrupted
from ..runtime import bf16_fallback_note, resolve_device, resolve_precision
from ..tasks.base import Task
from . import distributed, report, state
from .distributed import DistContext
from .events import Event, TrainResult
from .guard import DivergenceGuard
from .optim import make_optimizer
from .swa import Averager
from .transfer import scales
from .schedule import Limits, anneal_progress, lr_at, planned_steps


class Trainer:
    """One training run of ``task``: build (or restore) the model and loop until a limit."""

    def __init__(self, task: Task, train_config: TrainConfig, run_dir: RunDirectory | None,
                 on_event: Callable[[Event], None] = lambda e: None, start_time: float | None = None,
                 resume: Checkpoint | None = None, dist: DistContext | None = None,
                 sizing: dict[str, Any] | None = None):
        self.task, self.cfg = task, train_config
        cfg = train_config
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
        self.init_report: dict[str, Any] | None = None
        if resume is not None:
            self.sizing = resume.sizing
            task.model_config = resume.model_config
            if resume.tokenizer.state()[0] != task.checkpoint_parts()["tokenizer"].state()[0]:
                raise CheckpointError(f"{resume.path}: the data was tokenized with another tokenizer than the run's")
        self.rows: slice | None = None  # this process's rows of a batch (several processes)
        if self.dist:
            distributed.check_batch(cfg.batch_size, self.world)
            share = cfg.batch_size // self.world
            self.rows = slice(self.dist.rank * share, (self.dist.rank + 1) * share)
            task.shard(self.dist.rank, self.world)
        task.to_device(self.device)

        self._build()
        self.limits = Limits(cfg, planned_steps(cfg, task.batches.windows_per_epoch), task.val_size)
        if start_time is not None:
            self.limits.t0 = start_time
        self.guard = DivergenceGuard(self, self.device)

        # Loop state (all of it goes into the latest checkpoint, with the guard's).
        self.step = 0
        self.best: dict[str, Any] | None = None  # metrics of the best evaluation
        self.last_val: dict[str, Any] | None = None  # the task's metrics at the last evaluation
        self.last_eval_step = -1
        self.stale_evals = 0  # evaluations in a row without a better score (early stopping)
        # (step, schedule progress) where the score stalled for --patience evaluations: the
        # learning rate anneals from there over as many evaluations again, then the run ends.
        self.anneal: tuple[int, float] | None = None
        self.stopped_early = False
        self.averager = Averager(cfg.average_last)  # --average-last: the weights of the last evaluations
        self.resumed_from: int | None = None
        self.saved_step: int | None = None  # step of the last complete latest checkpoint
        self._stop_signal: int | None = None
        if resume is not None:
            state.restore(self, resume)
        self.items_this_log = self.steps_this_log = 0
        self.rate = 0.0  # items per second over the last log interval
        self.lr = cfg.lr

    def _build(self) -> None:
        """The model (seeded), its DDP wrapper with several processes, and the optimizer."""
        cfg, task = self.cfg, self.task
        torch.manual_seed(cfg.seed)
        self.model = task.build_model(self.device)
        init = getattr(task, "init_from", None)  # --init RUN: a language model's weights (transfer.py)
        self.depths: dict[str, int] | None = None
        if init is not None:
            from .transfer import copy_from, depths

            copied = copy_from(self.model, *init)
            if cfg.layer_lr_decay != 1.0 or cfg.unfreeze:
                self.depths = depths(self.model, *init)
            self.init_report = {"from": str(init[0].path), "whole": sum(v == "whole" for v in copied.values()),
                                "part": sum(v == "part" for v in copied.values())}
            if hasattr(task, "init_rows"):  # a task whose vocabulary is its own: rows matched by text
                self.init_report["rows"] = task.init_rows(self.model, init[0])
        self.model.train()
        # What a step calls: the model itself, or its DDP wrapper that averages gradients.
        self.net: torch.nn.Module = self.model
        if self.dist:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids, gradient_as_bucket_view=True)
            if self.dist.rank:  # own dropout masks
                torch.manual_seed(cfg.seed + state.RANK_SEED_STRIDE * self.dist.rank)
        self.opt, self.fused = make_optimizer(self.model, cfg, task.no_decay(self.model), self.depths)
        self.top = max(self.depths.values()) if self.depths else 0
        self.params = [p for g in self.opt.param_groups for p in g["params"]]
        # Divergence checks read a device flag: every step on the CPU (free there) or
        # without the fused optimizer (the step must be skipped on the host), else at
        # each log interval, so CUDA steps need no extra host sync.
        self.check_every = 1 if (self.device.type == "cpu" or not self.fused) else cfg.log_interval

    @property
    def t0(self) -> float:
        return self.limits.t0

    @property
    def planned_steps(self) -> int | None:
        return self.limits.planned

    # ------------------------------------------------------------------ reporting and saving

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """Run a write on the main process; with several, every rank learns if it failed."""
        return distributed.main_first(self.dist, fn)

    def log(self, record: dict[str, Any]) -> None:
        self.on_main(lambda: self.run_dir.log(record))

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.on_event(Event(kind, self.step, time.perf_counter() - self.t0, data))

    def save(self, which: str, metrics: dict[str, Any], resume=None) -> None:
        parts = self.task.checkpoint_parts()
        self.on_main(lambda: self.run_dir.save(which, self.model, self.cfg, parts["tokenizer"], self.step, metrics,
                                               resume, self.sizing, task=parts["task"],
                                               task_state=parts["task_state"]))

    def save_latest(self, metrics: dict[str, Any]) -> str | None:
        self.save("latest", metrics, state.resume_state(self))  # the state gathers from every rank
        self.saved_step = self.step
        return str(self.run_dir.latest) if self.main else None

    # ------------------------------------------------------------------ stepping

    def control(self, now: float) -> tuple[int | None, bool]:
        """(signal to stop on, limit reached), the same on every rank.

        With several processes the ranks exchange their signal and rank 0's clock at each
        check (every ``check_every`` steps); between checks only the step limit applies.
        """
        if self.dist is None:
            return self._stop_signal, self.limits.reached(self.step, now)
        steps_done = self.limits.steps_done(self.step)
        if self.step % self.check_every:
            return None, steps_done
        limit = self.limits.reached(self.step, now, ahead=self.check_every) if self.main else steps_done
        mine = torch.tensor([self._stop_signal or 0, int(limit)], dtype=torch.long)
        sig, limit = distributed.all_reduce(self.dist, mine, "max").tolist()
        return (sig or None), bool(limit)

    def train_step(self) -> None:
        """One batch: forward, backward, clip, and an update unless something is not finite."""
        opt = self.opt
        batch = self.task.batches.next()
        loss, items, *shown = self.task.loss(self.net, batch, self.device, self.dtype)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        loss = loss.detach()
        if self.dist:  # the mean over the ranks: the loss of the global batch, the same on every rank
            loss = distributed.all_reduce(self.dist, loss.float()) / self.world
        ok = torch.isfinite(loss) & torch.isfinite(norm)
        if shown:  # the task reports a loss without its regularisation terms
            loss = shown[0].float()
            if self.dist:
                loss = distributed.all_reduce(self.dist, loss) / self.world
        if self.fused:
            opt.found_inf = (~ok).float()  # the kernel leaves weights and moments alone when set
            opt.step()
        elif bool(ok):
            opt.step()
        self.task.keep(ok)
        self.guard.record(loss, ok)
        self.step += 1
        items *= self.world
        self.limits.items_seen += items
        self.items_this_log += items
        self.steps_this_log += 1

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
        headline = self.task.headline
        if self.best:
            metrics.update({f"best_{headline}": self.best[headline], "best_step": self.best["step"]})
        path = self.save_latest(metrics)
        self.log({"event": "interrupted", "step": self.step, "signal": self._stop_signal})
        raise TrainingInterrupted(self.step, path, self._stop_signal or signal.SIGINT)

    def _start(self) -> None:
        cfg = self.cfg
        self.predicted_seconds = self.limits.predicted_seconds(self.step, (self.sizing or {}).get("tokens_per_sec"))
        self.emit("start", {
            "task": self.task.name, "params": sum(p.numel() for p in self.model.parameters()),
            "device": str(self.device), "precision": str(self.dtype).replace("torch.", "") if self.dtype else "fp32",
            "precision_note": bf16_fallback_note(cfg.precision, self.device), **self.task.start_info(),
            "planned_steps": self.planned_steps, "time_budget": cfg.time_budget,
            "windows_per_epoch": self.task.batches.windows_per_epoch, "processes": self.world,
            "model_config": dataclasses.asdict(self.model.config), "resumed_from": self.resumed_from,
            "sizing": self.sizing, "predicted_seconds": self.predicted_seconds, "init": self.init_report,
        })
        if self.resumed_from is None:
            # Both checkpoints exist from the start: the run directory is loadable and
            # resumable whenever the process dies, and a rollback always has a target.
            self.save("best", {"step": 0})
            self.save_latest({"step": 0})
        else:
            self.on_main(lambda: self.run_dir.truncate_log(self.step))
            missing = torch.tensor([int(self.main and not self.run_dir.best.exists())])
            if self.dist:
                missing = distributed.all_reduce(self.dist, missing, "max")
            if missing.item():  # deleted by hand: the next evaluation writes it again
                self.best = None

    def _run(self) -> TrainResult:
        cfg = self.cfg
        self._start()
        self.limits.train_t0 = self.log_t = time.perf_counter()
        steps_before = self.step
        while True:
            now = time.perf_counter()
            signum, limit = self.control(now)
            if signum is not None:
                self._stop_signal = signum
                self._stop_now()
            if limit:
                break
            anneal = self.anneal if cfg.patience else None  # --patience 0 on resume: no anneal
            if anneal is not None and self.step >= anneal[0] + self.anneal_steps:
                self.stopped_early = True
                break
            progress = anneal_progress(self.limits.progress(self.step, now), anneal, self.step, self.anneal_steps)
            self.lr = lr_at(cfg, self.step, progress) * self.guard.lr_factor
            for g in self.opt.param_groups:
                g["lr"] = self.lr if "depth" not in g else self.lr * scales(g["depth"], self.top, self.step,
                                                                            cfg.layer_lr_decay, cfg.unfreeze)
            self.train_step()
            log_now = self.step % cfg.log_interval == 0 or self.step == self.planned_steps
            if log_now or self.step % self.check_every == 0:
                self.guard.check()
            if log_now:
                report.log_progress(self)
            if self.step % cfg.eval_interval == 0 and self._room_for_eval():
                report.record_eval(self, final=False)
        if self.step == 0:
            raise CorpusError("no training step fit in the limits given (time budget too short?)")
        self.guard.check()
        if self.last_eval_step != self.step:
            report.record_eval(self, final=True)
        self.averager.finish(self)
        return report.finish(self, steps_before)

    @property
    def anneal_steps(self) -> int:
        """The length of the anneal after a stall: --patience evaluations' worth of steps."""
        return (self.cfg.patience or 0) * self.cfg.eval_interval

    def _room_for_eval(self) -> bool:
        """Skip a periodic evaluation that would eat into the final one's reserve (rank 0's
        clock decides for every rank)."""
        room = self.limits.room_for_eval()
        if self.dist and self.cfg.time_budget is not None:
            flag = torch.tensor([int(self.main and room)])
            room = bool(distributed.all_reduce(self.dist, flag, "max").item())
        return room
