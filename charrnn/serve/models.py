"""A model as the server sees it: its name, its task, and where its work runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from ..api import Model
from .limits import Limits
from .worker import ModelWorker

T = TypeVar("T")


class ServedModel:
    def __init__(self, name: str, model: Model, limits: Limits, limiter: anyio.CapacityLimiter, batching: bool = True):
        self.name, self.model, self.limiter = name, model, limiter
        self.spec = model.spec  # its task's declaration (tasks/registry.py)
        self.task, self.kind_name = model.task, model.spec.title
        self.created = int(time.time())
        # Sampling from a language model is stepped by its own thread; the rest runs whole in the pool.
        self.worker = ModelWorker(model, name, batching, limits.max_rows) if model.stepped else None

    async def run_blocking(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a pool thread (a few at a time, shared by all models)."""
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter)

    def card(self) -> dict[str, Any]:
        """The model as GET /v1/models lists it (OpenAI's fields, then charrnn's)."""
        card: dict[str, Any] = {"id": self.name, "object": "model", "created": self.created, "owned_by": "charrnn",
                                "task": self.task, "title": self.kind_name, "endpoint": f"/v1/{self.spec.serves}",
                                "conditioned": self.model.conditioned, "takes_tokens": self.model.takes_tokens,
                                "predict_options": list(self.spec.predict_options)}
        for field in ("labels", "tags"):
            if isinstance(getattr(self.model, field, None), list):
                card[field] = list(getattr(self.model, field))
        return card

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
