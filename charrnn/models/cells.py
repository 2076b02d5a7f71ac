"""The table of recurrent cell kinds: one entry per cell, read by every model.

A cell kind is one ``CellKind`` in ``CELLS``: its torch module and constructor arguments,
its gate count, the layout of its state (h alone, or the pair (h, c)), its one-step
function and the fused multi-layer kernel its module calls. Nothing else names a cell:
the models build their stacks and initial states through the entry, regularize.py runs
its kernel, the decoding step its one-step function (or hand-written arithmetic for a
one-step function it knows), sizing counts its gates and export names its state tensors.

``register_cell`` adds a kind; its name is then valid in every config (``config.CELLS``,
the stdlib list the configs and the command line check) and a model of it trains,
samples, saves, loads and exports like one of the built-in three.

The state a cell carries is a tensor (L*D, N, H), or a pair of them for a paired cell
(an LSTM's h and c); callers treat it as opaque and use the entry or ``detach_state``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

import torch
from torch import nn

from ..config import CELLS as CELL_NAMES
from ..errors import ConfigError
from .minrnn import MinGRU, MinLSTM, ScanStack

State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True, eq=False)
class CellKind:
    """One recurrent cell kind (an entry is compared by identity: one object per kind).

    ``module`` is built with nn.RNNBase's arguments (input_size, hidden_size, num_layers,
    batch_first, dropout, bidirectional) and ``kwargs``, is called as ``module(x, state)``,
    and keeps nn.RNNBase's weight layout: per layer ``weight_ih_l{k}`` (gates*H, I),
    ``weight_hh_l{k}`` (gates*H, H) and, unless ``kwargs`` turns biases off,
    ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (gates*H,).

    ``step(x, hx, w_ih, w_hh[, b_ih, b_hh])`` is one time step of one layer for R rows,
    x (R, I) and hx (R, H) (a tuple (h, c) when ``paired``) -> h' (or (h', c')), with the
    module's arithmetic: torch.lstm_cell, gru_cell, rnn_tanh_cell.
    ``kernel`` is the fused multi-layer function the module's forward calls, with the
    signature of torch._VF.lstm / gru / rnn_tanh (x, hx, weights, has_biases, layers,
    dropout, train, bidirectional, batch_first) -> (output, *final state).
    """

    name: str
    module: type[nn.RNNBase]
    gates: int  # weight rows per hidden unit: 4 for LSTM, 3 for GRU, 1 for RNN
    paired: bool  # the state is the pair (h, c) rather than h alone
    step: Callable[..., Any]
    kernel: Callable[..., Any] | None
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # more constructor arguments
    # A cell trained by a parallel scan over time (models/minrnn.py): its module has its
    # own forward and one-step ``step(x, state, training)``, no weight_hh, and ``step`` and
    # ``kernel`` are None; ``count(input, hidden, layers)`` gives its parameter count.
    parallel: bool = False
    count: Callable[[int, int, int], int] | None = None

    @property
    def bias(self) -> bool:
        """Whether the module has the two bias vectors per layer (nn.RNNBase's ``bias``)."""
        return bool(self.kwargs.get("bias", True))

    @property
    def state_names(self) -> tuple[str, ...]:
        """The names of the state's tensors, in ``flatten`` order (export's input names)."""
        return ("h", "c") if self.paired else ("h",)

    def make(self, input_size: int, hidden_size: int, layers: int, dropout: float,
             bidirectional: bool = False) -> nn.RNNBase:
        """A batch-first stack of ``layers`` layers; ``dropout`` applies between layers
        only, so it is dropped for a single layer (torch warns otherwise); a parallel
        cell's blocks apply it to their residual branches, with one layer too."""
        return self.module(input_size=input_size, hidden_size=hidden_size, num_layers=layers, batch_first=True,
                           dropout=dropout if layers > 1 or self.parallel else 0.0, bidirectional=bidirectional,
                           **self.kwargs)

    def initial(self, h: torch.Tensor) -> State:
        """The state whose hidden part is ``h`` (L, N, H) and any other part (c) zero."""
        return (h, torch.zeros_like(h)) if self.paired else h

    def flatten(self, state: State) -> tuple[torch.Tensor, ...]:
        """The state's tensors, in ``state_names`` order."""
        return tuple(state) if self.paired else (state,)

    def pack(self, tensors: Sequence[torch.Tensor]) -> State:
        """The state made of ``tensors`` in ``state_names`` order (``flatten`` undone)."""
        return (tensors[0], tensors[1]) if self.paired else tensors[0]


# The built-in kinds, with nn.LSTM/GRU/RNN's weights and arithmetic (the plain RNN uses tanh).
LSTM = CellKind("lstm", nn.LSTM, gates=4, paired=True, step=torch.lstm_cell, kernel=torch._VF.lstm)
GRU = CellKind("gru", nn.GRU, gates=3, paired=False, step=torch.gru_cell, kernel=torch._VF.gru)
RNN = CellKind("rnn", nn.RNN, gates=1, paired=False, step=torch.rnn_tanh_cell, kernel=torch._VF.rnn_tanh,
               kwargs={"nonlinearity": "tanh"})

# minGRU and minLSTM in charrnn's residual block (models/minrnn.py), trained by a parallel scan.
MINGRU = CellKind("mingru", MinGRU, gates=2, paired=False, step=None, kernel=None, parallel=True,
                  count=lambda i, h, n: ScanStack.count(i, h, n, "gru"))
MINLSTM = CellKind("minlstm", MinLSTM, gates=3, paired=False, step=None, kernel=None, parallel=True,
                   count=lambda i, h, n: ScanStack.count(i, h, n, "lstm"))

# THE table, in config.CELLS's order (diagnostics derive seeds from the positions).
CELLS: dict[str, CellKind] = {kind.name: kind for kind in (LSTM, GRU, RNN, MINGRU, MINLSTM)}
_BUILT_IN = frozenset(CELLS)


def register_cell(kind: CellKind) -> CellKind:
    """Add ``kind`` to the table; its name becomes valid in every config and on the command
    line (for commands run in this process after the call). Returns ``kind``.

    A name is lowercase letters, digits and underscores (command-line lists are split on
    commas and lowercased), and names one kind for good: a checkpoint stores only the name."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", kind.name):
        raise ConfigError(f"a cell name is lowercase letters, digits and underscores, not {kind.name!r}")
    if kind.name in CELLS:
        raise ConfigError(f"cell {kind.name!r} is already registered")
    if kind.gates < 1:
        raise ConfigError(f"a cell has at least one gate, not {kind.gates}")
    CELLS[kind.name] = kind
    CELL_NAMES.append(kind.name)
    return kind


def unregister_cell(name: str) -> None:
    """Remove a kind ``register_cell`` added (the built-in ones stay); unknown names are ignored."""
    if name in _BUILT_IN:
        raise ConfigError(f"cell {name!r} is built in and cannot be removed")
    if CELLS.pop(name, None) is not None:
        CELL_NAMES.remove(name)


def cell_kind(name: str) -> CellKind:
    """The table's entry for ``name``."""
    try:
        return CELLS[name]
    except KeyError:
        raise ConfigError(f"unknown cell {name!r}: use one of {', '.join(CELLS)}") from None


def make_rnn(cell: str, input_size: int, hidden_size: int, layers: int, dropout: float,
             bidirectional: bool = False) -> nn.RNNBase:
    """A batch-first recurrent stack of ``cell`` (see ``CellKind.make``)."""
    return cell_kind(cell).make(input_size, hidden_size, layers, dropout, bidirectional)


def layer_weights(rnn: nn.RNNBase, k: int) -> list[torch.Tensor]:
    """Layer ``k``'s weights in the order torch's kernels and cell functions take them:
    w_ih, w_hh, then b_ih, b_hh when the module has biases."""
    if not isinstance(rnn, nn.RNNBase):
        raise ConfigError(f"{type(rnn).__name__} has no per-layer recurrent weights (a parallel-scan cell)")
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if rnn.bias else ("weight_ih", "weight_hh")
    return [getattr(rnn, f"{n}_l{k}") for n in names]


def final_hidden(state: State) -> torch.Tensor:
    """h_n of a state: the tensor itself, or the first of a pair."""
    return state[0] if isinstance(state, tuple) else state


def detach_state(state: State | None) -> State | None:
    """Cut the graph at a window boundary (truncated BPTT) while keeping the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


def select_rows(state: State, index: torch.Tensor) -> State:
    """The state (L, N, H) (or a pair) with row i taken from row ``index[i]``."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


def step_layers(rnn: nn.RNNBase, cell: str, x: torch.Tensor, state: State, dropout: float,
                training: bool) -> tuple[torch.Tensor, State]:
    """One time step of the stacked ``rnn`` (made by ``make_rnn``) for R rows: x (R, I) and
    state (L, R, H) (a pair when paired) -> the top layer's output (R, H) and the new
    state; dropout between layers as the module applies it.

    The same weights and arithmetic as calling ``rnn`` on one time step, through the
    entry's one-step function: a whole nn.LSTM call per step costs about twice as much on
    the CPU (measured: 10.5 vs 5.7 ms forward and backward for 64 rows of 384 -> 256)."""
    kind = cell_kind(cell)
    if kind.parallel:
        return rnn.step(x, state, training)
    parts = kind.flatten(state)  # each (L, R, H)
    new = []
    for k in range(rnn.num_layers):
        if k:
            x = nn.functional.dropout(x, dropout, training)
        out = kind.flatten(kind.step(x, kind.pack([p[k] for p in parts]), *layer_weights(rnn, k)))
        new.append(out)
        x = out[0]
    return x, kind.pack([torch.stack(layer) for layer in zip(*new)])  # (L, R, H) each
