"""The Python API of a trained language model: generate, stream, sample, evaluate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..checkpoint import Checkpoint
from ..config import SampleConfig
from ..decoding import Generation, beam_search, iter_sample, sample
from ..errors import ConfigError
from ..runtime import resolve_precision
from ..tasks.dynamic import DynamicConfig, dynamic_evaluate
from ..tasks.perplexity import EvalResult, evaluate, scored_chars
from .base import Model


class LanguageModel(Model):
    """A trained model with its tokenizer, ready for generation and evaluation. Its
    ``count_unknown`` counts the characters its tokenizer maps to the unknown id (always 0
    for the subword kinds, which spell unseen characters as bytes)."""

    generates = True
    stepped = True

    def __init__(self, checkpoint: Checkpoint, device: str = "auto"):
        super().__init__(checkpoint, device)
        self.model = checkpoint.build_model(self.device)
        self.last: list[Generation] | None = None  # what the last stream() produced

    def _ids(self, prime: str):
        tok = self.tokenizer
        return tok.encode(prime), {"detokenizer": tok.detokenizer, "start_id": tok.start_id, "banned": tok.banned_ids}

    def stream(self, prime: str = "", config: SampleConfig | None = None) -> Iterator[str]:
        """Yield the text of one sample piece by piece, as it is generated."""
        config = config or SampleConfig()
        if config.beam or config.num_samples != 1:
            raise ConfigError("stream() makes one sample; use sample() for beam search or several samples")
        ids, kw = self._ids(prime)
        it = iter_sample(self.model, ids, config, **kw)
        while True:
            try:
                _, piece = next(it)
            except StopIteration as end:
                self.last = end.value
                return
            yield piece

    def sample(self, prime: str = "", config: SampleConfig | None = None, **options: Any) -> list[Generation]:
        """Samples (``num_samples`` of them, as one batch) or the best beam-search
        hypotheses (``beam``, ``num_return``), each with its text and log-probability.
        Options are SampleConfig fields: ``length`` counts tokens, ``max_chars``
        characters."""
        config = config or SampleConfig(**options)
        ids, kw = self._ids(prime)
        if config.beam:
            return beam_search(self.model, ids, config, **kw)
        return sample(self.model, ids, config, **kw)

    def generate(self, prime: str = "", **options: Any) -> str:
        """The text generated after ``prime`` (not including it). Options: SampleConfig
        fields, e.g. length=200 (tokens), max_chars=300, temperature=0.8, top_p=0.9, seed=1,
        beam=4, stop=("\\n\\n",)."""
        return self.sample(prime, **options)[0].text

    def evaluate(self, text: str, streams: int = 16, precision: str = "fp32") -> EvalResult:
        """Loss and perplexity per token, and bits per character, of ``text`` (state
        carried throughout). Every token after the first is scored; ``chars`` counts the
        characters those tokens cover (see ``tasks.perplexity.scored_chars``), so bpc compares
        across tokenizers.

        ``streams`` parallel pieces, each warmed up on the 256 tokens before it (1 is the
        exact single-stream score; 16 agrees with it to about 1e-6 bpc and is ~3x faster).
        ``precision`` "bf16" or "auto" runs the recurrent layers under bf16 autocast
        (faster where the hardware has it; the output layer and the loss stay fp32).
        """
        tok = self.tokenizer
        ids = tok.encode(text)
        dtype = resolve_precision(precision, self.device)
        return evaluate(self.model, ids, unk_id=tok.unk_id, chars=scored_chars(tok, text, ids), streams=streams,
                        dtype=dtype)

    def evaluate_dynamic(self, text: str, config: DynamicConfig | None = None, streams: int = 1,
                         progress=None) -> EvalResult:
        """``evaluate`` with dynamic evaluation (tasks/dynamic.py): the weights adapt to the
        text already scored, never to what comes after; the model is left unchanged. fp32.
        With ``streams`` > 1 each stream adapts its own copy (no faster: see dynamic.py)."""
        tok = self.tokenizer
        ids = tok.encode(text)
        return dynamic_evaluate(self.model, ids, config or DynamicConfig(), unk_id=tok.unk_id,
                                chars=scored_chars(tok, text, ids), streams=streams, progress=progress)
