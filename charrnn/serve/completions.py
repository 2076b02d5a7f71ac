"""``POST /v1/completions``: from an OpenAI request to charrnn's SampleConfig, the run,
and the response (one JSON object, or server-sent events ending with ``data: [DONE]``).

Sampling from a language model goes through the model's worker thread, token by token
(``worker``); beam search and label-conditioned generation run whole in the thread pool
and stream their text as one piece per choice.

finish_reason is OpenAI's ("stop" or "length"); ``charrnn_finish_reason`` keeps the
engine's own ("stop", "end", "length", "time", "blocked").
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..config import SampleConfig
from ..decoding import Generation
from ..errors import ConfigError
from .batching import Job
from .errors import APIError, error_body
from .limits import Limits
from .models import ServedModel
from .schemas import DEFAULT_MAX_TOKENS, CompletionRequest
from .worker import Mailbox

OPENAI_REASON = {"stop": "stop", "end": "stop", "blocked": "stop", "length": "length", "time": "length"}
MAX_STOPS = 16
DISCONNECT_CHECK = 0.2  # seconds between checks that the client is still there
log = logging.getLogger("charrnn.serve")
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p")


def _bad(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param)


def _refuse_unsupported(req: CompletionRequest) -> None:
    """OpenAI fields charrnn cannot honour are refused unless they ask for nothing."""
    if req.logprobs is not None:
        raise _bad("logprobs are not supported; each choice carries its total 'logprob' instead", "logprobs")
    if req.best_of not in (None, req.n):
        raise _bad("best_of is not supported: use beam (beam search) to rank hypotheses", "best_of")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name) not in (None, 0, 0.0):
            raise _bad(f"{name} is not supported: use repetition_penalty or no_repeat_ngram", name)
    if req.logit_bias:
        raise _bad("logit_bias is not supported", "logit_bias")
    if req.suffix:
        raise _bad("suffix (insertion) is not supported by a left-to-right model", "suffix")


def sample_config(req: CompletionRequest, limits: Limits, length: int | None) -> SampleConfig:
    """The SampleConfig of a request (``length`` in tokens, already checked)."""
    _refuse_unsupported(req)
    stops = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    if len(stops) > MAX_STOPS:
        raise _bad(f"at most {MAX_STOPS} stop strings, not {len(stops)}", "stop")
    if any(s == "" for s in stops):
        raise _bad("a stop string cannot be empty", "stop")
    common = dict(length=length, max_chars=req.max_chars, stop=stops, max_time=limits.timeout,
                  repetition_penalty=req.repetition_penalty, no_repeat_ngram=req.no_repeat_ngram)
    try:
        if req.beam:
            if req.n > req.beam:
                raise _bad(f"n ({req.n}) cannot exceed beam ({req.beam})", "n")
            return SampleConfig.build(beam=req.beam, num_return=req.n, length_penalty=req.length_penalty,
                                      **{f: getattr(req, f) for f in SAMPLING_FIELDS}, **common)
        greedy = req.temperature == 0
        temperature = SampleConfig.temperature if req.temperature in (None, 0) else req.temperature
        top_p = None if req.top_p == 1 else req.top_p
        return SampleConfig(temperature=temperature, greedy=greedy, top_k=req.top_k, top_p=top_p, min_p=req.min_p,
                            seed=req.seed, num_samples=req.n, **common)
    except ConfigError as e:
        raise _bad(str(e), getattr(e, "field", None)) from None


def _choice(index: int, text: str, gen: Generation | None) -> dict[str, Any]:
    out: dict[str, Any] = {"text": text, "index": index, "logprobs": None,
                           "finish_reason": OPENAI_REASON.get(gen.finish_reason, "stop") if gen else None}
    if gen is not None:
        out["charrnn_finish_reason"] = gen.finish_reason
        out["logprob"] = gen.logprob
    return out


class Completion:
    """One completion request against one served model."""

    def __init__(self, request: Request, req: CompletionRequest, served: ServedModel, limits: Limits):
        self.request, self.req, self.served, self.limits = request, req, served, limits
        self.prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        self.id = "cmpl-" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.warnings: list[str] = []
        self._check()

    # ------------------------------------------------------------ validation
    def _check(self) -> None:
        req, served, limits = self.req, self.served, self.limits
        if served.spec.serves != "completions":
            raise _bad(f"model {served.name!r} is a {served.kind_name}: it does not complete text; POST /v1/predict "
                       f"uses it", "model")
        if not self.prompts:
            raise _bad("prompt is an empty list", "prompt")
        for p in self.prompts:
            if len(p) > limits.max_prompt_chars:
                raise APIError(400, f"a prompt has {len(p):,} characters, more than this server's limit of "
                                    f"{limits.max_prompt_chars:,}", param="prompt", code="prompt_too_long")
        if req.n * len(self.prompts) > limits.max_choices:
            raise _bad(f"n x prompts = {req.n * len(self.prompts)} choices, more than this server's limit of "
                       f"{limits.max_choices}", "n")
        conditional = served.model.conditioned
        if conditional:
            labels = served.model.labels
            if req.label is None:
                raise _bad(f"model {served.name!r} generates sequences of a label: give 'label', one of "
                           f"{', '.join(labels)}", "label")
            if req.label not in labels:
                raise _bad(f"unknown label {req.label!r}; the labels are: {', '.join(labels)}", "label")
        elif req.label is not None:
            raise _bad(f"label applies to a label-conditioned model; {served.name!r} is a {served.kind_name}", "label")
        given = req.max_tokens if "max_tokens" in req.model_fields_set else None
        if given is not None and given > limits.max_tokens:
            raise _bad(f"max_tokens is {given:,}, more than this server's limit of {limits.max_tokens:,}",
                       "max_tokens")
        if conditional:  # a sequence ends at its EOS; the model knows how long they get
            length = given if given is not None else min(served.model.default_limit, limits.max_tokens)
        else:
            length = given if given is not None else (req.max_tokens if req.max_tokens is not None else
                                                      DEFAULT_MAX_TOKENS)
        self.config = sample_config(req, limits, length)
        unknown = sum(served.model.count_unknown(p) for p in self.prompts)
        if unknown:
            self.warnings.append(f"the prompt has {unknown} character(s) the model never saw in training; it reads "
                                 f"them as unknown")

    # ------------------------------------------------------------ running
    @property
    def n(self) -> int:
        return self.req.n

    def prompt_tokens(self) -> int:
        return sum(self.served.model.token_count(p) for p in self.prompts)

    def _blocking(self) -> list[Generation]:
        """Beam search or label-conditioned generation, whole (in a pool thread)."""
        m, req = self.served.model, self.req
        out: list[Generation] = []
        for p in self.prompts:
            if m.conditioned:
                out += m.sample(req.label, n=req.n, prime=p.strip("\r\n"), config=self.config)
            else:
                out += m.sample(p, self.config)
        return out

    def start(self) -> None:
        """Hand a sampling request's jobs to the model's worker (before any response is
        sent, so a busy model is still a 429)."""
        self._jobs: list[Job] = []
        if self.served.model.conditioned or self.config.beam:
            return
        self._mailbox = Mailbox(asyncio.get_running_loop())
        tok = self.served.model.tokenizer
        self._jobs = [Job(tok.encode(p), self.config, self._mailbox.poster(k)) for k, p in enumerate(self.prompts)]
        self.served.worker.submit(self._jobs)

    async def events(self) -> AsyncIterator[list[tuple[str, int, Any]]]:
        """Lists of ("text", index, piece) as the text comes, and ("done", index,
        Generation) once per choice: all that arrived since the last list."""
        if not self._jobs:
            gens = await self.served.run_blocking(self._blocking)
            yield [e for i, g in enumerate(gens) for e in ((("text", i, g.text),) if g.text else ()) + (("done", i, g),)]
            return
        mailbox, jobs = self._mailbox, self._jobs
        waiting = len(jobs)
        checked = time.monotonic()
        try:
            while waiting:
                posted = await mailbox.take(timeout=DISCONNECT_CHECK)
                # uvicorn drops what is sent to a client that went away without telling
                # the app, so ask now and then whether the client is still there.
                if time.monotonic() - checked >= DISCONNECT_CHECK:
                    if await self.request.is_disconnected():
                        return
                    checked = time.monotonic()
                if not posted:
                    continue
                out = []
                for k, kind, payload in posted:
                    if kind == "text":
                        out.extend(("text", k * self.n + row, piece) for row, piece in payload)
                    elif kind == "done":
                        waiting -= 1
                        out.extend(("done", k * self.n + row, g) for row, g in enumerate(payload))
                    else:
                        raise payload
                yield out
        finally:
            for job in jobs:  # a client that went away stops its generation
                job.cancel()

    async def respond(self):
        self.start()
        if self.req.stream:
            return StreamingResponse(self._sse(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        gens: dict[int, Generation] = {}
        async for events in self.events():
            gens.update((index, g) for kind, index, g in events if kind == "done")
        if len(gens) < self.n * len(self.prompts):  # the client went away: nobody to answer
            return JSONResponse({}, status_code=499)
        choices = []
        for i in sorted(gens):
            head = self.prompts[i // self.n] if self.req.echo else ""
            choices.append(_choice(i, head + gens[i].text, gens[i]))
        body = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.served.name,
                "choices": choices, "usage": self._usage(gens)}
        if self.warnings:
            body["warnings"] = self.warnings
        return JSONResponse(body)

    def _usage(self, gens: dict[int, Generation]) -> dict[str, int]:
        prompt = self.prompt_tokens()  # each prompt is read once, whatever n is
        completion = sum(len(g.tokens) for g in gens.values())
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.served.name,
                "choices": choices, **extra}
        return "data: " + json.dumps(body, ensure_ascii=False) + "\n\n"

    async def _sse(self) -> AsyncIterator[str]:
        gens: dict[int, Generation] = {}
        try:
            if self.req.echo:
                for i in range(self.n * len(self.prompts)):
                    yield self._chunk([_choice(i, self.prompts[i // self.n], None)])
            async for events in self.events():
                # A chunk per piece (token by token, as OpenAI streams), all that came
                # since the last wake-up in one write.
                out = []
                for kind, index, payload in events:
                    if kind == "text":
                        out.append(self._chunk([_choice(index, payload, None)]))
                    else:
                        gens[index] = payload
                        out.append(self._chunk([_choice(index, "", payload)]))
                yield "".join(out)
            if self.req.stream_options is not None and self.req.stream_options.include_usage:
                yield self._chunk([], usage=self._usage(gens))
        except Exception as e:  # noqa: BLE001 - the status line is sent: report in the stream
            log.exception("error while streaming")
            yield "data: " + json.dumps(error_body(f"internal error: {type(e).__name__}", type="server_error")) + "\n\n"
        yield "data: [DONE]\n\n"
