"""How far back a loss reaches: the norm of dL_T/dh_t against the distance T - t, the
fitted decay per step, and the gradient norms of a short training run with and without
clipping. Numbers and arrays only; the command layer draws them.

The picture (Bengio et al. 1994, Pascanu et al. 2013): one loss L_T at the last position T
of a window, and its gradient with respect to each earlier hidden state h_t (the top
layer's h; for an LSTM h, not c, so the three cells are measured at the same place)::

    warm-up (no graph)      the T positions of the window, one step at a time
    x_-W ... x_-1  ->  h_1 -> h_2 -> ... -> h_T -> readout -> L_T
                         ^      ^             ^
                   ||dL_T/dh_1||  ...   ||dL_T/dh_T||     distance T - t = T-1 ... 0

Each h_t is the tensor the next step reads, so the gradient autograd gives for it is the
total derivative through every later step. One backward pass gives all T of them.
A batch of N windows is one sum of N losses; rows never mix, so row i's gradient is that
of its own loss. The profile is the mean (and the median) over the N rows of ||dL_T/dh_t||
per distance.

The decay per step is exp(slope) of a least-squares line through log(norm) against the
distance, over distances 1 .. D: distance 0 is the readout alone (no recurrent step), and
D is the last distance before the mean norm falls below ``FLOOR`` (float32 gradients of
a tanh RNN underflow to denormals and zeros; below that the numbers are not the Jacobian
product any more).
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError, CorpusError
from ..models.cells import CELLS, State, cell_kind, detach_state, make_rnn, step_layers
from ..models.lm import RNNLanguageModel
from ..text.streams import StreamBatches

FLOOR = 1e-30  # mean norms below this are underflow, not signal: the fit stops before them
# Distances shown in tables (those below the window length, and the farthest one).
TABLE_DISTANCES = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class DecayFit:
    """norm(d) ~ scale * per_step ** d over distances ``first`` .. ``last`` (``points`` of
    them); per_step and scale are NaN when fewer than two distances are above the floor."""

    per_step: float
    scale: float
    first: int
    last: int
    points: int

    @property
    def steps_per_decade(self) -> float:
        """Steps for the norm to fall tenfold (inf when it does not fall)."""
        if not 0 < self.per_step < 1:
            return math.inf if self.per_step >= 1 else math.nan
        return -1.0 / math.log10(self.per_step)


def fit_decay(norms: Sequence[float], first: int = 1, floor: float = FLOOR) -> DecayFit:
    """Least-squares fit of log(norms[d]) = a + d * log(per_step) over d = first .. D, where
    D is the last distance before a norm falls below ``floor`` (or is not finite)."""
    last = first - 1
    for d in range(first, len(norms)):
        if not (math.isfinite(norms[d]) and norms[d] >= floor):
            break
        last = d
    n = last - first + 1
    if n < 2:
        return DecayFit(math.nan, math.nan, first, last, max(n, 0))
    xs = list(range(first, last + 1))
    ys = [math.log(norms[d]) for d in xs]
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return DecayFit(math.exp(slope), math.exp(my - slope * mx), first, last, n)


@dataclass(frozen=True)
class GradientProfile:
    """The mean (and the median) of ||dL_T/dh_{T-d}|| over ``sequences`` windows, for
    d = 0 .. length-1, each with its fitted decay. The mean is what a batch's gradient
    adds up; over many orders of magnitude a few windows dominate it, so the median says
    what a typical window sees."""

    label: str  # "rnn" for fresh cells, the checkpoint's name otherwise
    cell: str
    hidden_size: int
    layers: int
    length: int
    sequences: int
    warmup: int
    loss: float  # the mean of L_T over the windows (nats)
    norms: list[float]  # the mean; index d: distance T - t
    medians: list[float]  # the median over the windows (torch.median: the lower middle one of an even count)
    fit: DecayFit = field(init=False)
    median_fit: DecayFit = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fit", fit_decay(self.norms))
        object.__setattr__(self, "median_fit", fit_decay(self.medians))

    def at(self, distances: Sequence[int] = TABLE_DISTANCES) -> list[tuple[int, float]]:
        """(distance, mean norm) at ``distances`` below the length, and at the farthest one."""
        ds = [d for d in distances if d < self.length]
        if self.length - 1 not in ds:
            ds.append(self.length - 1)
        return [(d, self.norms[d]) for d in ds]

    def as_dict(self) -> dict:
        out = asdict(self)
        for name in ("fit", "median_fit"):
            fit = getattr(self, name)
            out[name] = {**asdict(fit), "steps_per_decade": fit.steps_per_decade}
        return out


def zero_state(rnn: nn.RNNBase, cell: str, rows: int) -> State:
    w = next(rnn.parameters())
    h = torch.zeros(rnn.num_layers, rows, rnn.hidden_size, dtype=w.dtype, device=w.device)
    return cell_kind(cell).initial(h)


def hidden_gradient_norms(rnn: nn.RNNBase, cell: str, inputs: torch.Tensor,
                          loss_of_last: Callable[[torch.Tensor], torch.Tensor],
                          state: State | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``rnn`` (an nn.LSTM/GRU/RNN from ``make_rnn``, batch first, one direction) one
    step at a time over inputs (N, T, I) from ``state`` (zeros when None), and return
    ||dL/dh_t|| (N, T) for the top layer's h_t, t = 0 .. T-1, with the per-row losses (N,).

    ``loss_of_last`` maps the last hidden state h_{T-1} (N, H) to per-row losses (N,);
    their sum is differentiated, which gives each row the gradient of its own loss."""
    if rnn.bidirectional or not rnn.batch_first:
        raise ConfigError("the gradient picture needs a one-directional, batch-first nn.LSTM/GRU/RNN")
    n, t_len, _ = inputs.shape
    inputs = inputs.detach().requires_grad_(True)  # the h_t need a graph even with frozen weights
    state = zero_state(rnn, cell, n) if state is None else state
    hs = []
    parallel = cell_kind(cell).parallel
    with torch.enable_grad():
        for t in range(t_len):
            if parallel:
                # A scan cell's recurrent state is its cell's h, not the block's output (which
                # no later step reads): measure the top layer's h, read out the output.
                out, state = rnn.step_layers(inputs[:, t], state)  # state: the tensors the next step reads
                hs.append(state[-1])
            else:
                out, state = step_layers(rnn, cell, inputs[:, t], state, 0.0, False)  # out (N, H)
                hs.append(out)
        losses = loss_of_last(out)  # (N,)
        grads = torch.autograd.grad(losses.sum(), hs)
    # The norm in float64: squaring float32 entries under ~1e-19 underflows, which would
    # cut the picture off near 1e-22 although the gradient itself lives down to ~1e-38.
    norms = torch.stack([g.double().norm(dim=1) for g in grads], dim=1)  # (N, T)
    return norms, losses.detach()


def _profile(label: str, rnn: nn.RNNBase, cell: str, inputs: torch.Tensor, warmup: int,
             loss_of_last: Callable[[torch.Tensor], torch.Tensor]) -> GradientProfile:
    """Warm the state up on the first ``warmup`` positions of inputs (N, W+T, I) without a
    graph, then measure the last T."""
    state = None
    if warmup:
        with torch.no_grad():
            _, state = rnn(inputs[:, :warmup])
    norms, losses = hidden_gradient_norms(rnn, cell, inputs[:, warmup:], loss_of_last, state)
    by_distance = norms.flip(1)  # (N, T), index d = T-1-t
    return GradientProfile(label, cell, rnn.hidden_size, rnn.num_layers, inputs.shape[1] - warmup,
                           inputs.shape[0], warmup, float(losses.double().mean()), by_distance.mean(dim=0).tolist(),
                           by_distance.median(dim=0).values.tolist())


def windows(ids: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` windows (count, size) of 1-D ``ids`` at random starts."""
    if ids.numel() < size:
        raise CorpusError(f"the text has {ids.numel():,} tokens; a window of {size:,} (warm-up, positions and "
                          f"the target) needs at least that many: measure a shorter length or use a longer text")
    starts = torch.randint(0, ids.numel() - size + 1, (count,), generator=generator)
    return torch.stack([ids[s : s + size] for s in starts.tolist()]).long()


def lm_profile(model: RNNLanguageModel, ids: torch.Tensor, length: int, sequences: int = 64, warmup: int = 100,
               seed: int = 0, label: str = "") -> GradientProfile:
    """The profile of a trained language model on its own kind of text: ``sequences``
    windows of ``ids`` at random starts (``seed``); L_T is the cross-entropy of the token
    after position T under the model's own output layer. Dropout is off (eval mode)."""
    cell = model.config.cell
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    win = windows(ids, sequences, warmup + length + 1, gen).to(model.decoder.weight.device)
    target = win[:, -1]

    def loss_of_last(h: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model.decoder(h).float(), target, reduction="none")

    return _profile(label or cell, model.rnn, cell, model.embedding(win[:, :-1]), warmup, loss_of_last)


def fresh_profile(cell: str, hidden_size: int = 128, layers: int = 1, length: int = 200, sequences: int = 64,
                  warmup: int = 100, seed: int = 0, ids: torch.Tensor | None = None, vocab_size: int = 64,
                  embedding_dim: int = 64) -> GradientProfile:
    """The profile of a freshly initialised cell (torch's default initialisation, after
    ``torch.manual_seed(seed)``): inputs are random tokens from ``vocab_size`` (or windows
    of ``ids`` with their vocabulary) through a random nn.Embedding (N(0, 1) entries of
    ``embedding_dim``); L_T is the cross-entropy of a fixed random readout nn.Linear(H, V)
    of h_T against a random target token (the next token of the text with ``ids``)."""
    if cell not in CELLS:
        raise ConfigError(f"unknown cell {cell!r}: use one of {', '.join(CELLS)}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if ids is not None:
        vocab_size = int(ids.max()) + 1
        win = windows(ids, sequences, warmup + length + 1, gen)
    else:
        win = torch.randint(0, vocab_size, (sequences, warmup + length + 1), generator=gen)
    embedding = nn.Embedding(vocab_size, embedding_dim)
    rnn = make_rnn(cell, embedding_dim, hidden_size, layers, 0.0)
    readout = nn.Linear(hidden_size, vocab_size)
    target = win[:, -1]

    def loss_of_last(h: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(readout(h), target, reduction="none")

    with torch.no_grad():
        inputs = embedding(win[:, :-1])
    return _profile(cell, rnn, cell, inputs, warmup, loss_of_last)


# ---------------------------------------------------------------- clipping


@dataclass
class ClipRun:
    """One short training run: the total gradient norm before clipping and the loss at
    each step. ``clip`` None: not clipped. ``diverged_at``: the step whose loss or norm was
    not finite (the run stopped there)."""

    clip: float | None
    norms: list[float]
    losses: list[float]
    diverged_at: int | None = None

    def summary(self, threshold: float) -> dict:
        """Max and median norm, steps whose norm exceeded ``threshold``, the final loss (the
        mean of the last 10 finite losses) and the lowest loss."""
        finite = [x for x in self.norms if math.isfinite(x)]
        losses = [x for x in self.losses if math.isfinite(x)]
        return {
            "clip": self.clip, "steps": len(self.norms),
            "max_norm": max(finite) if finite else math.nan,
            "median_norm": statistics.median(finite) if finite else math.nan,
            "above_threshold": sum(x > threshold for x in self.norms),
            "final_loss": statistics.fmean(losses[-10:]) if losses else math.nan,
            "min_loss": min(losses) if losses else math.nan,
            "diverged_at": self.diverged_at,
        }


def record_training(model: RNNLanguageModel, batches: StreamBatches, steps: int, lr: float,
                    clip: float | None, optimizer: str = "sgd") -> ClipRun:
    """Train ``model`` for ``steps`` windows of ``batches`` (truncated BPTT: the state is
    carried across windows and detached), recording each step's total gradient norm
    before clipping (what ``clip_grad_norm_`` returns) and loss. ``clip`` None leaves the
    gradient as it is. Stops at the first non-finite loss or norm."""
    if optimizer not in ("sgd", "adam"):
        raise ConfigError(f"unknown optimizer {optimizer!r}: use sgd or adam")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else torch.optim.Adam(params, lr=lr)
    device = next(model.parameters()).device
    run = ClipRun(clip, [], [])
    model.train()
    state = None
    for step in range(steps):
        x, y, starts = batches.next()
        x, y = x.to(device).long(), y.to(device).long()
        if starts:
            state = None
        logits, state = model(x, state)
        state = detach_state(state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, math.inf if clip is None else clip)
        run.norms.append(float(norm))
        run.losses.append(float(loss.detach()))
        if not (math.isfinite(run.norms[-1]) and math.isfinite(run.losses[-1])):
            run.diverged_at = step
            break
        opt.step()
    return run


def clipping_runs(ids: torch.Tensor, vocab_size: int, cell: str = "rnn", hidden_size: int = 128, layers: int = 1,
                  embedding_dim: int = 64, steps: int = 200, batch_size: int = 32, bptt: int = 100,
                  lr: float = 1.0, clip: float = 1.0, optimizer: str = "sgd", seed: int = 0) -> list[ClipRun]:
    """Two runs of a fresh language model on ``ids`` from the same initialisation and the
    same windows (``seed``): clipped to ``clip``, then not clipped."""
    if cell not in CELLS:
        raise ConfigError(f"unknown cell {cell!r}: use one of {', '.join(CELLS)}")
    if clip <= 0:
        raise ConfigError(f"the clipping threshold must be > 0, not {clip}")
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=vocab_size, cell=cell, layers=layers, hidden_size=hidden_size,
                         embedding_dim=embedding_dim, dropout=0.0)
    start = RNNLanguageModel(config)
    runs = []
    for c in (clip, None):
        torch.manual_seed(seed)
        runs.append(record_training(copy.deepcopy(start), StreamBatches.build(ids, batch_size, bptt), steps, lr, c,
                                    optimizer))
    return runs
