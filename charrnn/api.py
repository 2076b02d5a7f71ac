"""The Python API: load a trained model and use it in a few lines.

    import charrnn
    model = charrnn.load("checkpoints/tinyshakespeare")      # a language model
    print(model.generate("ROMEO:", length=200, temperature=0.8, seed=1))
    print(model.evaluate("To be, or not to be").bpc)

    clf = charrnn.load("checkpoints/sst2")                    # a classifier
    print(clf.predict(["a gorgeous film", "a dull mess"], top_k=2))

The command line uses exactly these calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from .checkpoint import Checkpoint, load_checkpoint
from .config import SampleConfig
import torch

from .errors import CheckpointError, ConfigError, CorpusError
from .decoding import Generation, beam_search, iter_sample, sample
from .runtime import resolve_device, resolve_precision
from .tasks.classify import classify_ids, encode_texts
from .tasks.metrics import ClassificationReport, report
from .tasks.perplexity import EvalResult, evaluate, scored_chars


class LanguageModel:
    """A trained model with its tokenizer, ready for generation and evaluation."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto"):
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.tokenizer = checkpoint.tokenizer
        self.model = checkpoint.build_model(self.device)
        self.last: list[Generation] | None = None  # what the last stream() produced

    def count_unknown(self, text: str) -> int:
        """How many characters of ``text`` the tokenizer maps to its unknown id (always 0
        for the subword kinds, which spell unseen characters as bytes)."""
        unk = self.tokenizer.unk_id
        return 0 if unk is None else int((self.tokenizer.encode(text) == unk).sum())

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

    def info(self) -> dict[str, Any]:
        """Configs, parameter count, step and training metrics of the checkpoint."""
        return self.checkpoint.summary()


class Classifier:
    """A trained sequence classifier with its tokenizer and labels."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto"):
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.tokenizer = checkpoint.tokenizer
        self.labels: list[str] = list((checkpoint.task_state or {}).get("labels", []))
        self.model = checkpoint.build_model(self.device)
        if len(self.labels) != self.model.config.num_labels:
            raise CheckpointError(f"{checkpoint.path}: the label list does not match the model")

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (an empty text becomes one padding token: it still gets a label)."""
        ids = encode_texts(self.tokenizer, texts)
        pad = self.model.config.pad_id
        return [seq if seq else [pad] for seq in ids]

    def probabilities(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Label probabilities (N, C) of each text, columns in the order of ``labels``."""
        if not texts:
            return torch.zeros(0, len(self.labels))
        logits = classify_ids(self.model, self.encode(texts), self.device, batch_size=batch_size)
        return torch.softmax(logits, dim=-1)

    def predict(self, texts: list[str], top_k: int = 1, batch_size: int = 256) -> list[list[tuple[str, float]]]:
        """For each text, its ``top_k`` most likely labels with their probabilities, best first."""
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, not {top_k}")
        probs = self.probabilities(texts, batch_size)
        k = min(top_k, len(self.labels))
        values, index = probs.topk(k, dim=-1) if len(texts) else (probs, probs.long())
        return [[(self.labels[i], p) for i, p in zip(row_i, row_p)] for row_i, row_p in
                zip(index.tolist(), values.tolist())]

    def evaluate(self, texts: list[str], gold: list[str]) -> ClassificationReport:
        """Accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix."""
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = sorted({g for g in gold if g not in index})
        if unknown:
            raise CorpusError(f"label(s) the model was not trained on: {', '.join(map(repr, unknown))}")
        predicted = self.probabilities(texts).argmax(dim=-1).tolist()
        return report([index[g] for g in gold], predicted, self.labels)

    def info(self) -> dict[str, Any]:
        return self.checkpoint.summary()


def load(path: str | os.PathLike, device: str = "auto", latest: bool = False) -> LanguageModel | Classifier:
    """Load a run directory (its best checkpoint, or latest) or a checkpoint file: a
    ``LanguageModel`` or a ``Classifier``, by the task that trained it."""
    ck = load_checkpoint(path, latest=latest)
    if ck.task == "classify":
        return Classifier(ck, device=device)
    return LanguageModel(ck, device=device)

