"""ONNX Runtime as a decoding engine (``--engine onnx``; see ``charrnn.decoding.engines``):
the language model's step graph, traced once per model and kept in the cache directory
under a hash of the weights, run by ``OnnxStep`` behind the DecoderStep protocol."""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ..decoding.engines import cache_dir, fallback, shape_key, timings
from ..files import atomic_write
from ..decoding.step import StepRunner
from ..errors import CharrnnError
from ..models.cells import cell_kind
from . import check, session, trace
from .graphs import lm_graphs

CALIBRATION_ROUNDS, CALIBRATION_STEPS = 5, 40  # one-row steps each engine is timed for when a graph is built


def onnx_step(model, cached_only: bool = False):
    """An OnnxStep for ``model``, or None (with one ``EngineFallback`` warning when it was
    asked for) where ONNX Runtime cannot run it. ``cached_only``: only from a graph
    already in the cache (``auto``), never tracing one."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if not cached_only:
            fallback("onnxruntime is not installed (pip install 'charrnn[onnx]')")
        return None
    threads = torch.get_num_threads()
    versions = (threads, tuple((q.data_ptr(), q._version) for q in model.parameters()))
    kept = model.__dict__.get("_charrnn_onnx_session")
    if kept is not None and kept[0] == versions:  # this model's session, made by an earlier call
        return OnnxStep(model, kept[1])
    path = cache_dir() / "onnx" / f"{signature(model)}.onnx"
    try:
        data = path.read_bytes()
    except OSError:
        if cached_only:
            return None
        data = _build(model, path)
        if data is None:
            return None
    sess = session(data, threads)
    model.__dict__["_charrnn_onnx_session"] = (versions, sess)
    return OnnxStep(model, sess)


def _build(model, path) -> bytes | None:
    """Trace and check the model's step graph; keep it at ``path`` and time both engines."""
    graph = lm_graphs(model)[0]
    try:
        data = trace(graph)
        check(graph, data)
    except (CharrnnError, RuntimeError) as e:  # a model the exporter or the check refuses
        fallback(f"the model's step graph could not be made ({e})")
        return None
    finally:
        model.eval()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        record_timings(model, data)
    except OSError:  # a read-only cache: the graph is used, not kept
        pass
    return data


def signature(model) -> str:
    """What a graph depends on: the model's config, every weight and torch's version."""
    h = hashlib.sha256(json.dumps(vars(model.config), sort_keys=True, default=str).encode())
    h.update(torch.__version__.encode())
    for name, p in model.state_dict().items():
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def record_timings(model, data: bytes) -> dict[str, float]:
    """Time both engines' one-row step here (seconds per step, the median of rounds that
    alternate between them) and keep the figures, which ``auto`` reads."""
    tokens = torch.zeros(1, dtype=torch.long)
    steps = {"torch": StepRunner(model), "onnx": OnnxStep(model, session(data, torch.get_num_threads()))}
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    with torch.inference_mode():
        for step in steps.values():
            step.start(None, 1)
            for _ in range(20):
                step.step(tokens)
        for _ in range(CALIBRATION_ROUNDS):
            for name, step in steps.items():
                t0 = time.perf_counter()
                for _ in range(CALIBRATION_STEPS):
                    step.step(tokens)
                rounds[name].append((time.perf_counter() - t0) / CALIBRATION_STEPS)
    spent = {name: statistics.median(r) for name, r in rounds.items()}
    table = timings()
    table[shape_key(model)] = spent
    atomic_write(cache_dir() / "engines.json", lambda tmp: Path(tmp).write_text(json.dumps(table, indent=1)))
    return spent


class OnnxStep:
    """A language model's step on ONNX Runtime, any number of rows: the DecoderStep
    protocol of ``StepRunner``. The state stays in numpy between steps; the logits come
    back as a torch view of onnxruntime's output."""

    def __init__(self, model, sess):
        c = model.config
        self.device = torch.device("cpu")
        self.layers, self.hidden, self._vocab = c.layers, c.hidden_size, c.vocab_size
        self.names = cell_kind(c.cell).state_names
        self.sess = sess  # an onnxruntime InferenceSession of the model's step graph
        self.feed: dict[str, np.ndarray] = {}

    @property
    def vocab_size(self) -> int:
        return self._vocab

    def start(self, state, n: int) -> None:
        L, H = self.layers, self.hidden
        parts = [] if state is None else list(state) if isinstance(state, tuple) else [state]
        parts += [torch.zeros(L, 1, H)] * (len(self.names) - len(parts))
        self.feed = {"tokens": np.zeros((n, 1), dtype=np.int64)}
        for name, t in zip(self.names, parts):
            self.feed[name] = np.ascontiguousarray(t.detach().float().cpu().expand(L, n, H).numpy())

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.feed["tokens"][:, 0] = tokens.numpy()
        logits, *state = self.sess.run(None, self.feed)
        for name, s in zip(self.names, state):
            self.feed[name] = s
        return torch.from_numpy(logits[:, -1])

    def reorder(self, index: torch.Tensor) -> None:
        """Row i takes the state of row index[i] (beam search)."""
        idx = index.numpy()
        for name in self.names:
            self.feed[name] = np.ascontiguousarray(self.feed[name][:, idx])
