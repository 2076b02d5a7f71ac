"""Generation off the event loop: one worker thread per language model.

The event loop never runs the model. A completion request becomes one ``Job`` per
prompt, handed to the model's worker thread; the worker advances every active job by
one step at a time (``batching.Batch``, or ``batching.RoundRobin`` without batching),
so a long request never holds up a short one, and posts each job's new text back to the
request's ``Mailbox``. A job whose client went away is marked cancelled and leaves at
the next step.

Work that is not step by step (beam search, label-conditioned generation, predictions)
runs in the thread pool instead (``run_blocking``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from .batching import Batch, Job, RoundRobin

log = logging.getLogger("charrnn.serve")


class Busy(Exception):
    """The model already generates as many rows as the server allows."""


class ModelWorker:
    """The thread that generates for one language model."""

    def __init__(self, lm, name: str, batching: bool = True, max_rows: int = 256):
        self.lm, self.name, self.batching, self.max_rows = lm, name, batching, max_rows
        self._cond = threading.Condition()
        self._incoming: list[Job] = []
        self._pending_rows = 0
        self._active_rows = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, jobs: list[Job]) -> None:
        """Queue ``jobs`` (all of one request, so they are admitted together); raise Busy
        when they would take the model past ``max_rows`` rows."""
        rows = sum(j.config.num_samples for j in jobs)
        with self._cond:
            if self._closed:
                raise Busy("the server is shutting down")
            if self._active_rows + self._pending_rows + rows > self.max_rows:
                raise Busy(f"model {self.name!r} is generating {self._active_rows + self._pending_rows} rows, the "
                           f"most this server takes is {self.max_rows}: try again shortly")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"charrnn-serve-{self.name}", daemon=True)
                self._thread.start()
            self._incoming.extend(jobs)
            self._pending_rows += rows
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        engine = Batch(self.lm) if self.batching else RoundRobin(self.lm)
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._incoming and not len(engine) and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        engine.fail(Busy("the server is shutting down"))
                        for job in self._incoming:
                            job.post(("error", Busy("the server is shutting down")))
                        return
                    new, self._incoming = self._incoming, []
                    self._pending_rows = 0
                for job in new:
                    if job.cancelled:
                        continue
                    try:
                        engine.add(job)
                    except Exception as e:  # noqa: BLE001 - a bug in one job ends that job only
                        log.exception("generation failed to start")
                        job.post(("error", e))
                try:
                    if len(engine):
                        engine.step()
                except Exception as e:  # noqa: BLE001 - reported to every request of the batch
                    log.exception("generation failed")
                    engine.fail(e)
                with self._cond:
                    self._active_rows = engine.rows


class Mailbox:
    """Where a request's jobs post their events from the worker thread.

    The event loop is woken once per batch of posts, not once per token: a post arms one
    wake-up (``call_soon_threadsafe``) only when none is pending, and ``take`` collects
    everything posted since. A request that reads slower than its model generates thus
    gets bigger pieces rather than a growing backlog of callbacks.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.items: deque[tuple] = deque()
        self.ready = asyncio.Event()
        self._armed = False
        self._lock = threading.Lock()

    def poster(self, tag: Any) -> Callable[[tuple], None]:
        """A ``post`` for one Job: its events arrive as (tag, *event)."""

        def post(event: tuple) -> None:
            self.items.append((tag, *event))
            with self._lock:
                if self._armed:
                    return
                self._armed = True
            try:
                self.loop.call_soon_threadsafe(self.ready.set)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass

        return post

    async def take(self, timeout: float) -> list[tuple]:
        """Everything posted since the last take (waiting up to ``timeout`` seconds for
        something; an empty list when nothing came)."""
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except asyncio.TimeoutError:
            return []
        self.ready.clear()
        with self._lock:
            self._armed = False
        out = []
        while self.items:
            out.append(self.items.popleft())
        return out
