"""Single units of a recurrent language model over a text, after Karpathy, Johnson and
Fei-Fei, "Visualizing and Understanding Recurrent Networks" (2015): the activation of
every unit of one layer after each character, a few simple features of the text, and the
units whose activation follows a feature best (|Pearson r| over the text).

Activations are read step by step through ``models.cells.step_layers`` (the weights and
arithmetic of the model's own nn.LSTM/GRU/RNN), because the module returns every step's
output of the top layer only, and no cell state c at all. Kinds: ``c``, an LSTM's cell
state (what Karpathy coloured), and ``h``, a layer's output (the only state of a GRU or
an RNN). A character gets the activation after reading the token that completes it (see
``surprisal.token_spans``): its own for a char model, its subword's for a subword model.

Features are functions of the text alone, one number per character, also read "after
the character": an opening quote is already inside the quotes, a closing one is out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..models.cells import cell_kind, step_layers
from ..text.tokenizer import Tokenizer
from .surprisal import TokenSpans, token_spans

KINDS = ("c", "h")


def default_kind(cell: str) -> str:
    """``c`` for a cell with a cell state, an LSTM (as Karpathy did), ``h`` for the cells
    that have nothing else."""
    return "c" if cell_kind(cell).paired else "h"


@torch.inference_mode()
def activations(model: torch.nn.Module, ids: torch.Tensor, layer: int, kind: str) -> torch.Tensor:
    """(T, H) float32: the ``kind`` state of layer ``layer`` (0 is the one over the embedding)
    of a language model (``embedding``, ``rnn``, ``config.cell``) after reading each of
    ``ids`` (1-D), from a zero state, in eval mode (no dropout)."""
    cell, rnn = model.config.cell, model.rnn
    layers, H = rnn.num_layers, rnn.hidden_size
    if not 0 <= layer < layers:
        raise ConfigError(f"layer {layer + 1} is out of range: the model has {layers} layer(s) (1 to {layers})")
    if kind not in KINDS:
        raise ConfigError(f"unknown state kind {kind!r}: one of {', '.join(KINDS)}")
    paired = cell_kind(cell).paired
    if kind == "c" and not paired:
        raise ConfigError(f"a {cell.upper()} has no cell state c: its units are its outputs h")
    device = next(model.parameters()).device
    emb = model.embedding(ids.long().to(device)).float()  # (T, E)
    zeros = emb.new_zeros(layers, 1, H)
    state = cell_kind(cell).initial(zeros)
    out = emb.new_empty(ids.numel(), H)
    pick = 1 if kind == "c" else 0
    for t in range(ids.numel()):
        _, state = step_layers(rnn, cell, emb[t : t + 1], state, 0.0, False)
        out[t] = (state[pick] if paired else state)[layer, 0]
    return out.cpu()


@dataclass(frozen=True)
class UnitActivations:
    """Every unit of one layer after each character of a text."""

    text: str  # C characters
    values: torch.Tensor  # (C, H) float32
    layer: int  # 0-based
    kind: str  # "c" or "h"


def unit_activations(model: torch.nn.Module, tokenizer: Tokenizer, text: str, layer: int, kind: str) -> UnitActivations:
    """Activations per character of ``text`` (see the module docstring)."""
    ids = tokenizer.encode(text).cpu()
    acts = activations(model, ids, layer, kind)  # (T, H)
    spans: TokenSpans = token_spans(tokenizer, text, ids)
    return UnitActivations(spans.text, acts[spans.char_token()], layer, kind)


# --------------------------------------------------------------------------- features
# Each: text -> (C,) float64, the value after reading each character.


def in_quotes(text: str) -> torch.Tensor:
    """1 inside double quotes "...", from the opening quote to before the closing one."""
    out, inside = [], False
    for ch in text:
        if ch == '"':
            inside = not inside
        out.append(float(inside))
    return torch.tensor(out, dtype=torch.float64)


def in_brackets(text: str) -> torch.Tensor:
    """1 inside (), [] or {}, from the opening bracket to before the closing one (nested counts once)."""
    out, depth = [], 0
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        out.append(float(depth > 0))
    return torch.tensor(out, dtype=torch.float64)


def line_position(text: str) -> torch.Tensor:
    """Characters since the last newline: 0 at a newline, 1 on the line's first character."""
    out, pos = [], 0
    for ch in text:
        pos = 0 if ch == "\n" else pos + 1
        out.append(float(pos))
    return torch.tensor(out, dtype=torch.float64)


def in_word(text: str) -> torch.Tensor:
    """1 on letters (and an apostrophe between letters, as in "o'er"), 0 elsewhere."""
    out = [float(ch.isalpha()) for ch in text]
    for i in range(1, len(text) - 1):
        if text[i] == "'" and text[i - 1].isalpha() and text[i + 1].isalpha():
            out[i] = 1.0
    return torch.tensor(out, dtype=torch.float64)


def uppercase(text: str) -> torch.Tensor:
    """1 on upper-case letters (speaker names in a play are in capitals)."""
    return torch.tensor([float(ch.isupper()) for ch in text], dtype=torch.float64)


def speaker_line(text: str) -> torch.Tensor:
    """1 on a play's speaker heading: a line ending in ':' at the start or after a blank line."""
    out: list[float] = []
    lines = text.split("\n")
    previous = ""  # the line before ("" before the first)
    for k, body in enumerate(lines):
        heading = len(body) > 1 and body.rstrip().endswith(":") and not previous.strip()
        out += [float(heading)] * len(body) + ([0.0] if k < len(lines) - 1 else [])
        previous = body
    return torch.tensor(out, dtype=torch.float64)


FEATURES: dict[str, Callable[[str], torch.Tensor]] = {
    "in_quotes": in_quotes,
    "line_position": line_position,
    "in_brackets": in_brackets,
    "in_word": in_word,
    "uppercase": uppercase,
    "speaker_line": speaker_line,
}


def describe(name: str) -> str:
    """The one-line description of a feature (its function's docstring)."""
    return (FEATURES[name].__doc__ or name).strip().splitlines()[0]


# --------------------------------------------------------------------------- search


def correlations(values: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """(H,) float64 Pearson r between each unit of ``values`` (C, H) and ``feature`` (C,);
    NaN everywhere when the feature is constant, 0 for a constant unit."""
    a = values.double() - values.double().mean(0)
    f = feature.double() - feature.double().mean()
    f_norm = f.norm()
    if values.shape[0] < 2 or f_norm == 0:
        return torch.full((values.shape[1],), math.nan, dtype=torch.float64)
    a_norm = a.norm(dim=0)
    r = (a * f[:, None]).sum(0) / (a_norm * f_norm)
    return torch.where(a_norm > 0, r, torch.zeros_like(r)).clamp(-1.0, 1.0)


def top_units(values: torch.Tensor, feature: torch.Tensor, k: int = 3) -> list[tuple[int, float]]:
    """The ``k`` units with the largest |r| with ``feature``, best first, as (unit, r);
    empty when the feature is constant over the text (nothing to correlate with)."""
    r = correlations(values, feature)
    if torch.isnan(r).all():
        return []
    order = torch.argsort(r.abs(), descending=True, stable=True)[:k]
    return [(int(u), float(r[u])) for u in order]


def search(acts: UnitActivations, features: list[str], k: int = 3) -> dict[str, list[tuple[int, float]]]:
    """For each named feature, its ``top_units`` over the activations' text."""
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown feature(s) {', '.join(unknown)}: one of {', '.join(FEATURES)}")
    return {name: top_units(acts.values, FEATURES[name](acts.text), k) for name in features}
