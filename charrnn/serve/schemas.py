"""The request bodies, as the OpenAI completions API defines them plus charrnn's controls.

Types are strict (``"5"`` is not a number, ``1`` is not ``true``) and unknown fields are
refused, so a misspelt option is a 400 rather than silently ignored. Ranges that the
sampling engine checks again (``SampleConfig``) are declared here too, so the error
names the field.
"""

from __future__ import annotations

from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field

# OpenAI's documented default for max_tokens in the completions API.
DEFAULT_MAX_TOKENS = 16
MAX_BEAM = 64  # a beam of K is K rows of every step
MAX_LENGTH_PENALTY = 10.0  # beyond this, length ** penalty overflows and means nothing


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    prompt: Union[str, list[str]] = ""
    max_tokens: Optional[int] = Field(DEFAULT_MAX_TOKENS, ge=0)
    temperature: Optional[float] = Field(None, ge=0)  # 0 is greedy decoding; None: charrnn's default 0.8
    top_p: Optional[float] = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(None, ge=-(2**63), le=2**63 - 1)  # int64, as OpenAI's
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    echo: bool = False
    # Accepted for compatibility when they ask for nothing charrnn does not do.
    logprobs: Optional[int] = None
    best_of: Optional[int] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    logit_bias: Optional[dict[str, float]] = None
    suffix: Optional[str] = None
    user: Optional[str] = None
    # charrnn's own controls.
    top_k: Optional[int] = Field(None, ge=1)
    min_p: Optional[float] = Field(None, ge=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    no_repeat_ngram: int = Field(0, ge=0)
    beam: int = Field(0, ge=0, le=MAX_BEAM)
    length_penalty: float = Field(1.0, ge=0, le=MAX_LENGTH_PENALTY)
    max_chars: Optional[int] = Field(None, ge=0)
    label: Optional[str] = None  # a label-conditioned model: the label to generate


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    # Texts (a classifier), sentences (a tagger: a string is split at whitespace, or a
    # list of tokens) or sources (an encoder-decoder).
    input: Union[str, list[Union[str, list[str]]]]
    top_k: int = Field(1, ge=1)  # classifier: labels per input
    beam: int = Field(0, ge=0, le=MAX_BEAM)  # encoder-decoder: 0 is greedy
    n_best: int = Field(1, ge=1)
    length_penalty: float = Field(1.0, ge=0, le=MAX_LENGTH_PENALTY)
