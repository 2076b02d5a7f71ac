"""Named public corpora: the registry in corpora/registry.json, mirrors, cache, download.

``resolve_corpus("tinyshakespeare")`` returns a local path to a verified copy, looking in
the ``CHARRNN_CORPORA`` mirror directory, then the user cache, then downloading.
An argument that is an existing path (or ``-``) is returned unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorpusError
from ..files import cache_root

REGISTRY_FILE = Path(__file__).with_name("registry.json")  # a link to corpora/registry.json


@dataclass(frozen=True)
class CorpusEntry:
    name: str
    path: str
    url: str
    sha256: str
    size: int
    license: str
    description: str = ""


def registry() -> dict[str, CorpusEntry]:
    with open(REGISTRY_FILE, encoding="utf-8") as f:
        raw = json.load(f)
    return {name: CorpusEntry(name=name, **fields) for name, fields in raw.items()}


def cache_dir() -> Path:
    return cache_root() / "corpora"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path, entry: CorpusEntry) -> Path:
    digest = sha256_of(path)
    if digest != entry.sha256:
        raise CorpusError(
            f"{path}: sha256 {digest[:16]}... does not match the registry's {entry.sha256[:16]}... "
            f"for {entry.name}; delete or replace the file"
        )
    return path


def _download(entry: CorpusEntry, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.download")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(entry.url, timeout=30) as resp, open(tmp, "wb") as out:
            for block in iter(lambda: resp.read(1 << 16), b""):
                h.update(block)
                out.write(block)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        mirror = os.environ.get("CHARRNN_CORPORA")
        where = f"{dest}" + (f" or {Path(mirror) / entry.path}" if mirror else "")
        raise CorpusError(
            f"cannot download {entry.name} from {entry.url} ({reason}); download it yourself and "
            f"save it as {where}, or set CHARRNN_CORPORA to a directory that holds {entry.path}"
        ) from None
    if h.hexdigest() != entry.sha256:
        tmp.unlink(missing_ok=True)
        raise CorpusError(f"downloaded {entry.name} from {entry.url}, but its sha256 does not match the registry")
    os.replace(tmp, dest)
    return dest


def resolve_corpus(name_or_path: str, download: bool = True) -> str:
    """A local path for a corpus argument: an existing path, ``-``, or a registry name."""
    if name_or_path == "-" or Path(name_or_path).exists():
        return name_or_path
    entries = registry()
    entry = entries.get(name_or_path)
    if entry is None:
        raise CorpusError(
            f"{name_or_path}: no such file, and not a registered corpus name "
            f"({', '.join(sorted(entries))})"
        )
    mirror = os.environ.get("CHARRNN_CORPORA")
    if mirror:
        candidate = Path(mirror) / entry.path
        if candidate.is_file():
            return str(_verified(candidate, entry))
    cached = cache_dir() / entry.path
    if cached.is_file():
        return str(_verified(cached, entry))
    if not download:
        raise CorpusError(f"{entry.name} is not downloaded yet (expected at {cached})")
    return str(_download(entry, cached))
