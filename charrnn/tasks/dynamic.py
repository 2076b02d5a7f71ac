"""Dynamic evaluation (Krause et al. 2018): the model keeps learning from the text it scores.

The text is read in segments of ``segment`` tokens with the recurrent state carried
through. Each segment is scored first, with the weights as they are; then one gradient
step on that segment's loss moves the weights, and a decay pulls them back towards the
trained ones, so the model adapts to the recent text without drifting away:

    score(segment i; theta_i)                    never looks past segment i
    g   = grad of segment i's mean loss at theta_i
    theta_{i+1} = theta_i - lr * u(g) + decay * (theta_0 - theta_i)

``u`` is the plain gradient ("sgd") or the gradient divided by the root of its running
mean square ("rms", RMSprop's normalisation, estimated from the segments already scored:
the paper's RMS rule takes it from the training data, which an evaluation does not have).
A token is therefore scored by weights that have seen only the tokens before its segment:
what follows it never changes its loss.

With several streams each stream adapts its own copy from the trained weights, one after
another (warmed up, and adapting, on the ``warmup`` tokens before its part); that keeps
the static layout's split but buys no speed: dynamic evaluation is a batch-1 computation.
The model is left exactly as it was found.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.cells import State, detach_state
from ..models.lm import RNNLanguageModel
from .perplexity import IGNORE, EvalResult

RULES = ("rms", "sgd")


@dataclass(frozen=True)
class DynamicConfig:
    """Settings of dynamic evaluation (defaults measured: benchmarks/RESULTS.md "Dynamic evaluation")."""

    lr: float = 5e-4
    decay: float = 0.001
    segment: int = 50  # tokens scored between two updates
    rule: str = "rms"
    rms_beta: float = 0.99  # how fast the running mean square of the gradients forgets
    eps: float = 1e-8

    def __post_init__(self) -> None:
        from ..config import check

        check(math.isfinite(self.lr) and self.lr >= 0, f"dynamic lr must be >= 0, not {self.lr}")
        check(0.0 <= self.decay < 1.0, f"dynamic decay must be in [0, 1), not {self.decay}")
        check(self.segment >= 1, f"dynamic segment must be >= 1 token, not {self.segment}")
        check(self.rule in RULES, f"dynamic rule must be one of {', '.join(RULES)}, not {self.rule!r}")
        check(0.0 < self.rms_beta < 1.0, f"rms_beta must be in (0, 1), not {self.rms_beta}")


class _Adapter:
    """The update rule over the model's parameters, from the trained weights ``theta_0``."""

    def __init__(self, params: list[torch.nn.Parameter], cfg: DynamicConfig):
        self.params, self.cfg = params, cfg
        self.prior = [p.detach().clone() for p in params]
        self.ms = [torch.zeros_like(p) for p in params] if cfg.rule == "rms" else None
        self.steps = 0

    @torch.no_grad()
    def update(self) -> None:
        cfg = self.cfg
        self.steps += 1
        for i, (p, p0) in enumerate(zip(self.params, self.prior)):
            if cfg.decay:  # towards theta_0 from theta_i, before the gradient step
                p.add_(p0 - p, alpha=cfg.decay)
            g = p.grad
            if g is not None:
                if self.ms is not None:
                    ms = self.ms[i].mul_(cfg.rms_beta).addcmul_(g, g, value=1 - cfg.rms_beta)
                    scale = 1 - cfg.rms_beta ** self.steps  # bias correction, as Adam's
                    g = g / (ms / scale).sqrt_().add_(cfg.eps)
                p.sub_(g, alpha=cfg.lr)
            p.grad = None

    @torch.no_grad()
    def restore(self) -> None:
        for p, p0 in zip(self.params, self.prior):
            p.copy_(p0)
            p.grad = None


def _run(model: RNNLanguageModel, inputs: torch.Tensor, targets: torch.Tensor, cfg: DynamicConfig,
         on_segment: Callable[[int], None]) -> torch.Tensor:
    """Score ``targets`` (1-D, IGNORE where not scored) adapting as it goes, starting from
    the trained weights and leaving them as found; each position's loss (nats, 0 where not
    scored)."""
    params = [p for p in model.parameters() if p.requires_grad]
    adapter = _Adapter(params, cfg)
    losses = []
    state: State | None = None
    try:
        for t in range(0, inputs.numel(), cfg.segment):
            x = inputs[t : t + cfg.segment].view(1, -1)
            y = targets[t : t + cfg.segment]
            logits, new_state = model(x, state)
            nll = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y, ignore_index=IGNORE, reduction="none")
            losses.append(nll.detach())
            scored = int((y != IGNORE).sum())
            if scored and cfg.lr:
                (nll.sum() / scored).backward()
            adapter.update()  # no gradient (nothing scored): the decay alone
            state = detach_state(new_state)
            on_segment(x.shape[1])
    finally:
        adapter.restore()
    return torch.cat(losses)


def dynamic_evaluate(
    model: RNNLanguageModel,
    ids: torch.Tensor,
    cfg: DynamicConfig = DynamicConfig(),
    *,
    unk_id: int | None = None,
    chars: int | None = None,
    streams: int = 1,
    warmup: int = 256,
    per_token: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult | tuple[EvalResult, torch.Tensor]:
    """Score ``ids`` (1-D) as ``tasks.perplexity.evaluate`` does, adapting the weights to the
    text already scored; with ``per_token`` also each target's loss (nats, 0 where not scored).
    ``progress(done, total)`` is called after each segment (tokens read, of all to read)."""
    device = next(model.parameters()).device
    if ids.numel() < 2:
        empty = EvalResult(0.0, 0, 0, 0)
        return (empty, torch.zeros(0)) if per_token else empty
    inputs, targets = ids[:-1].long().to(device), ids[1:].long().to(device).clone()
    if unk_id is not None:
        targets[targets == unk_id] = IGNORE
    unknown = int((targets == IGNORE).sum())
    m = inputs.numel()
    if streams <= 1 or m < 2 * streams * max(warmup, 1):
        parts = [(0, 0, m)]  # (start read, start scored, end)
    else:
        per = math.ceil((m - warmup) / streams)
        parts = [(0, 0, per + warmup)] + [(i * per, i * per + warmup, min(i * per + per + warmup, m))
                                          for i in range(1, streams)]
    was_training = model.training
    model.eval()  # no dropout; on CUDA cuDNN's RNN backward needs train mode, so use the native kernels
    cudnn_off = torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else contextlib.nullcontext()
    losses = []
    total, done = sum(end - read for read, _, end in parts), 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    try:
        with torch.enable_grad(), cudnn_off:
            for read, scored, end in parts:
                # The warm-up positions (read, scored) come before the part: the stream reads
                # and learns from them, but their scores belong to the previous stream.
                losses.append(_run(model, inputs[read:end], targets[read:end], cfg, advance)[scored - read :])
    finally:
        model.train(was_training)
    nll = torch.cat(losses)
    total = float(nll.double().sum())
    tokens = m - unknown
    result = EvalResult(total, tokens, tokens if chars is None else chars, unknown)
    return (result, nll.cpu()) if per_token else result

