"""``POST /v1/predict``: a list of inputs in, a prediction with probabilities per input out.

    classifier        {"label", "probability", "top": [{"label", "probability"}, ...]}
    tagger            {"tokens", "tags", "probabilities"}    (a string input is split at whitespace)
    encoder-decoder   {"output", "score", "n_best": [{"output", "score"}, ...]}

The work runs in the thread pool; the answer keeps the order of the inputs.
"""

from __future__ import annotations

from typing import Any

from .errors import APIError
from .limits import Limits
from .models import ServedModel
from .schemas import PredictRequest


def _bad(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param)


def check(req: PredictRequest, served: ServedModel, limits: Limits) -> list:
    """The inputs of a valid request (refusing options that do not fit the model)."""
    if served.task in ("lm", "conditional"):
        raise _bad(f"model {served.name!r} is a {served.kind_name}: POST /v1/completions generates with it", "model")
    inputs = [req.input] if isinstance(req.input, str) else list(req.input)
    if len(inputs) > limits.max_inputs:
        raise _bad(f"{len(inputs):,} inputs, more than this server's limit of {limits.max_inputs:,}", "input")
    for x in inputs:
        size = len(x) if isinstance(x, str) else sum(len(t) for t in x)
        if size > limits.max_prompt_chars:
            raise APIError(400, f"an input has {size:,} characters, more than this server's limit of "
                                f"{limits.max_prompt_chars:,}", param="input", code="input_too_long")
    if served.task != "tag" and any(not isinstance(x, str) for x in inputs):
        raise _bad(f"a {served.kind_name} takes texts: give each input as a string", "input")
    if served.task != "classify" and "top_k" in req.model_fields_set:
        raise _bad("top_k applies to a classifier", "top_k")
    if served.task != "seq2seq" and req.model_fields_set & {"beam", "n_best", "length_penalty"}:
        raise _bad("beam, n_best and length_penalty apply to an encoder-decoder", "beam")
    if served.task == "seq2seq":
        if req.n_best > 1 and not req.beam:
            raise _bad(f"n_best {req.n_best} needs a beam search (beam {req.n_best} or wider)", "n_best")
        if req.beam and req.n_best > req.beam:
            raise _bad(f"n_best ({req.n_best}) cannot exceed beam ({req.beam})", "n_best")
    return inputs


def run(req: PredictRequest, served: ServedModel, inputs: list) -> list[dict[str, Any]]:
    """The predictions (blocking: call it from a pool thread)."""
    model, task = served.model, served.task
    if task == "classify":
        out = model.predict(inputs, top_k=req.top_k)
        return [{"index": i, "input": x, "label": best[0][0], "probability": best[0][1],
                 "top": [{"label": lab, "probability": p} for lab, p in best]} for i, (x, best) in enumerate(zip(inputs, out))]
    if task == "tag":
        sentences = [x.split() if isinstance(x, str) else list(x) for x in inputs]
        out = model.predict(sentences)
        return [{"index": i, "input": x, "tokens": s, "tags": [t for t, _ in tags], "probabilities": [p for _, p in tags]}
                for i, (x, s, tags) in enumerate(zip(inputs, sentences, out))]
    out = model.predict(inputs, beam=req.beam, n_best=req.n_best, length_penalty=req.length_penalty)
    return [{"index": i, "input": x, "output": best[0][0], "score": best[0][1],
             "n_best": [{"output": o, "score": s} for o, s in best]} for i, (x, best) in enumerate(zip(inputs, out))]
