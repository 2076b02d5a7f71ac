"""Checkpoints and run directories: save and load, versioned, self-contained, safe.

A checkpoint is one safetensors file. Its tensors are the model weights (``model.*``) and
any tokenizer tensors (``tokenizer.*``); its string metadata holds the format name and
version, the model and training configs, the tokenizer, the step and the metrics, all as
JSON. Loading parses JSON and raw tensors only, so it cannot run code from the file.
Files are written atomically: a temporary file in the same directory, fsync, rename.

A run directory (what ``train --out`` writes) holds::

    best.safetensors     the checkpoint with the lowest validation loss so far
    latest.safetensors   the checkpoint at the last evaluation
    metrics.jsonl        one JSON object per progress report and evaluation
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import __version__
from .config import ModelConfig, TrainConfig, from_dict, to_dict
from .errors import CharrnnError, CheckpointError, RunExistsError
from .model import RNNLanguageModel
from .tokenizers import Tokenizer, tokenizer_from_state

FORMAT = "charrnn"
FORMAT_VERSION = 1
BEST = "best.safetensors"
LATEST = "latest.safetensors"
METRICS = "metrics.jsonl"


@dataclass
class Checkpoint:
    model_config: ModelConfig
    train_config: TrainConfig
    tokenizer: Tokenizer
    weights: dict[str, torch.Tensor]
    step: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def params(self) -> int:
        """Parameter count (a tied output matrix counted once), without building the model."""
        tied = self.model_config.tie_weights
        return sum(v.numel() for k, v in self.weights.items() if not (tied and k == "decoder.weight"))

    def summary(self) -> dict[str, Any]:
        """What ``charrnn info`` shows: configs, size, step and metrics."""
        return {
            "checkpoint": str(self.path),
            "step": self.step,
            "params": self.params,
            "tokenizer": self.tokenizer.kind,
            "vocab_size": self.tokenizer.vocab_size,
            "model_config": to_dict(self.model_config),
            "train_config": to_dict(self.train_config),
            "metrics": self.metrics,
        }

    def build_model(self, device: torch.device | str = "cpu") -> RNNLanguageModel:
        model = RNNLanguageModel(self.model_config)
        try:
            model.load_state_dict(self.weights, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"{self.path}: weights do not match the stored model config ({first})") from None
        return model.to(device).eval()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then move the finished file over ``path`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def save_checkpoint(
    path: str | os.PathLike,
    model: RNNLanguageModel,
    train_config: TrainConfig,
    tokenizer: Tokenizer,
    step: int = 0,
    metrics: dict[str, Any] | None = None,
) -> None:
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
        "model_config": json.dumps(to_dict(model.config)),
        "train_config": json.dumps(to_dict(train_config)),
        "tokenizer": json.dumps(tok_meta, ensure_ascii=False),
        "step": str(step),
        "metrics": json.dumps(metrics or {}),
    }
    try:
        atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None


def resolve_checkpoint(path: str | os.PathLike, latest: bool = False) -> Path:
    """A run directory means its best (or latest) checkpoint; a file means itself."""
    p = Path(path)
    if p.is_dir():
        names = [LATEST, BEST] if latest else [BEST, LATEST]
        for name in names:
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p}: no checkpoint in this directory (expected {BEST} from charrnn train --out)")
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file or run directory")
    return p


def load_checkpoint(path: str | os.PathLike, latest: bool = False) -> Checkpoint:
    p = resolve_checkpoint(path, latest)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise CheckpointError(f"{p}: a safetensors file, but not a charrnn checkpoint")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
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
        model_config = from_dict(ModelConfig, json.loads(metadata["model_config"]))
        train_config = from_dict(TrainConfig, json.loads(metadata["train_config"]))
        tok_meta = json.loads(metadata["tokenizer"])
        tok_tensors = {k[len("tokenizer."):]: v for k, v in tensors.items() if k.startswith("tokenizer.")}
        tokenizer = tokenizer_from_state(tok_meta, tok_tensors)
        step = int(metadata.get("step", "0"))
        metrics = json.loads(metadata.get("metrics", "{}"))
    except CharrnnError as e:
        raise CheckpointError(f"{p}: {e}") from None
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{p}: checkpoint metadata is damaged ({type(e).__name__}: {e})") from None
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return Checkpoint(model_config, train_config, tokenizer, weights, step, metrics, p)


class RunDirectory:
    """Where a training run keeps its checkpoints and metrics log."""

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path}: exists and is not a directory")
        existing = [n for n in (BEST, LATEST) if (self.path / n).exists()]
        if existing and not overwrite:
            raise RunExistsError(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / METRICS
            with open(probe, "w", encoding="utf-8"):
                pass  # start a fresh log (and fail early if the directory is not writable)
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot write there ({e.strerror or e})") from None
        for n in existing:
            (self.path / n).unlink()

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def latest(self) -> Path:
        return self.path / LATEST

    def log(self, record: dict[str, Any]) -> None:
        try:
            with open(self.path / METRICS, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise CheckpointError(f"cannot write {self.path / METRICS}: {e.strerror or e}") from None

    def save(self, which: str, model, train_config, tokenizer, step, metrics) -> Path:
        path = self.best if which == "best" else self.latest
        save_checkpoint(path, model, train_config, tokenizer, step, metrics)
        return path
