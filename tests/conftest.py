"""Shared fixtures. Tests run on the CPU with one thread: tiny models are fastest that way,
and results do not depend on how many cores the machine has."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
SHARED_CORPORA = ROOT.parent / "shared" / "corpora"

# A few hundred characters of made-up text, repetitive enough for a tiny model to learn.
TINY_TEXT = (
    "the cat sat on the mat. the dog sat on the log.\n"
    "a cat and a dog met on a mat by a log.\n"
) * 12


@pytest.fixture
def tiny_text() -> str:
    return TINY_TEXT


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write into the working tree, never use the user's cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CHARRNN_CACHE", raising=False)
    if SHARED_CORPORA.is_dir():
        monkeypatch.setenv("CHARRNN_CORPORA", str(SHARED_CORPORA))
    else:
        monkeypatch.delenv("CHARRNN_CORPORA", raising=False)


def tiny_model_config(cell: str = "lstm", vocab_size: int = 7, **kw):
    from charrnn.config import ModelConfig

    args = dict(vocab_size=vocab_size, cell=cell, layers=2, hidden_size=5, embedding_dim=3, dropout=0.0)
    args.update(kw)
    return ModelConfig(**args)


CELLS = ["lstm", "gru", "rnn"]
# The cells trained by a parallel scan (models/minrnn.py): no torch module to compare with.
SCAN_CELLS = ["mingru", "minlstm"]
