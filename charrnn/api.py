"""The Python API: load a trained model and use it in a few lines.

    import charrnn
    model = charrnn.load("checkpoints/tinyshakespeare")      # a language model
    print(model.generate("ROMEO:", length=200, temperature=0.8, seed=1))
    print(model.evaluate("To be, or not to be").bpc)

    clf = charrnn.load("checkpoints/sst2")                    # a classifier
    print(clf.predict(["a gorgeous film", "a dull mess"], top_k=2))

    g2p = charrnn.load("checkpoints/g2p")                     # an encoder-decoder
    print(g2p.predict(["абажура"], beam=5, n_best=2))          # [[("a b ə ʒ u ɾ ə", -0.01), ...]]

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
from .tasks.seq2seq import encode_side, output_text, teacher_forced_nll
from .tasks.seq2seq_metrics import Seq2SeqReport, seq2seq_report


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


class Seq2SeqModel:
    """A trained encoder-decoder with its source and target tokenizers."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto", ensemble: list[Checkpoint] = ()):
        """``ensemble``: more checkpoints with the same tokenizers (e.g. runs with other
        seeds); decoding then averages the probabilities of all the models."""
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.tokenizer = checkpoint.tokenizer  # a PairTokenizer: .source, .target
        self.source, self.target = self.tokenizer.source, self.tokenizer.target
        self.model = checkpoint.build_model(self.device)
        self.models = [self.model]
        ratios = [float((checkpoint.task_state or {}).get("length_ratio", 2.0))]
        for other in ensemble:
            if other.task != "seq2seq":
                raise CheckpointError(f"{other.path}: a {other.task} run cannot join an encoder-decoder ensemble")
            if not _same_tokenizer(other.tokenizer, self.tokenizer):
                raise CheckpointError(f"{other.path}: its tokenizers differ from those of {checkpoint.path}: an "
                                      f"ensemble needs runs on the same data with the same tokenizer options")
            self.models.append(other.build_model(self.device))
            ratios.append(float((other.task_state or {}).get("length_ratio", 2.0)))
        self.length_ratio = max(ratios)

    def encode(self, sources: list[str]) -> list[list[int]]:
        """Source ids of each text (an empty source becomes one padding token)."""
        pad = self.model.config.src_pad_id
        return [ids if ids else [pad] for ids in encode_side(self.source, sources)]

    def count_unknown(self, sources: list[str]) -> int:
        """Source tokens the source tokenizer does not know (read as its unknown id)."""
        unk = self.source.unk_id
        return 0 if unk is None else sum(ids.count(unk) for ids in encode_side(self.source, sources))

    def limit(self, source_len: int) -> int:
        """The most output tokens for a source of ``source_len`` tokens."""
        from .decoding.seq2seq import length_limit
        from .tasks.seq2seq import LENGTH_EXTRA

        return length_limit(source_len, self.length_ratio, LENGTH_EXTRA)

    def generate(self, sources: list[str], config: SampleConfig | None = None, batch_size: int = 256,
                 **options: Any) -> list[list[Generation]]:
        """For each source, its outputs as Generations (text, tokens, log-probability,
        finish reason, beam score): the ``num_return`` best of a beam search (``beam``),
        or ``num_samples`` samples, or the greedy output (``greedy=True``). Options are
        SampleConfig fields; ``length`` caps every output (default: relative to the source)."""
        from .decoding.seq2seq import translate

        config = config or SampleConfig(**options)
        if not sources:
            return []
        limit = None if config.length is not None else self.limit
        outs = translate(self.models, self.encode(sources), config, self.target.detokenizer, self.target.banned_ids,
                         limit=limit, batch_size=batch_size)
        for gens in outs:
            for g in gens:
                g.text = output_text(self.target.kind, g.text)
        return outs

    def predict(self, sources: list[str], beam: int = 0, n_best: int = 1, length_penalty: float = 1.0,
                batch_size: int = 256, **options: Any) -> list[list[tuple[str, float]]]:
        """For each source, its ``n_best`` outputs with their scores, best first: greedy
        by default (scores are log-probabilities), beam search with ``beam`` > 0 (scores
        are log-probabilities / length ** length_penalty), or samples with
        ``temperature=...`` (and other SampleConfig options)."""
        if n_best < 1:
            raise ConfigError(f"n_best must be >= 1, not {n_best}")
        if beam and n_best > beam:
            raise ConfigError(f"n_best ({n_best}) cannot exceed the beam ({beam})")
        if beam:
            config = SampleConfig(beam=beam, num_return=n_best, length_penalty=length_penalty, **options)
        elif options:
            config = SampleConfig(num_samples=n_best, **options)
        else:
            if n_best > 1:
                raise ConfigError("n_best > 1 needs a beam search (beam=K) or sampling (temperature=...)")
            config = SampleConfig(greedy=True)
        outs = self.generate(sources, config, batch_size)
        return [[(g.text, g.score if g.score is not None else g.logprob) for g in gens] for gens in outs]

    def evaluate(self, sources: list[str], references: list[list[str]], beam: int = 0,
                 length_penalty: float = 1.0, batch_size: int = 256) -> Seq2SeqReport:
        """Exact-match accuracy (any reference), WER, token error rate, BLEU and chrF of
        the outputs for distinct ``sources``, each with its references."""
        outs = self.predict(sources, beam=beam, length_penalty=length_penalty, batch_size=batch_size)
        symbols = str.split if self.target.kind in ("space", "word") else list
        return seq2seq_report([o[0][0] for o in outs], references, symbols)

    def perplexity(self, sources: list[str], targets: list[str]) -> tuple[float, int]:
        """Teacher-forced mean loss (nats per target token, EOS included) of ``targets``
        given ``sources``, and the number of tokens scored."""
        c = self.model.config
        src = self.encode(sources)
        tgt = [[c.sos_id, *ids, c.eos_id] for ids in encode_side(self.target, targets)]
        total, count = teacher_forced_nll(self.model, src, tgt, self.device)
        return total / max(count, 1), count

    def info(self) -> dict[str, Any]:
        return self.checkpoint.summary()


def _same_tokenizer(a, b) -> bool:
    (meta_a, tensors_a), (meta_b, tensors_b) = a.state(), b.state()
    return meta_a == meta_b and tensors_a.keys() == tensors_b.keys() and all(
        torch.equal(tensors_a[k], tensors_b[k]) for k in tensors_a)


def load_ensemble(paths: list[str | os.PathLike], device: str = "auto", latest: bool = False) -> Seq2SeqModel:
    """Several encoder-decoder runs (same data and tokenizers, e.g. other seeds) as one
    model whose decoding averages their probabilities."""
    if not paths:
        raise ConfigError("an ensemble needs at least one run")
    cks = [load_checkpoint(p, latest=latest) for p in paths]
    if cks[0].task != "seq2seq":
        raise CheckpointError(f"{cks[0].path}: ensembles are for encoder-decoders (seq2seq), not a {cks[0].task} run")
    return Seq2SeqModel(cks[0], device=device, ensemble=cks[1:])


def load(path: str | os.PathLike, device: str = "auto", latest: bool = False
         ) -> LanguageModel | Classifier | Seq2SeqModel:
    """Load a run directory (its best checkpoint, or latest) or a checkpoint file: a
    ``LanguageModel``, a ``Classifier`` or a ``Seq2SeqModel``, by the task that trained it."""
    ck = load_checkpoint(path, latest=latest)
    if ck.task == "classify":
        return Classifier(ck, device=device)
    if ck.task == "seq2seq":
        return Seq2SeqModel(ck, device=device)
    return LanguageModel(ck, device=device)

