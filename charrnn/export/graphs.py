"""The graphs an exported model is made of: a wrapper module per graph, with fixed, named
inputs and outputs, and the shapes the JSON describes.

Every model kind becomes one or two graphs (float32 weights, int64 ids):

    lm            step       tokens (N, T), h (L, N, H) [, c]      -> logits (N, T, V), h_out [, c_out]
    conditional   step       tokens (N, T), labels (N,), h [, c]   -> logits (N, T, V), h_out [, c_out]
                  start      labels (N,)                           -> h (L, N, H) [, c]
    classifier    forward    ids (N, T), lengths (N,)              -> logits (N, C)
    tagger        emissions  words (N, T), lengths (N,), chars (M, C), char_lengths (M,),
                             spelling (N, T)                       -> emissions (N, T, K)
    seq2seq       encoder    src (N, S), src_len (N,)              -> memory (N, S, D) [, keys (N, S, H)], h [, c]
                  decoder    tokens (N,), h [, c] [, feed (N, H)] [, memory [, keys], src_len]
                                                                   -> logits (N, V), h_out [, c_out]
                                                                      [, feed_out] [, attention (N, S)]

``c`` is there for cells whose state is a pair (LSTM; the cell's entry in
models/cells.py says); the bracketed seq2seq inputs follow the attention kind
(``none``: no memory; ``dot``: no keys) and input feeding. The step graphs take T tokens at
once, so a prime is read in one call and a sampling loop feeds T = 1. Each wrapper calls
the model's own methods, so the graph is traced from exactly the code charrnn runs.

An input or output is ``Port(name, dtype, dims, fill)``: dims are ints or the letters of
dynamic axes, and ``fill`` says how verification draws a valid example (ids below a
vocabulary size, lengths up to an axis, indices into an axis, or floats).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.cells import cell_kind
from ..models.encoder import padding_mask
from ..models.seq2seq import Memory


@dataclass(frozen=True)
class Port:
    """One input or output of a graph: dims are ints or dynamic axis letters."""

    name: str
    dtype: str  # "int64" or "float32"
    dims: tuple[int | str, ...]
    fill: tuple = ("float",)  # ("ids", high) | ("lengths", axis) | ("index", axis) | ("float",)

    def describe(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.dims)}


@dataclass
class Graph:
    """A wrapper module and its named ports; ``role`` names the graph in the JSON."""

    role: str
    module: nn.Module
    inputs: list[Port]
    outputs: list[Port]
    doc: str

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {p.name: {i: d for i, d in enumerate(p.dims) if isinstance(d, str)}
                for p in [*self.inputs, *self.outputs] if any(isinstance(d, str) for d in p.dims)}

    def example(self, sizes: dict[str, int], seed: int = 0) -> dict[str, torch.Tensor]:
        """Valid inputs with dynamic axes of ``sizes``: ids in range, lengths from 1 to
        their axis (one row as long as the axis), indices into their axis."""
        g = torch.Generator().manual_seed(seed)
        out = {}
        for p in self.inputs:
            shape = tuple(sizes[d] if isinstance(d, str) else d for d in p.dims)
            kind = p.fill[0]
            if kind == "ids":
                out[p.name] = torch.randint(0, p.fill[1], shape, generator=g)
            elif kind == "lengths":
                t = torch.randint(1, sizes[p.fill[1]] + 1, shape, generator=g)
                t[0] = sizes[p.fill[1]]
                out[p.name] = t
            elif kind == "index":
                out[p.name] = torch.randint(0, sizes[p.fill[1]], shape, generator=g)
            else:
                out[p.name] = torch.randn(shape, generator=g) * 0.5
        return out


def _state(cell: str, layers: int, hidden: int, suffix: str = "") -> list[Port]:
    """The recurrent state's ports, one per tensor of the cell's state (h, and c when the
    state is a pair), each (L, N, H)."""
    return [Port(n + suffix, "float32", (layers, "N", hidden)) for n in cell_kind(cell).state_names]


def _flat(state) -> tuple[torch.Tensor, ...]:
    return tuple(state) if isinstance(state, tuple) else (state,)


def _pack(cell: str, tensors) -> object:
    """The model's state from the state ports' tensors, in ``_state``'s order."""
    return cell_kind(cell).pack(tensors)


# --------------------------------------------------------------------------- wrappers


class _LMStep(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens, *state):
        logits, new = self.model(tokens, _pack(self.model.config.cell, state))
        return (logits, *_flat(new))


class _ConditionalStep(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens, labels, *state):
        logits, new = self.model(tokens, labels, _pack(self.model.config.cell, state))
        return (logits, *_flat(new))


class _ConditionalStart(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, labels):
        return _flat(self.model.initial_state(self.model.label_embedding(labels)))


class _Forward(nn.Module):
    """The classifier's or the tagger's own forward; ``pad`` more None inputs (a tagger
    without a character encoder reads no spellings, and a graph has no unused inputs)."""

    def __init__(self, model, pad: int = 0):
        super().__init__()
        self.model, self.pad = model, pad

    def forward(self, *inputs):
        return self.model(*inputs, *([None] * self.pad))


class _Encoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, src, src_len):
        memory, state = self.model.encode(src, src_len)
        keys = () if memory.keys is None else (memory.keys,)
        return (memory.values, *keys, *_flat(state))


class _Decoder(nn.Module):
    """One target token per row; inputs in the order ``names`` lists them."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        m = self.model
        x = dict(zip(self.names, inputs))
        state = _pack(m.config.cell, [x[n] for n in cell_kind(m.config.cell).state_names])
        memory = None
        if "memory" in x:
            memory = Memory(x["memory"], x.get("keys"), padding_mask(x["src_len"], x["memory"].shape[1]))
        logits, new, feed, weights = m.step(memory, state, x.get("feed"), x["tokens"])
        extra = ((feed,) if feed is not None else ()) + ((weights,) if weights is not None else ())
        return (logits, *_flat(new), *extra)


# --------------------------------------------------------------------------- graphs per kind


def lm_graphs(model: nn.Module) -> list[Graph]:
    c = model.config
    return [Graph("step", _LMStep(model),
                  [Port("tokens", "int64", ("N", "T"), ("ids", c.vocab_size)), *_state(c.cell, c.layers, c.hidden_size)],
                  [Port("logits", "float32", ("N", "T", c.vocab_size)), *_state(c.cell, c.layers, c.hidden_size, "_out")],
                  "T tokens per row with the state before them -> the logits after each token and "
                  "the state after the last; a sampling loop feeds T = 1")]


def conditional_graphs(model: nn.Module) -> list[Graph]:
    c = model.config
    state = _state(c.cell, c.layers, c.hidden_size)
    return [Graph("step", _ConditionalStep(model),
                  [Port("tokens", "int64", ("N", "T"), ("ids", c.vocab_size)),
                   Port("labels", "int64", ("N",), ("ids", c.num_labels)), *state],
                  [Port("logits", "float32", ("N", "T", c.vocab_size)), *_state(c.cell, c.layers, c.hidden_size, "_out")],
                  "T tokens per row of the given labels -> logits after each token and the state after "
                  "the last; start each row from the start graph's state and feed SOS first"),
            Graph("start", _ConditionalStart(model), [Port("labels", "int64", ("N",), ("ids", c.num_labels))], state,
                  "labels -> each row's state before SOS")]


def classifier_graphs(model: nn.Module) -> list[Graph]:
    c = model.config
    return [Graph("forward", _Forward(model),
                  [Port("ids", "int64", ("N", "T"), ("ids", c.vocab_size)), Port("lengths", "int64", ("N",), ("lengths", "T"))],
                  [Port("logits", "float32", ("N", c.num_labels))],
                  "token ids padded to T (anything in the padding) and each row's length -> label logits")]


def tagger_graphs(model: nn.Module) -> list[Graph]:
    c = model.config
    spellings = [Port("chars", "int64", ("M", "C"), ("ids", c.char_vocab_size)),
                 Port("char_lengths", "int64", ("M",), ("lengths", "C")),
                 Port("spelling", "int64", ("N", "T"), ("index", "M"))] if c.char_hidden_size else []
    return [Graph("emissions", _Forward(model, pad=0 if spellings else 3),
                  [Port("words", "int64", ("N", "T"), ("ids", c.word_vocab_size)),
                   Port("lengths", "int64", ("N",), ("lengths", "T")), *spellings],
                  [Port("emissions", "float32", ("N", "T", c.num_tags))],
                  "word ids (N, T) with lengths"
                  + (", M spellings (character ids, padded to C) with their lengths, and the row of chars "
                     "each position reads" if spellings else "")
                  + " -> a score per tag and position (softmax them, or run Viterbi with the crf scores)")]


def seq2seq_graphs(model) -> list[Graph]:
    c = model.config
    h, d = c.hidden_size, c.hidden_size * model.directions
    attention = model.attn_out is not None
    keys = model.attn_key is not None
    memory = [Port("memory", "float32", ("N", "S", d))] + ([Port("keys", "float32", ("N", "S", h))] if keys else [])
    state = _state(c.cell, c.layers, h)
    encoder = Graph("encoder", _Encoder(model),
                    [Port("src", "int64", ("N", "S"), ("ids", c.src_vocab_size)),
                     Port("src_len", "int64", ("N",), ("lengths", "S"))],
                    memory + state,
                    "source ids padded to S and each row's length -> the memory the decoder attends to "
                    "and the decoder's first state")
    inputs = [Port("tokens", "int64", ("N",), ("ids", c.tgt_vocab_size)), *state]
    outputs = [Port("logits", "float32", ("N", c.tgt_vocab_size)), *_state(c.cell, c.layers, h, "_out")]
    if model.feeding:
        inputs.append(Port("feed", "float32", ("N", h)))
        outputs.append(Port("feed_out", "float32", ("N", h)))
    if attention:
        inputs += [*memory, Port("src_len", "int64", ("N",), ("lengths", "S"))]
        outputs.append(Port("attention", "float32", ("N", "S")))
    decoder = Graph("decoder", _Decoder(model, [p.name for p in inputs]), inputs, outputs,
                    "one target token per row (SOS first) with the state"
                    + (", the fed vector (zeros at first)" if model.feeding else "")
                    + (" and the encoder's memory" if attention else "")
                    + " -> the next token's logits and the new state")
    return [encoder, decoder]


# The graphs of each model kind (models.MODEL_KINDS), the main one first; a task names its
# kind's in its export function (export/tasks.py).
GRAPHS = {"lm": lm_graphs, "conditional": conditional_graphs, "classifier": classifier_graphs,
          "tagger": tagger_graphs, "seq2seq": seq2seq_graphs}


def graphs_for(kind: str, model: nn.Module) -> list[Graph]:
    """The graphs of a model of ``kind``."""
    if kind not in GRAPHS:
        raise ValueError(f"no ONNX export for model kind {kind!r}")
    return GRAPHS[kind](model)
