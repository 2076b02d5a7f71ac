"""Files every layer writes or finds: atomic writes, where a run's checkpoint is, and
charrnn's cache directory.

Small and dependency-free on purpose: the text layer (tokenizer files), the checkpoint
module and the training state all write through ``atomic_write``, and a tokenizer can be
read from a checkpoint or run directory found by ``resolve_checkpoint``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import CheckpointError

FORMAT = "charrnn"  # safetensors metadata "format" of a checkpoint
FORMAT_VERSION = 1
BEST = "best.safetensors"
LATEST = "latest.safetensors"
METRICS = "metrics.jsonl"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


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


def cache_root() -> Path:
    """charrnn's per-user cache directory: ``$XDG_CACHE_HOME/charrnn``, else
    ``~/.cache/charrnn`` (corpora, token ids, measured speeds, decoding graphs)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "charrnn"


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then move the finished file over ``path`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp (and safetensors) make the file private; give it the mode of a file
        # created the usual way, as the user's umask says.
        os.chmod(tmp, 0o666 & ~_UMASK)
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
