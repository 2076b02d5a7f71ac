"""Checkpoints and run directories: save and load, versioned, self-contained, safe.

A checkpoint is one safetensors file. Its tensors are the model weights (``model.*``) and
any tokenizer tensors (``tokenizer.*``); its string metadata holds the format name and
version, the model and training configs, the tokenizer, the step and the metrics, all as
JSON. A checkpoint that can be resumed also holds the training state: tensors under
``resume.*`` (optimizer moments, RNG states, carried hidden state) and JSON under the
``resume`` metadata key (step, data position, best score, divergence counters). Loading
parses JSON and raw tensors only, so it cannot run code from the file. Files are written
atomically: a temporary file in the same directory, fsync, rename.

A run directory (what ``train --out`` writes) holds::

    best.safetensors     the weights with the lowest validation loss so far
    latest.safetensors   weights and full training state at the last save (resumable)
    metrics.jsonl        one JSON object per progress report and evaluation

Both checkpoints exist from step 0 on, and each is replaced only by a complete file, so a
run directory can be loaded and resumed whenever the process dies. metrics.jsonl is
append-only: each record is one write() of one line (a process killed mid-write leaves at
most a partial last line, which ``read_metrics`` skips); resuming rewrites it, atomically,
without the records after the resumed step.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import __version__
from .config import TrainConfig, from_dict, to_dict
from .errors import CharrnnError, CheckpointError, RunExistsError
from .files import BEST, FORMAT, FORMAT_VERSION, LATEST, METRICS, atomic_write, resolve_checkpoint
from .models import build_model, config_class, model_kind
from .text.tokenizer import Tokenizer
from .text.tokenizers import tokenizer_from_state



@dataclass
class Checkpoint:
    model_config: Any  # the config of the model kind (config.ModelConfig for a language model)
    train_config: TrainConfig
    tokenizer: Tokenizer
    weights: dict[str, torch.Tensor]
    step: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    resume: dict[str, Any] | None = None  # training state, when loaded with resume=True
    resume_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    sizing: dict[str, Any] | None = None  # how the model size was chosen (sizing.SizeChoice), if it was
    task: str = "lm"  # the task that trained it ("lm" for checkpoints from before tasks existed)
    model_kind: str = "lm"  # models.MODEL_KINDS key
    task_state: dict[str, Any] | None = None  # the task's own JSON (a classifier's labels)
    task_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # the task's own tensors (``task.*``)
    charrnn_version: str | None = None  # the charrnn that wrote it (None: not recorded)

    @property
    def params(self) -> int:
        """Parameter count (a tied output matrix counted once), without building the model."""
        tied = getattr(self.model_config, "tie_weights", False)
        return sum(v.numel() for k, v in self.weights.items() if not (tied and k == "decoder.weight"))

    def summary(self) -> dict[str, Any]:
        """What ``charrnn info`` shows: configs, size, step and metrics."""
        return {
            "checkpoint": str(self.path),
            "task": self.task,
            "step": self.step,
            "params": self.params,
            "tokenizer": self.tokenizer.kind,
            "vocab_size": self.tokenizer.vocab_size,
            **({"source_tokenizer": self.tokenizer.source.kind, "source_vocab_size": self.tokenizer.source.vocab_size,
                "source_normalize": getattr(self.tokenizer.source, "normalize", None),
                "target_tokenizer": self.tokenizer.target.kind, "target_vocab_size": self.tokenizer.target.vocab_size,
                "shared_vocab": self.tokenizer.shared} if self.tokenizer.kind == "pair" else {}),
            "model_config": to_dict(self.model_config),
            "train_config": to_dict(self.train_config),
            "metrics": self.metrics,
            "sizing": self.sizing,
            "charrnn_version": self.charrnn_version,
            **({"task_state": self.task_state} if self.task_state is not None else {}),
        }

    def build_model(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        model = build_model(self.model_kind, self.model_config)
        try:
            model.load_state_dict(self.weights, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"{self.path}: weights do not match the stored model config ({first})") from None
        return model.to(device).eval()


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    train_config: TrainConfig,
    tokenizer: Tokenizer,
    step: int = 0,
    metrics: dict[str, Any] | None = None,
    resume: tuple[dict[str, Any], dict[str, torch.Tensor]] | None = None,
    sizing: dict[str, Any] | None = None,
    task: str = "lm",
    task_state: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically; ``resume`` is the training state (JSON, tensors),
    ``sizing`` the record of how the model size was chosen."""
    # Plain, contiguous CPU copies: loads on any device, and tied weights become two
    # ordinary tensors (safetensors refuses shared storage).
    tensors = {f"model.{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    tok_meta, tok_tensors = tokenizer.state()
    tensors.update({f"tokenizer.{k}": v.contiguous() for k, v in tok_tensors.items()})
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "charrnn_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": task,
        "model_kind": model_kind(model),
        "model_config": json.dumps(to_dict(model.config)),
        "train_config": json.dumps(to_dict(train_config)),
        "tokenizer": json.dumps(tok_meta, ensure_ascii=False),
        "step": str(step),
        "metrics": json.dumps(metrics or {}),
    }
    if sizing is not None:
        metadata["sizing"] = json.dumps(sizing)
    if task_state is not None:
        # Tensor values (a conditioned generator's hashes of its training texts) are stored
        # as tensors under ``task.*``, the rest as JSON.
        tensors.update({f"task.{k}": v.detach().to("cpu", copy=True).contiguous()
                        for k, v in task_state.items() if isinstance(v, torch.Tensor)})
        task_state = {k: v for k, v in task_state.items() if not isinstance(v, torch.Tensor)}
        metadata["task_state"] = json.dumps(task_state, ensure_ascii=False)
    if resume is not None:
        meta, extra = resume
        metadata["resume"] = json.dumps(meta)
        tensors.update({f"resume.{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in extra.items()})
    try:
        atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
    except Exception as e:  # safetensors reports I/O failures (e.g. a full disk) as its own error type
        if type(e).__name__ != "SafetensorError":
            raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}") from None


ALIGNMENT = 64  # bytes: what torch's CPU allocator gives every tensor it creates


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` in memory aligned as torch's own allocations are.

    safetensors hands out tensors at their offsets inside the file's buffer, often only
    4-byte aligned. On AVX2 CPUs the matrix kernels then take other code paths and round
    differently in the last bit (a (3, 7) @ (7, 21) product differs unless its input is
    16-byte aligned), so a run resumed from such tensors (the carried state, the
    optimizer moments) drifted from the uninterrupted run; see tests/test_resume.py.
    """
    return t if t.data_ptr() % ALIGNMENT == 0 else t.clone(memory_format=torch.contiguous_format)


def load_checkpoint(path: str | os.PathLike, latest: bool = False, resume: bool = False) -> Checkpoint:
    """Load a checkpoint file or a run directory's best (or latest) checkpoint.

    With ``resume``, also the training state; a checkpoint without one is an error.
    """
    p = resolve_checkpoint(path, latest)
    wanted = ("model.", "tokenizer.", "task.", "resume.") if resume else ("model.", "tokenizer.", "task.")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise CheckpointError(f"{p}: a safetensors file, but not a charrnn checkpoint")
            tensors = {k: _aligned(f.get_tensor(k)) for k in f.keys() if k.startswith(wanted)}
    except CharrnnError:
        raise
    except IsADirectoryError:
        raise CheckpointError(f"{p}: is a directory") from None
    except PermissionError:
        raise CheckpointError(f"{p}: permission denied") from None
    except Exception as e:  # safetensors reports bad files with several exception types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p}: not a readable charrnn checkpoint (truncated, corrupt or another format: {reason})") from None
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise CheckpointError(f"{p}: checkpoint has no valid format version") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format version {version} is newer than this charrnn supports "
            f"({FORMAT_VERSION}); upgrade charrnn"
        )
    try:
        task = metadata.get("task", "lm")
        kind = metadata.get("model_kind", "lm")
        model_config = from_dict(config_class(kind), json.loads(metadata["model_config"]))
        train_config = from_dict(TrainConfig, json.loads(metadata["train_config"]))
        tok_meta = json.loads(metadata["tokenizer"])
        tok_tensors = {k[len("tokenizer."):]: v for k, v in tensors.items() if k.startswith("tokenizer.")}
        tokenizer = tokenizer_from_state(tok_meta, tok_tensors)
        step = int(metadata.get("step", "0"))
        metrics = json.loads(metadata.get("metrics", "{}"))
        resume_meta = json.loads(metadata["resume"]) if resume and "resume" in metadata else None
        sizing = json.loads(metadata["sizing"]) if "sizing" in metadata else None
        if sizing is not None and not isinstance(sizing, dict):
            raise ValueError("sizing is not an object")
        task_state = json.loads(metadata["task_state"]) if "task_state" in metadata else None
        if task_state is not None and not isinstance(task_state, dict):
            raise ValueError("task_state is not an object")
    except CharrnnError as e:
        raise CheckpointError(f"{p}: {e}") from None
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{p}: checkpoint metadata is damaged ({type(e).__name__}: {e})") from None
    if resume and not isinstance(resume_meta, dict):
        raise CheckpointError(f"{p}: holds weights only, no training state to resume from")
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    resume_tensors = {k[len("resume."):]: v for k, v in tensors.items() if k.startswith("resume.")}
    task_tensors = {k[len("task."):]: v for k, v in tensors.items() if k.startswith("task.")}
    return Checkpoint(model_config, train_config, tokenizer, weights, step, metrics, p, resume_meta, resume_tensors,
                      sizing, task, kind, task_state, task_tensors, metadata.get("charrnn_version"))


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file, skipping a partial line left by a crash."""
    records = []
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


class RunDirectory:
    """Where a training run keeps its checkpoints and metrics log.

    A new run refuses a directory that holds one unless ``overwrite``; ``resume`` opens
    an existing run instead (its latest checkpoint must exist) and keeps its log.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, resume: bool = False):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path}: exists and is not a directory")
        existing = [n for n in (BEST, LATEST) if (self.path / n).exists()]
        if resume:
            if not (self.path / LATEST).is_file():
                raise CheckpointError(f"{self.path}: no training run to resume here (no {LATEST})")
        elif existing and not overwrite:
            raise RunExistsError(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / METRICS
            with open(probe, "a" if resume else "w", encoding="utf-8"):
                pass  # a new run starts a fresh log (and this fails early if the directory is not writable)
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot write there ({e.strerror or e})") from None
        self._remove_stale_temporaries()
        if not resume:
            for n in existing:
                (self.path / n).unlink()

    def _remove_stale_temporaries(self) -> None:
        # A process killed while writing leaves its temporary file behind (see atomic_write).
        for name in (BEST, LATEST, METRICS):
            for tmp in self.path.glob(f".{name}.*.tmp"):
                try:
                    tmp.unlink()
                except OSError:
                    pass

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def latest(self) -> Path:
        return self.path / LATEST

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    def log(self, record: dict[str, Any]) -> None:
        """Append one record as one line with a single write() call."""
        data = (json.dumps(record) + "\n").encode("utf-8")
        try:
            fd = os.open(self.metrics, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as e:
            raise CheckpointError(f"cannot write {self.metrics}: {e.strerror or e}") from None

    def truncate_log(self, step: int) -> None:
        """Keep the records up to ``step`` (a resumed run replays what came after)."""
        keep = [r for r in read_metrics(self.metrics) if not isinstance(r.get("step"), int) or r["step"] <= step]
        text = "".join(json.dumps(r) + "\n" for r in keep)

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)

        try:
            atomic_write(self.metrics, write)
        except OSError as e:
            raise CheckpointError(f"cannot write {self.metrics}: {e.strerror or e}") from None

    def save(self, which: str, model, train_config, tokenizer, step, metrics, resume=None, sizing=None,
             task: str = "lm", task_state: dict[str, Any] | None = None) -> Path:
        path = self.best if which == "best" else self.latest
        save_checkpoint(path, model, train_config, tokenizer, step, metrics, resume, sizing, task, task_state)
        return path
