"""Training: the one loop for every task (loop.py) and what it is made of: the schedule
and limits (schedule.py), divergence handling (guard.py), the resumable state (state.py),
the optimizer (optim.py), several processes (distributed.py) and the model-size choice
from measured speed (sizing.py). ``train`` is the short way to train a language model."""

from __future__ import annotations

from typing import Any, Callable

from ..checkpoint import Checkpoint, RunDirectory
from ..config import ModelConfig, TrainConfig
from ..tasks.lm import LanguageModelTask
from ..text.prepare import Corpus
from ..text.tokenizer import Tokenizer
from .distributed import DistContext
from .events import Event, TrainResult
from .loop import Trainer
from .schedule import lr_at

__all__ = ["Event", "TrainResult", "Trainer", "lr_at", "train"]


def train(
    train_text: str | None,
    val_text: str | None,
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: RunDirectory,
    on_event: Callable[[Event], None] = lambda e: None,
    tokenizer: Tokenizer | None = None,
    start_time: float | None = None,
    resume: Checkpoint | None = None,
    corpus: Corpus | None = None,
    dist: DistContext | None = None,
    sizing: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a language model on ``train_text``, validating on ``val_text``; return the summary.

    ``corpus`` (from ``text.prepare.prepare_corpus``) gives the token ids instead of the
    texts. ``tokenizer`` defaults to a char tokenizer of the training text. ``start_time``
    (time.perf_counter) is when the time budget started counting; by default, now.
    ``resume`` (a checkpoint loaded with ``resume=True``) continues that run with its
    model config and tokenizer; ``model_config`` and ``tokenizer`` are then ignored.
    """
    if corpus is None:
        if train_text is None or val_text is None:
            raise TypeError("train() needs train_text and val_text, or corpus")
        corpus = Corpus.from_texts(train_text, val_text, resume.tokenizer if resume is not None else tokenizer)
    task = LanguageModelTask(corpus, model_config, train_config)
    return Trainer(task, train_config, run_dir, on_event, start_time, resume, dist, sizing).run()
