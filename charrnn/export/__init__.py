"""ONNX export: a checkpoint as ONNX graphs plus a JSON file that says how to use them.

``export_checkpoint(run, "out/model.onnx")`` writes, in out/:

    model.onnx            the main graph: the step (lm, conditional), forward (classifier),
                          emissions (tagger) or encoder (seq2seq)
    model.<role>.onnx     a second graph: "start" (conditional), "decoder" (seq2seq)
    model.json            tokenizer(s), labels / tags / CRF scores, special ids, the model
                          config, every graph's file, input and output names and shapes
    model*.spm.model      the SentencePiece model of a bpe / unigram / word tokenizer
                          ("model.spm.model"; a seq2seq: "model.source.spm.model", ...)

The graphs are traced by torch's TorchScript-based exporter (``dynamo=False``): in torch
2.13 the default torch.export-based exporter took 19 s per graph against 1.4 s, and fixed
the time axis of the LM's logits to its example length although T was declared dynamic
(onnxruntime then warns at every other length); the TorchScript one maps nn.LSTM/GRU/RNN
to ONNX's LSTM/GRU/RNN operators and keeps every declared axis dynamic.

Each graph is checked by onnxruntime against PyTorch before anything is written (two
sets of sizes: the traced ones and others, so the dynamic axes are exercised). All files
are written under temporary names and renamed only when every one is complete.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..checkpoint import load_checkpoint
from ..config import to_dict
from ..errors import CharrnnError, ConfigError
from ..tasks.registry import get_task
from .graphs import Graph
from .vocab import SideFiles

FORMAT = "charrnn-onnx"
FORMAT_VERSION = 1
OPSET = 17  # ONNX opset: LSTM/GRU/RNN as single operators; onnxruntime 1.14+ runs it
TOLERANCE = 1e-4  # the largest |onnxruntime - PyTorch| accepted on any output
TRACE_SIZES = {"N": 2, "T": 3, "S": 4, "M": 3, "C": 5}
CHECK_SIZES = {"N": 3, "T": 7, "S": 6, "M": 5, "C": 2}
INSTALL = "ONNX export needs onnx and onnxruntime: pip install 'charrnn[onnx]'"


@dataclass
class ExportResult:
    files: list[Path]  # every file written, the main graph first
    task: str
    kind: str
    graphs: dict[str, Path]  # role -> graph file
    max_diff: float | None  # largest |onnxruntime - PyTorch| over every output checked


def require_onnx() -> None:
    """Raise a CharrnnError naming the extra when onnx or onnxruntime is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise CharrnnError(INSTALL) from None


def output_names(output: str | os.PathLike, roles: list[str]) -> dict[str, Path]:
    """Where each graph of ``roles`` goes: the first at ``output``, the others beside it
    as <stem>.<role>.onnx."""
    out = Path(output)
    if out.suffix != ".onnx":
        raise ConfigError(f"{out}: the output file name must end in .onnx (e.g. model.onnx)")
    return {role: out if i == 0 else out.with_name(f"{out.stem}.{role}.onnx") for i, role in enumerate(roles)}


def export_checkpoint(checkpoint: str | os.PathLike, output: str | os.PathLike, latest: bool = False,
                      verify: bool = True) -> ExportResult:
    """Export the model of ``checkpoint`` (a run directory or checkpoint file) as ONNX
    graphs at ``output`` (a name ending in .onnx) with its JSON beside it."""
    require_onnx()
    ck = load_checkpoint(checkpoint, latest=latest)
    spec = get_task(ck.task)
    if spec.export is None:
        raise CharrnnError(f"{ck.path}: a {spec.title} (--task {spec.name}) has no ONNX export")
    model = ck.build_model("cpu")
    stem = Path(output).stem
    sides = SideFiles({"text": f"{stem}.spm.model", "source": f"{stem}.source.spm.model",
                       "target": f"{stem}.target.spm.model"})
    graphs, task_part = spec.load("export")(model, ck, sides)
    spm = sides.files
    paths = output_names(output, [g.role for g in graphs])
    main = paths[graphs[0].role]
    blobs: dict[Path, bytes] = {}
    worst: float | None = None
    for g in graphs:
        blobs[paths[g.role]] = trace(g)
        if verify:
            diff = check(g, blobs[paths[g.role]])
            worst = diff if worst is None else max(worst, diff)
    meta: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "charrnn_version": __version__,
        "exported_from": str(ck.path), "step": ck.step, "task": ck.task, "model_kind": ck.model_kind,
        "model_config": to_dict(model.config), "opset": OPSET,
        "graphs": {g.role: {"file": paths[g.role].name, "doc": g.doc, "inputs": [p.describe() for p in g.inputs],
                            "outputs": [p.describe() for p in g.outputs]} for g in graphs},
        **task_part,
        "verified": None if worst is None else {"max_abs_diff": worst, "tolerance": TOLERANCE},
    }
    for name, data in spm.items():
        blobs[main.with_name(name)] = data
    blobs[main.with_name(f"{stem}.json")] = (json.dumps(meta, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    write_all(blobs)
    return ExportResult(list(blobs), ck.task, ck.model_kind, paths, worst)


def trace(graph: Graph) -> bytes:
    """The ONNX bytes of ``graph``, traced at TRACE_SIZES with its axes left dynamic."""
    module = graph.module.eval()  # the wrapper too: the exporter traces dropout as the module's mode says
    example = graph.example(TRACE_SIZES)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of the torch.export one (see
        # the module docstring), and tracing warns about the models' Python-side checks
        # of lengths, which only run at trace time.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(example.values()), buf, input_names=[p.name for p in graph.inputs],
                          output_names=[p.name for p in graph.outputs], dynamic_axes=graph.dynamic_axes(),
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return buf.getvalue()


def session(data: bytes | str | os.PathLike, threads: int = 1):
    """An onnxruntime CPU session over a graph (bytes or a file)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = data if isinstance(data, bytes) else str(data)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def check(graph: Graph, data: bytes) -> float:
    """The largest |onnxruntime - PyTorch| over every output of ``graph``, at the traced
    sizes and at others; a CharrnnError when it exceeds TOLERANCE."""
    sess = session(data)
    worst = 0.0
    for seed, sizes in enumerate((TRACE_SIZES, CHECK_SIZES)):
        example = graph.example(sizes, seed=seed + 1)
        with torch.no_grad():
            want = graph.module(*example.values())
        want = (want,) if isinstance(want, torch.Tensor) else tuple(want)
        got = sess.run(None, {k: v.numpy() for k, v in example.items()})
        for port, w, o in zip(graph.outputs, want, got):
            if tuple(o.shape) != tuple(w.shape):
                raise CharrnnError(f"the exported {graph.role} graph gives {port.name} of shape {tuple(o.shape)}, "
                                   f"PyTorch {tuple(w.shape)}: not written")
            worst = max(worst, float((torch.from_numpy(o) - w).abs().max()) if w.numel() else 0.0)
    if worst > TOLERANCE:
        raise CharrnnError(f"the exported {graph.role} graph differs from PyTorch by {worst:.2g} "
                           f"(more than {TOLERANCE:g}): not written")
    return worst


def write_all(blobs: dict[Path, bytes]) -> None:
    """Write every file under a temporary name in its directory, then rename them all; on
    any failure remove the temporaries and leave existing files as they were."""
    temps: list[tuple[str, Path]] = []
    path = next(iter(blobs))
    try:
        for path, data in blobs.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
        for tmp, path in temps:
            os.replace(tmp, path)
    except OSError as e:
        for tmp, _ in temps:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise CharrnnError(f"cannot write {path}: {e.strerror or e}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
