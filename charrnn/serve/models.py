"""A model as the server sees it: its name, its task, and where its work runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from ..api import Classifier, ConditionalModel, LanguageModel, Seq2SeqModel, SequenceTagger
from .limits import Limits
from .worker import ModelWorker

T = TypeVar("T")

TASKS = {LanguageModel: ("lm", "language model"), Classifier: ("classify", "classifier"),
         SequenceTagger: ("tag", "tagger"), Seq2SeqModel: ("seq2seq", "encoder-decoder"),
         ConditionalModel: ("conditional", "label-conditioned generator")}


class ServedModel:
    def __init__(self, name: str, model: Any, limits: Limits, limiter: anyio.CapacityLimiter, batching: bool = True):
        self.name, self.model, self.limiter = name, model, limiter
        self.task, self.kind_name = TASKS[type(model)]
        self.created = int(time.time())
        # Sampling from a language model is stepped by its own thread; the rest runs whole in the pool.
        self.worker = ModelWorker(model, name, batching, limits.max_rows) if self.task == "lm" else None

    async def run_blocking(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a pool thread (a few at a time, shared by all models)."""
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter)

    def card(self) -> dict[str, Any]:
        """The model as GET /v1/models lists it (OpenAI's fields, then charrnn's)."""
        card: dict[str, Any] = {"id": self.name, "object": "model", "created": self.created, "owned_by": "charrnn",
                                "task": self.task}
        if self.task in ("classify", "conditional"):
            card["labels"] = list(self.model.labels)
        if self.task == "tag":
            card["tags"] = list(self.model.tags)
        return card

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
