"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): recurrent cells whose
gates read the input alone, so that a whole window trains in parallel.

One layer's cell, for an input u_t (the block's normalised input, H wide):

    minGRU   z_t = sigmoid(W_z u_t + b_z),   h~_t = g(W_h u_t + b_h)
             h_t = (1 - z_t) * h_{t-1} + z_t * h~_t
    minLSTM  f_t = sigmoid(W_f u_t + b_f),   i_t = sigmoid(W_i u_t + b_i),   h~_t = g(W_h u_t + b_h)
             h_t = f_t / (f_t + i_t) * h_{t-1} + i_t / (f_t + i_t) * h~_t

with g(x) = x + 1/2 for x >= 0 and sigmoid(x) below (positive, so its logarithm exists).
The only sequential part is the linear recurrence h_t = a_t * h_{t-1} + b_t, elementwise:
``scan`` computes all of a window's h_t at once in log space (Heinsen 2023),

    h_t = exp(A_t) * h_0 + exp(A_t + logcumsumexp_{s<=t}(log b_s - A_s)),   A_t = sum_{s<=t} log a_s,

where the products of every layer are then (N*T, H) matrix products, as in a Transformer.
Decoding runs the same recurrence one step at a time (``ScanStack.step``): no scan, and no
recurrent matrix at all.

The block (charrnn's, one per layer; pre-norm residual, as the paper's language model
stacks its cells with normalisation, residual connections and a feed-forward layer):

    x -> x + drop(cell(LayerNorm(x)))  -> x + drop(W_2 GELU(W_1 LayerNorm(x)))      (W_1: H -> 4H)

A first projection E -> H when the input is not H wide, and a LayerNorm over the top
layer's output. The carried state is each layer's cell h (L, N, H), exactly what the
recurrence needs: a window run in two halves with the state carried equals it run whole.
The scan runs in float32 under autocast (bf16 products, fp32 recurrence).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FFN_MULT = 4  # the feed-forward layer's width, in hidden sizes


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x): log(x + 1/2) for x >= 0, log sigmoid(x) below."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def _wide(x: torch.Tensor) -> torch.Tensor:
    """x in float32 at least (bf16 products are widened; float64 stays, for gradcheck)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def coefficients(variant: str, gates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence's (log a, log b) from a layer's gate pre-activations (..., G*H)."""
    if variant == "gru":
        k, pre = _wide(gates).chunk(2, dim=-1)
        return -F.softplus(k), -F.softplus(-k) + log_g(pre)  # log(1 - z), log z + log g(h~)
    f, i, pre = _wide(gates).chunk(3, dim=-1)
    log_f, log_i = -F.softplus(-f), -F.softplus(-i)
    # log(f + i), written out (ONNX has no logaddexp); the log's argument is in [1, 2]
    total = torch.maximum(log_f, log_i) + torch.log(1.0 + torch.exp(-(log_f - log_i).abs()))
    return log_f - total, log_i - total + log_g(pre)


def _mixing(variant: str, gates: torch.Tensor):
    """The step's weights from the gate pre-activations (..., G*H): (a, c, pre, parts) for
    h' = a * h + c * g(pre); ``parts`` is (f, i, f + i) for minLSTM (its gradient needs
    them), None for minGRU (a = 1 - z, c = z)."""
    if variant == "gru":
        k, pre = _wide(gates).chunk(2, dim=-1)
        return torch.sigmoid(-k), torch.sigmoid(k), pre, None
    f, i, pre = _wide(gates).chunk(3, dim=-1)
    f, i = torch.sigmoid(f), torch.sigmoid(i)
    total = f + i
    return f / total, i / total, pre, (f, i, total)


def _g(pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g(pre) and sigmoid(pre)."""
    s = torch.sigmoid(pre)
    return torch.where(pre >= 0, pre + 0.5, s), s


def linear_coefficients(variant: str, gates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) themselves: exp(``coefficients``) in fewer operations (a CPU's window, and
    every decoding step)."""
    a, c, pre, _ = _mixing(variant, gates)
    return a, c * _g(pre)[0]


def scan(variant: str, gates: torch.Tensor, h0: torch.Tensor | None, method: str = "auto") -> torch.Tensor:
    """One layer's cell over a window: gates (N, T, G*H), the pre-activations, and h0 (N, H)
    of any sign, or None for zeros -> h (N, T, H), float32, of h_t = a_t * h_{t-1} + b_t.

    ``method``: "log" is the parallel scan in log space (Heinsen 2023; ``log_scan``), what
    a GPU runs; "loop" walks the time steps with one fused multiply-add over all N x H
    units each, forwards and (for the gradient) backwards (``MinScan``), what a CPU
    runs: measured on a 2-core Xeon for a 16 x 128 x 256 window, forward and backward,
    48 ms through torch's logcumsumexp against 3 ms for the walk, which needs no
    logarithms (a <= 1: nothing grows). "pairwise" is what the exported graph computes
    (ONNX has no logcumsumexp). All agree to float32 rounding (tests)."""
    if method == "auto":
        method = "pairwise" if torch.onnx.is_in_onnx_export() else "loop" if gates.device.type == "cpu" else "log"
    if method == "loop":
        h0 = gates.new_zeros(gates.shape[0], gates.shape[2] // (2 if variant == "gru" else 3), dtype=torch.float32) \
            if h0 is None else h0.float()
        return MinScan.apply(gates, h0, variant == "lstm")
    log_a, log_b = coefficients(variant, gates)
    if method == "pairwise":
        return _pairwise(log_a.cumsum(1), log_b, h0)
    if method != "log":
        raise ValueError(f"unknown scan method {method!r}")
    return log_scan(log_a, log_b, h0)


def log_scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t in log space, every step at once, from log_a, log_b (N, T, H):
    h_t = exp(A_t) h0 + exp(A_t + logcumsumexp_{s<=t}(log b_s - A_s)),  A_t = sum_{s<=t} log a_s."""
    a_star = log_a.cumsum(1)  # (N, T, H): log of a_1 * ... * a_t
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))
    if h0 is not None:
        h = h + torch.exp(a_star) * h0.float().unsqueeze(1)
    return h


def _pairwise(a_star: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """h_t = sum_{s<=t} exp(A_t - A_s) b_s (+ exp(A_t) h0): every weight is at most one, so
    it is as stable as ``log_scan``, in T^2 time and memory; what the exported graph computes."""
    t = torch.arange(a_star.shape[1], device=a_star.device)
    later = (t.unsqueeze(1) >= t.unsqueeze(0)).unsqueeze(0).unsqueeze(-1)  # (1, T, T, 1): s <= t
    gaps = a_star.unsqueeze(2) - a_star.unsqueeze(1)  # (N, T, T, H): A_t - A_s
    zeros = torch.zeros_like(gaps)
    weights = torch.where(later, torch.exp(torch.where(later, gaps, zeros)), zeros)
    h = (weights * torch.exp(log_b).unsqueeze(1)).sum(2)
    if h0 is not None:
        h = h + torch.exp(a_star) * h0.float().unsqueeze(1)
    return h


def _walk(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """out_t = a_t * out_{t-1} + b_t from out_{-1} = h (from the end, when ``reverse``)."""
    out = torch.empty_like(b)
    for t in range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1]):
        h = torch.addcmul(b[:, t], a[:, t], h, out=out[:, t])
    return out


class MinScan(torch.autograd.Function):
    """A min-cell over a window from its gate pre-activations, gates (N, T, G*H) and h0
    (N, H) -> h (N, T, H), float32: the coefficients, the walk forwards, and the gradient
    written out (no autograd graph for the elementwise arithmetic: on a CPU its extra
    passes over the window cost more than the walk). The recurrence's gradient is the same
    walk run backwards:  d_t = g_t + a_{t+1} d_{t+1};  dL/db_t = d_t,  dL/da_t = d_t h_{t-1},
    dL/dh0 = a_1 d_1;  then through a, b to the gates (chain rule, by hand below)."""

    @staticmethod
    def forward(ctx, gates: torch.Tensor, h0: torch.Tensor, lstm: bool) -> torch.Tensor:
        a, b = linear_coefficients("lstm" if lstm else "gru", gates)
        h = _walk(a, b, h0)
        ctx.lstm = lstm
        ctx.save_for_backward(gates, h, h0)
        return h

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gates, h, h0 = ctx.saved_tensors
        a, c, pre, parts = _mixing("lstm" if ctx.lstm else "gru", gates)
        gp, s = _g(pre)
        a_next = torch.cat([a[:, 1:], a.new_zeros(a.shape[0], 1, a.shape[2])], 1)
        d = _walk(a_next, _wide(grad).contiguous(), torch.zeros_like(h0), reverse=True)  # dL/db
        da = d * torch.cat([h0.unsqueeze(1), h[:, :-1]], 1)  # dL/da = d_t h_{t-1}
        dc = d * gp
        dpre = d * c * torch.where(pre >= 0, torch.ones_like(s), s * (1 - s))
        if parts is not None:  # minLSTM: a = f / (f + i), c = i / (f + i)
            f, i, total = parts
            diff = (da - dc) / (total * total)
            parts = [diff * i * f * (1 - f), -diff * f * i * (1 - i), dpre]
        else:  # minGRU: a = 1 - z, c = z
            parts = [(dc - da) * c * a, dpre]
        return torch.cat(parts, -1).to(gates.dtype), a[:, 0] * d[:, 0], None


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout on a residual branch: over a window (N, T, H) one mask per row and feature,
    the same at every step (variational dropout, Gal and Ghahramani 2016). A mask per
    element would cost more than the scan itself on a CPU (measured: 4-5 ms a branch for
    a 16 x 128 x 256 window on two cores, torch's random numbers being slow)."""
    if not training or p == 0.0:
        return x
    if x.dim() == 3:
        return x * x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1.0 - p).div_(1.0 - p)
    return F.dropout(x, p, True)


class ScanBlock(nn.Module):
    """One layer: a min-cell, then (``ffn_mult`` > 0) a feed-forward layer ``ffn_mult`` H
    wide, each pre-norm with a residual connection."""

    def __init__(self, hidden_size: int, variant: str, ffn_mult: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size)
        self.gates = nn.Linear(hidden_size, (2 if variant == "gru" else 3) * hidden_size)
        self.ffn_mult = ffn_mult
        if ffn_mult:
            self.norm2 = nn.LayerNorm(hidden_size)
            self.up = nn.Linear(hidden_size, ffn_mult * hidden_size)
            self.down = nn.Linear(ffn_mult * hidden_size, hidden_size)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(self.norm2(x))))


class ScanStack(nn.Module):
    """``num_layers`` blocks of minGRU (``variant="gru"``) or minLSTM (``"lstm"``), with
    nn.RNNBase's constructor arguments and call: ``stack(x, state)`` for x (N, T, I) batch
    first -> (outputs (N, T, H), state (L, N, H)). ``dropout`` applies to each residual
    branch (so with one layer too); ``bidirectional`` is not supported (the classifier,
    tagger and encoder run one module per direction)."""

    bias = True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True,
                 dropout: float = 0.0, bidirectional: bool = False, variant: str = "gru",
                 ffn_mult: int = FFN_MULT):
        super().__init__()
        if bidirectional or not batch_first:
            raise ValueError("a scan stack is batch first and one-directional")
        if variant not in ("gru", "lstm"):
            raise ValueError(f"unknown min-cell variant {variant!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first, self.bidirectional, self.dropout, self.variant = True, False, dropout, variant
        self.proj = nn.Linear(input_size, hidden_size) if input_size != hidden_size else None
        self.blocks = nn.ModuleList(ScanBlock(hidden_size, variant, ffn_mult) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden_size)
        # GPT-2's scaling of the residual branches' last weights: the stream's variance
        # stays of order one however many layers there are.
        for block in self.blocks if ffn_mult else ():
            nn.init.normal_(block.down.weight, std=0.02 / math.sqrt(2 * num_layers))

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, T, I), state (L, N, H) or None (zeros) -> (N, T, H), (L, N, H)."""
        p, training = self.dropout, self.training
        x = self.proj(x) if self.proj is not None else x
        finals = []
        for k, block in enumerate(self.blocks):
            h = scan(self.variant, block.gates(block.norm1(x)), None if state is None else state[k])
            finals.append(h[:, -1])
            x = x + _dropout(h.to(x.dtype), p, training)
            if block.ffn_mult:
                x = x + _dropout(block.ffn(x), p, training)
        return self.norm(x), torch.stack(finals)

    def step(self, x: torch.Tensor, state: torch.Tensor | None, training: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step for R rows: x (R, I), state (L, R, H) -> top output (R, H), new state:
        the recurrence itself, no scan."""
        out, new = self.step_layers(x, state, training)
        return out, torch.stack(new)

    def step_layers(self, x: torch.Tensor, state, training: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``step`` with the state as one (R, H) tensor per layer, in and out (a list, or a
        stacked tensor in): the very tensors the next step reads, which the gradient
        diagnostics differentiate against."""
        p = self.dropout
        x = self.proj(x) if self.proj is not None else x
        new = []
        for k, block in enumerate(self.blocks):
            a, b = linear_coefficients(self.variant, block.gates(block.norm1(x)))
            h = b if state is None else torch.addcmul(b, a, state[k].float())
            new.append(h)
            x = x + _dropout(h.to(x.dtype), p, training)
            if block.ffn_mult:
                x = x + _dropout(block.ffn(x), p, training)
        return self.norm(x), new

    @staticmethod
    def count(input_size: int, hidden_size: int, layers: int, variant: str, ffn_mult: int = FFN_MULT) -> int:
        """Parameters of a stack, without building it (the model-size chooser's)."""
        h, gates, m = hidden_size, (2 if variant == "gru" else 3), ffn_mult
        proj = input_size * h + h if input_size != h else 0
        block = 2 * h + gates * h * (h + 1) + (2 * h + m * h * (h + 1) + h * (m * h + 1) if m else 0)
        return proj + layers * block + 2 * h


class MinGRU(ScanStack):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, variant="gru", **kwargs)


class MinLSTM(ScanStack):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, variant="lstm", **kwargs)
