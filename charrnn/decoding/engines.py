"""Decoding engines: what computes a language model's step.

- ``torch``: ``StepRunner`` (step.py), charrnn's own step. Always there.
- ``onnx``: the model's step graph (the one ``charrnn export`` writes and checks) run by
  ONNX Runtime, on the CPU (``charrnn.export.engine``). Needs the ``onnx`` extra. The graph
  is traced from the model once, checked against PyTorch, and kept in the cache directory
  under a hash of the weights (``$CHARRNN_CACHE``, else ``$XDG_CACHE_HOME/charrnn``, else
  ``~/.cache/charrnn``), so later runs of the same model load it instead of tracing it
  again (about 1.5 s). Building it also times both engines' one-row step on this machine
  and records the figures (``engines.json`` there).
- ``auto`` (the default): ``onnx`` only where it was measured faster on this machine for
  this shape and thread count and the model's graph is already in the cache; otherwise
  ``torch``. Tracing a graph costs more than a short generation saves, so ``auto`` never
  starts one: a user who wants ONNX Runtime asks for it once with ``--engine onnx``.

An engine asked for that cannot run the model here (the extra missing, a graph the
exporter or its check refuses, not a CPU) falls back to ``torch`` with one warning
(``EngineFallback``), which the commands print as one line on stderr. Only language
models have an ``onnx`` step; the conditioned generator and the encoder-decoder step
through their own modules.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import warnings
from pathlib import Path

import torch

from ..files import cache_root
from ..runtime import cpu_name
from .step import StepRunner

MARGIN = 1.05  # auto takes onnx only when torch's step took at least this many times longer
_ONNX = "charrnn.export.engine"  # the module that makes ONNX Runtime steps (a layer above this one)


class EngineFallback(UserWarning):
    """An engine that was asked for cannot run this model here: the step is torch's."""


def cache_dir() -> Path:
    return Path(os.environ["CHARRNN_CACHE"]) if os.environ.get("CHARRNN_CACHE") else cache_root()


def make_step(model, rows: int, engine: str = "auto", pack: bool = True):
    """The DecoderStep of a language model for ``rows`` rows on ``engine`` (see above)."""
    cpu = next(model.parameters()).device.type == "cpu"
    if engine == "onnx" and not cpu:
        fallback("ONNX Runtime runs on the CPU and this model is not on it")
    elif engine == "onnx" or (engine == "auto" and cpu and _auto_prefers_onnx(model)):
        step = importlib.import_module(_ONNX).onnx_step(model, cached_only=engine == "auto")
        if step is not None:
            return step
    return StepRunner(model, pack=pack)


def fallback(reason: str) -> None:
    warnings.warn(f"--engine onnx: {reason}; using charrnn's own step", EngineFallback, stacklevel=3)


def shape_key(model) -> str:
    """This machine, thread count and model shape: what engine timings are kept under."""
    c = model.config
    return f"{cpu_name()}|threads={torch.get_num_threads()}|{c.cell}|{c.layers}x{c.hidden_size}|E={c.embedding_dim}|V={c.vocab_size}"


def timings() -> dict:
    try:
        return json.loads((cache_dir() / "engines.json").read_text())
    except (OSError, ValueError):
        return {}


def _auto_prefers_onnx(model) -> bool:
    """Whether the timings say ONNX Runtime's step is faster here (the cheap part of
    ``auto``'s rule; the graph's presence is checked when the step is made)."""
    spent = timings().get(shape_key(model))
    if not spent or spent.get("torch", 0) < MARGIN * spent.get("onnx", float("inf")):
        return False
    return importlib.util.find_spec("onnxruntime") is not None
