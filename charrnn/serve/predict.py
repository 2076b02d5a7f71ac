"""``POST /v1/predict``: a list of inputs in, a prediction with probabilities per input out,
as the model's API class records one (``prediction_record``):

    classifier        {"label", "probability", "top": [{"label", "probability"}, ...]}
    tagger            {"tokens", "tags", "probabilities"}    (a string input is split at whitespace)
    encoder-decoder   {"output", "score", "n_best": [{"output", "score"}, ...]}
    another package's task: what its API class records

The work runs in the thread pool; the answer keeps the order of the inputs.
"""

from __future__ import annotations

from typing import Any

from .errors import APIError
from .limits import Limits
from .models import ServedModel
from ..tasks.registry import all_tasks
from .schemas import PredictRequest


def _bad(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param)


def check(req: PredictRequest, served: ServedModel, limits: Limits) -> list:
    """The inputs of a valid request (refusing options that do not fit the model)."""
    if served.spec.serves != "predict":
        raise _bad(f"model {served.name!r} is a {served.kind_name}: POST /v1/completions generates with it", "model")
    inputs = [req.input] if isinstance(req.input, str) else list(req.input)
    if len(inputs) > limits.max_inputs:
        raise _bad(f"{len(inputs):,} inputs, more than this server's limit of {limits.max_inputs:,}", "input")
    for x in inputs:
        size = len(x) if isinstance(x, str) else sum(len(t) for t in x)
        if size > limits.max_prompt_chars:
            raise APIError(400, f"an input has {size:,} characters, more than this server's limit of "
                                f"{limits.max_prompt_chars:,}", param="input", code="input_too_long")
    if not served.model.takes_tokens and any(not isinstance(x, str) for x in inputs):
        raise _bad(f"a {served.kind_name} takes texts: give each input as a string", "input")
    takes = served.spec.predict_options
    wrong = [f for f in ("top_k", "beam", "n_best", "length_penalty") if f in req.model_fields_set and f not in takes]
    if wrong:
        owners = [t.title for t in all_tasks() if set(wrong) <= set(t.predict_options)]
        raise _bad(f"{', '.join(wrong)} {'applies' if len(wrong) == 1 else 'apply'} to "
                   f"{' or '.join(f'a {o}' if o[0] not in 'aeiou' else f'an {o}' for o in owners) or 'other models'}; "
                   f"{served.name!r} is a {served.kind_name}", wrong[0])
    if "n_best" in takes:
        if req.n_best > 1 and not req.beam:
            raise _bad(f"n_best {req.n_best} needs a beam search (beam {req.n_best} or wider)", "n_best")
        if req.beam and req.n_best > req.beam:
            raise _bad(f"n_best ({req.n_best}) cannot exceed beam ({req.beam})", "n_best")
    return inputs


def run(req: PredictRequest, served: ServedModel, inputs: list) -> list[dict[str, Any]]:
    """The predictions (blocking: call it from a pool thread)."""
    model, original = served.model, inputs
    options = {f: getattr(req, f) for f in served.spec.predict_options if hasattr(req, f)}
    if model.takes_tokens:
        inputs = [x.split() if isinstance(x, str) else list(x) for x in inputs]
        read = [{"tokens": s} for s in inputs]
    else:
        read = [{} for _ in inputs]
    out = model.predict(inputs, **options)
    return [{"index": i, "input": x, **r, **model.prediction_record(y)}
            for i, (x, r, y) in enumerate(zip(original, read, out))]
