"""Choosing the model size from what this machine measures, the run's limits and the corpus.

When the user does not fix ``--hidden-size``, ``charrnn train`` picks it from a few
discrete sizes (``HIDDEN_SIZES``, with the run's cell, layers and embedding):

1. Each candidate's training speed (tokens per second of forward, backward and AdamW
   step on windows of the real corpus, at the batch sizes tried and the run's precision)
   is measured from the smallest size up, and kept in a per-machine cache
   (``$XDG_CACHE_HOME/charrnn/speed.json``, keyed by the machine, torch, threads, device,
   precision and the model's shape). The same command on the same machine therefore sees
   the same numbers and picks the same model; delete the file to measure again.
2. The tokens the run will train on follow from its limits: speed x seconds for a time
   budget, epochs x corpus tokens for epochs, steps x batch x bptt for steps (the
   smallest of those given). With no limit at all the run trains ``DEFAULT_EPOCHS``
   epochs or as many steps as fit in about ``DEFAULT_SECONDS`` here, whichever is fewer
   (fixed as a step count before the run starts, so the run is reproducible).
3. The size is the largest candidate that, at batch 32, 16 or 8 (the largest that does),
   gets at least ``MIN_STEPS`` optimizer steps and ``TOKENS_PER_PARAM`` training tokens
   per parameter, with at most ``PARAMS_PER_CORPUS_TOKEN`` parameters per training token
   (a bigger model only memorises a small corpus); the smallest when none fits.

The constants come from ``benchmarks/tune_defaults.py`` on two CPU kinds (an AMX Xeon and
an AVX2-only EPYC; benchmarks/RESULTS.md, "Choosing the model size"): at a fixed time,
bpc falls steeply with the number of steps up to about 1,500, a smaller batch costs these
CPUs little speed, and past that a larger model wins while it sees 1-2 tokens per
parameter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..config import DEFAULT_EPOCHS, DEFAULT_SECONDS, ModelConfig, TrainConfig
from ..models.cells import cell_kind
from ..models.lm import RNNLanguageModel
from ..files import cache_root
from ..runtime import autocast, cpu_name
from .optim import make_optimizer

HIDDEN_SIZES = (128, 192, 256, 384, 512, 768, 1024, 1536, 2048)  # the candidates, smallest first
BATCH_SIZES = (32, 16, 8)  # tried largest first for each size
MIN_STEPS = 1200  # optimizer steps a run needs before a larger model pays (measured)
TOKENS_PER_PARAM = 1.5  # training tokens per parameter a size needs (measured)
PARAMS_PER_CORPUS_TOKEN = 4.0  # beyond this a model memorises a small corpus
TIMING_STEPS = 2  # timed steps per candidate, after one untimed warm-up step
# Seconds of a time budget taken by start-up, measuring, saves and the final evaluation,
# roughly. A fixed figure rather than the clock: the choice must not depend on whether
# the corpus or the speeds were already cached.
SETUP_SECONDS = 6.0
CACHE_VERSION = 1

Measure = Callable[[ModelConfig, int], float]  # (model config, batch size) -> training tokens per second


@dataclass(frozen=True)
class SizeChoice:
    """What was chosen, why, and the measurements behind it (stored in the checkpoint)."""

    hidden_size: int
    tokens_per_sec: float  # measured training speed of the chosen size and batch
    planned_tokens: float  # training tokens the run's limits allow at that speed
    reason: str
    speeds: dict[str, float] = field(default_factory=dict)  # "LxH batch B" -> tokens/s, as measured
    cached: bool = False  # the speeds came from the machine's speed cache
    auto: bool = True  # False: the size was given; only its speed was measured (for the prediction)
    batch_size: int = 0  # the batch the speed was measured at (and, when auto, chosen)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def params_of(config: ModelConfig) -> int:
    """Parameter count of the model ``config`` describes, without building it."""
    h, e, v, n = config.hidden_size, config.embedding_dim, config.vocab_size, config.layers
    kind = cell_kind(config.cell)
    biases = 2 if kind.bias else 0  # b_ih and b_hh
    if kind.count is not None:
        rnn = kind.count(e, h, n)
    else:
        rnn = sum(kind.gates * h * ((e if i == 0 else h) + h + biases) for i in range(n))
    decoder = (0 if config.tie_weights else v * h) + v
    return v * e + rnn + decoder


def default_limits(cfg: TrainConfig) -> bool:
    """Whether the run was given no limit (then it trains DEFAULT_EPOCHS epochs, at most
    about DEFAULT_SECONDS here: see ``default_max_steps``)."""
    return cfg.epochs is None and cfg.max_steps is None and cfg.time_budget is None


def planned_tokens(cfg: TrainConfig, train_tokens: int, tokens_per_sec: float) -> float:
    """Training tokens the limits of ``cfg`` allow at ``tokens_per_sec``; with no limits,
    DEFAULT_EPOCHS epochs or DEFAULT_SECONDS, whichever is fewer tokens."""
    window = cfg.batch_size * cfg.bptt
    limits = []
    if cfg.max_steps:
        limits.append(cfg.max_steps * window)
    epochs = cfg.effective_epochs
    if epochs:
        limits.append(epochs * train_tokens)
    budget = DEFAULT_SECONDS if default_limits(cfg) else cfg.time_budget
    if budget:
        # A tenth of the training time goes to validations and saves, roughly.
        limits.append(max(budget - SETUP_SECONDS, 0.0) * 0.9 * tokens_per_sec)
    return min(limits) if limits else math.inf


def default_max_steps(cfg: TrainConfig, choice: "SizeChoice", train_tokens: int) -> TrainConfig:
    """A run given no limit: DEFAULT_EPOCHS epochs, or fewer steps when those would take
    longer than about DEFAULT_SECONDS at the measured speed. The step count is fixed here,
    from the (cached) measurement, so the run itself stays reproducible step for step."""
    if not default_limits(cfg):
        return cfg
    streams = train_tokens // cfg.batch_size
    epoch_steps = math.ceil(DEFAULT_EPOCHS * math.ceil(max(streams - 1, 1) / cfg.bptt))
    timed_steps = max(1, math.floor(choice.planned_tokens / (cfg.batch_size * cfg.bptt)))
    if timed_steps >= epoch_steps:
        return cfg  # the default epochs come first
    return dataclasses.replace(cfg, epochs=DEFAULT_EPOCHS, max_steps=timed_steps)


def _key(c: ModelConfig) -> str:
    return f"{c.layers}x{c.hidden_size}"


def choose_size(base: ModelConfig, cfg: TrainConfig, train_tokens: int, measure: Measure,
                batch_sizes: tuple[int, ...] = BATCH_SIZES) -> SizeChoice:
    """The hidden size and batch size for a run of ``cfg`` over ``train_tokens`` tokens.

    ``base`` carries everything but the hidden size (cell, layers, embedding, vocabulary;
    with tied weights the embedding follows the hidden size). A size fits when, at one of
    ``batch_sizes`` (tried largest first; give one to keep it), the run makes enough steps
    and trains on at least TOKENS_PER_PARAM tokens per parameter. Enough steps is
    MIN_STEPS, or as many as the smallest size gets when the limits allow no more (an
    epoch or step limit fixes the steps whatever the size; a short budget gives even the
    smallest size fewer). The largest size that fits wins; when none does, the smallest,
    at the batch that gives it the most steps. Sizes are measured from the smallest up and
    the search stops at the first that does not fit, so at most one size beyond the chosen
    one is ever timed.
    """
    speeds: dict[str, float] = {}

    def plan(candidate: ModelConfig, batch: int) -> tuple[int, float, float, float]:
        """(batch, speed, tokens, steps) of ``candidate`` at ``batch``, measured once."""
        key = f"{_key(candidate)} batch {batch}"
        if key not in speeds:
            speeds[key] = measure(candidate, batch)
        run = dataclasses.replace(cfg, batch_size=batch)
        tokens = planned_tokens(run, train_tokens, speeds[key])
        return batch, speeds[key], tokens, tokens / (batch * cfg.bptt)

    def config(hidden: int) -> ModelConfig:
        return dataclasses.replace(base, hidden_size=hidden,
                                   embedding_dim=hidden if base.tie_weights else base.embedding_dim)

    smallest = config(HIDDEN_SIZES[0])
    first = [plan(smallest, b) for b in batch_sizes]
    # The most steps of the smallest size, where a smaller batch adds steps (ties: the larger batch).
    most = first[0]
    for p in first[1:]:
        if p[3] > most[3] * 1.01:
            most = p
    need = min(MIN_STEPS, most[3]) * 0.999
    chosen: tuple[ModelConfig, tuple[int, float, float, float]] | None = None
    stopped = ""
    for hidden in HIDDEN_SIZES:
        candidate = config(hidden)
        params = params_of(candidate)
        if chosen is not None and params > PARAMS_PER_CORPUS_TOKEN * train_tokens:
            stopped = f"{_key(candidate)} would have {params / train_tokens:.1f} parameters per corpus token"
            break
        fit, why = None, ""
        for batch in batch_sizes:
            p = plan(candidate, batch)
            if p[3] < need:
                why = f"{p[3]:,.0f} steps at batch {batch}"
            elif p[2] < TOKENS_PER_PARAM * params:
                why = f"{p[2] / params:.1f} training tokens per parameter"
            else:
                fit = p
                break
        if fit is None:
            if chosen is None:
                chosen = (candidate, most)
                stopped = f"too short for any size: {why}"
            else:
                stopped = f"{_key(candidate)}: {why}"
            break
        chosen = (candidate, fit)
    assert chosen is not None
    candidate, (batch, speed, tokens, steps) = chosen
    if default_limits(cfg):
        over = f"{DEFAULT_EPOCHS:g} epochs or about {DEFAULT_SECONDS / 60:g} min"
    elif cfg.time_budget:
        over = f"{cfg.time_budget:g} s"
    else:
        over = "the run's limits"
    reason = (f"{_key(candidate)} at batch {batch} chosen for {over} on this machine: {speed:,.0f} tokens/s, "
              f"{steps:,.0f} steps, {tokens / params_of(candidate):.1f} training tokens per parameter")
    reason += f" ({stopped})" if stopped else " (the largest size)"
    return SizeChoice(candidate.hidden_size, speed, tokens, reason, speeds, batch_size=batch)


# --------------------------------------------------------------------------- measuring


def machine_name(device: torch.device) -> str:
    """What the speed cache is keyed by: the processor (or GPU) and the thread count."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{cpu_name()}:{os.cpu_count()} cores:{torch.get_num_threads()} threads"


def _cache_path() -> Path:
    return cache_root() / "speed.json"


class SpeedCache:
    """Measured training speeds of this machine, one JSON file; never required to exist.

    A missing, unreadable or foreign file is an empty cache; a failed write is ignored
    (the measurement is then simply repeated next time)."""

    def __init__(self, path: Path | None = None):
        self.path = path or _cache_path()
        self.entries: dict[str, float] = {}
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError, KeyError):
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") == CACHE_VERSION:
                self.entries = {str(k): float(v) for k, v in data["speeds"].items()}

    def get(self, key: str) -> float | None:
        return self.entries.get(key)

    def put(self, key: str, value: float) -> None:
        self.entries[key] = value
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".speed-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump({"version": CACHE_VERSION, "speeds": self.entries}, f, indent=0, sort_keys=True)
                os.replace(tmp, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise


def time_training_step(config: ModelConfig, ids: torch.Tensor, batch_size: int, bptt: int, device: torch.device,
                       dtype: torch.dtype | None, steps: int = TIMING_STEPS) -> float:
    """Training tokens per second of ``config``: forward, backward, clipping and a fused
    AdamW step on (batch_size, bptt) windows of ``ids``, after one warm-up step. (Windows
    of a quarter of the length, tried first, gave 13% lower speeds than training then
    reached with batch 8: the fixed cost of a step weighs more in a short window.)

    The global random state is left as it was, so a seeded run that follows is unchanged."""
    n = batch_size * (bptt + 1)
    if ids.numel() < n:
        ids = ids.repeat(n // max(ids.numel(), 1) + 1)
    window = ids[:n].to(device=device, dtype=torch.long).view(batch_size, bptt + 1)
    x, y = window[:, :-1], window[:, 1:]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model = RNNLanguageModel(config).to(device).train()
        opt, _ = make_optimizer(model, TrainConfig(), [model.embedding.weight])  # the trainer's AdamW (fused where it can be)
        t = 0.0
        for i in range(steps + 1):
            if i == 1:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t = time.perf_counter()
            with autocast(device, dtype):
                logits, _ = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t
    return steps * batch_size * bptt / max(seconds, 1e-9)


def speed_meter(ids: torch.Tensor, bptt: int, device: torch.device, dtype: torch.dtype | None,
                cache: SpeedCache | None = None, processes: int = 1,
                steps: int = TIMING_STEPS) -> tuple[Measure, Callable[[], bool]]:
    """A ``Measure`` for ``choose_size`` that reads and fills the speed cache, and a
    function that says whether every speed it gave came from the cache.

    With several ``processes`` each trains batch / processes streams: one process's share
    is timed and the run's speed counted as ``processes`` times it."""
    cache = cache if cache is not None else SpeedCache()
    machine = f"{machine_name(device)}|torch {torch.__version__}|{str(dtype).replace('torch.', '') if dtype else 'fp32'}"
    fresh = []

    def measure(config: ModelConfig, batch_size: int) -> float:
        local = max(batch_size // processes, 1)
        key = (f"{machine}|{config.cell} {config.layers}x{config.hidden_size} emb {config.embedding_dim} "
               f"vocab {config.vocab_size}{' tied' if config.tie_weights else ''}|batch {local} bptt {bptt}")
        found = cache.get(key)
        if found is None:
            fresh.append(key)
            found = time_training_step(config, ids, local, bptt, device, dtype, steps)
            cache.put(key, found)
        return found * processes

    return measure, lambda: not fresh


def measured_choice(config: ModelConfig, cfg: TrainConfig, ids: torch.Tensor, device: torch.device,
                    dtype: torch.dtype | None, auto: bool,
                    cache: SpeedCache | None = None, processes: int = 1,
                    batch_given: bool = False) -> SizeChoice:
    """Choose the hidden size and batch (``auto``) or only measure the given ones, through
    the cache. ``batch_given``: keep ``cfg.batch_size``."""
    # A given size is timed only for the start line's prediction: one step will do (a
    # large model's steps can take seconds each on a CPU).
    measure, all_cached = speed_meter(ids, cfg.bptt, device, dtype, cache, processes, TIMING_STEPS if auto else 1)
    batches = (cfg.batch_size,) if batch_given else tuple(b for b in BATCH_SIZES if b % processes == 0) or (
        cfg.batch_size,)
    if auto:
        choice = choose_size(config, cfg, ids.numel(), measure, batches)
    else:
        speed = measure(config, cfg.batch_size)
        choice = SizeChoice(config.hidden_size, speed, planned_tokens(cfg, ids.numel(), speed),
                            "given", {f"{_key(config)} batch {cfg.batch_size}": speed}, auto=False,
                            batch_size=cfg.batch_size)
    return dataclasses.replace(choice, cached=all_cached())


def run_seconds(tokens_per_sec: float, steps: int, cfg: TrainConfig, val_tokens: int) -> float:
    """How long ``steps`` training steps of ``cfg`` should take at ``tokens_per_sec``, with
    their validations (a forward pass costs about a third of a training step per token)."""
    speed = max(tokens_per_sec, 1e-9)
    evals = steps // cfg.eval_interval + 1
    return steps * cfg.batch_size * cfg.bptt / speed + evals * val_tokens / (3 * speed)
