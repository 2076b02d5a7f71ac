"""What one request may ask of the server (``charrnn serve`` sets these from its options)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_tokens: int = 4096  # tokens per choice
    max_prompt_chars: int = 100_000  # characters per prompt
    max_request_bytes: int = 1_000_000  # the whole JSON body
    max_choices: int = 64  # prompts x n in one completion request
    max_inputs: int = 1024  # inputs in one predict request
    timeout: float = 60.0  # seconds of generation per request; it then ends with what it has
    max_rows: int = 256  # rows one model generates at once; more requests get a 429
    threads: int = 4  # pool threads for whole-request work (beam search, predictions)
