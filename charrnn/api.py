"""The Python API: load a trained model and use it in a few lines.

    import charrnn
    model = charrnn.load("checkpoints/tinyshakespeare")      # a language model
    print(model.generate("ROMEO:", length=200, temperature=0.8, seed=1))
    print(model.evaluate("To be, or not to be").bpc)

    clf = charrnn.load("checkpoints/sst2")                    # a classifier
    print(clf.predict(["a gorgeous film", "a dull mess"], top_k=2))

    g2p = charrnn.load("checkpoints/g2p")                     # an encoder-decoder
    print(g2p.predict(["абажура"], beam=5, n_best=2))          # [[("a b ə ʒ u ɾ ə", -0.01), ...]]

    pos = charrnn.load("checkpoints/pos")                     # a tagger
    print(pos.predict([["She", "reads", "books"]]))           # [[("PRON", 1.0), ("VERB", 0.97), ...]]

    names = charrnn.load("checkpoints/surnames")              # a label-conditioned generator
    print([g.text for g in names.sample("Russian", n=5, temperature=0.8)])

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
from .tasks.tag_metrics import TagReport


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


class SequenceTagger:
    """A trained tagger with its words, characters and tags."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto"):
        from .tasks.tag import TagVocab

        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        try:
            self.vocab = TagVocab.from_state(checkpoint.task_state or {}, checkpoint.tokenizer)
        except CorpusError as e:
            raise CheckpointError(f"{checkpoint.path}: {e}") from None
        self.tags = self.vocab.tags
        self.model = checkpoint.build_model(self.device)
        if len(self.tags) != self.model.config.num_tags:
            raise CheckpointError(f"{checkpoint.path}: the tag list does not match the model")

    def unseen(self, tokens: list[str]) -> list[bool]:
        """Whether each token is unseen in training (its lower-cased form never occurred)."""
        return [w == 0 for w in self.vocab.word_ids(tokens)]

    def predict(self, sentences: list[list[str]], batch_size: int = 128) -> list[list[tuple[str, float]]]:
        """For each sentence (a list of tokens), each token's tag and its probability (with
        a CRF: the Viterbi path, each tag with its posterior marginal). An empty sentence
        gets an empty list."""
        from .tasks.tag import encode_sentences, tag_encoded

        full = [i for i, s in enumerate(sentences) if s]
        out: list[list[tuple[str, float]]] = [[] for _ in sentences]
        if not full:
            return out
        preds, probs, _ = tag_encoded(self.model, encode_sentences(self.vocab, [sentences[i] for i in full]),
                                      self.device, batch_size=batch_size)
        for i, p, q in zip(full, preds, probs):
            out[i] = [(self.tags[t], pr) for t, pr in zip(p, q)]
        return out

    def evaluate(self, tokens: list[list[str]], gold: list[list[str]], batch_size: int = 128) -> TagReport:
        """Token, unseen-token and sentence accuracy, per-tag precision/recall/F1 and, for
        BIO/IOB tag sets, span precision/recall/F1 (the CoNLL convention)."""
        from .tasks.tag_metrics import tag_report

        predicted = [[t for t, _ in sent] for sent in self.predict(tokens, batch_size)]
        return tag_report(gold, predicted, [self.unseen(s) for s in tokens], self.tags)

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


class ConditionalModel:
    """A trained label-conditioned generator with its tokenizer and labels.

        names = charrnn.load("checkpoints/surnames")
        names.sample("Russian", n=10, temperature=0.8, novel=True)   # Generations
        names.perplexity(["Ivanov"], ["Russian"]).bpc
    """

    def __init__(self, checkpoint: Checkpoint, device: str = "auto"):
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.tokenizer = checkpoint.tokenizer
        state = checkpoint.task_state or {}
        self.labels: list[str] = list(state.get("labels", []))
        self.model = checkpoint.build_model(self.device)
        if len(self.labels) != self.model.config.num_labels:
            raise CheckpointError(f"{checkpoint.path}: the label list does not match the model")
        self.longest = int(state.get("longest", 50))
        hashes = checkpoint.task_tensors.get("train_hashes")
        self._known: set[int] | None = None if hashes is None else set(hashes.tolist())

    def label_id(self, label: str) -> int:
        if label not in self.labels:
            raise ConfigError(f"unknown label {label!r}; the labels are: {', '.join(self.labels)}")
        return self.labels.index(label)

    @property
    def default_limit(self) -> int:
        """The most tokens of an output when no length is given: twice the longest training
        sequence and 10 more (an output normally ends at EOS long before)."""
        return 2 * self.longest + 10

    def _prime_ids(self, prime: str) -> list[int]:
        from .tasks.classify import as_example_text

        return self.tokenizer.encode(as_example_text(self.tokenizer.kind, prime)).tolist() if prime else []

    def count_unknown(self, text: str) -> int:
        unk = self.tokenizer.unk_id
        return 0 if unk is None or not text else self._prime_ids(text).count(unk)

    def is_novel(self, text: str) -> bool:
        """Whether ``text`` is none of the texts the model was trained (and validated) on."""
        from .tasks.conditional import text_hash

        if self._known is None:
            raise CheckpointError(f"{self.checkpoint.path}: holds no record of its training texts")
        return text_hash(text) not in self._known

    def draw(self, label: str, n: int | None = None, prime: str = "", unique: bool = False, novel: bool = False,
             config: SampleConfig | None = None, max_draws: int | None = None, **options: Any):
        """Like ``sample``, with what the draw cost: a ``decoding.conditional.Draw``
        (generations, draws, complete: False when ``max_draws`` ran out first)."""
        from .decoding.conditional import draw
        from .tasks.seq2seq import output_text

        config = config or SampleConfig(**options)
        if n is None:
            n = config.num_return if config.beam else config.num_samples
        index = self.label_id(label)
        prime_ids = self._prime_ids(prime)
        kind = self.tokenizer.kind
        accept = None
        if novel:
            accept = lambda text: self.is_novel(prime + (text if prime else output_text(kind, text)))  # noqa: E731
        banned = [*self.tokenizer.banned_ids]
        result = draw(self.model, index, config, self.tokenizer.detokenizer, n, banned, prime_ids,
                      config.length if config.length is not None else self.default_limit, unique, accept, max_draws)
        if not prime:
            for g in result.generations:
                g.text = output_text(kind, g.text)
        return result

    def sample(self, label: str, n: int | None = None, prime: str = "", unique: bool = False, novel: bool = False,
               config: SampleConfig | None = None, **options: Any) -> list[Generation]:
        """``n`` new sequences of ``label`` (default: ``num_samples``, or ``num_return`` with
        a beam), each continuing ``prime`` (not included in the text) and ending at EOS or
        the length limit. Options are SampleConfig fields (temperature, top_k, top_p,
        min_p, repetition_penalty, no_repeat_ngram, seed, greedy, beam, length_penalty,
        length, max_chars). ``unique``: no two alike; ``novel``: none a copy of a training
        text; both draw more until ``n`` are found (at most 20 n draws): fewer may come back."""
        return self.draw(label, n, prime, unique, novel, config, **options).generations

    def generate(self, label: str, prime: str = "", **options: Any) -> str:
        """One sequence of ``label``: the text after ``prime``."""
        return self.sample(label, 1, prime, **options)[0].text

    def perplexity(self, texts: list[str], labels: list[str], batch_size: int = 256) -> EvalResult:
        """Loss per token (EOS included), perplexity and bits per character (an example's
        characters and one for its end) of ``texts`` under their ``labels``; targets the
        tokenizer does not know are not scored (counted in ``unknown``)."""
        from .tasks.classify import encode_texts
        from .tasks.conditional import sequence_nll

        unknown_labels = sorted({lab for lab in labels if lab not in self.labels})
        if unknown_labels:
            raise CorpusError(f"label(s) the model was not trained on: {', '.join(map(repr, unknown_labels))}; "
                              f"the labels are: {', '.join(self.labels)}")
        c = self.model.config
        seqs = [[c.sos_id, *ids, c.eos_id] for ids in encode_texts(self.tokenizer, texts)]
        index = {lab: i for i, lab in enumerate(self.labels)}
        tok = self.tokenizer
        nll, tokens, unknown = sequence_nll(self.model, seqs, [index[lab] for lab in labels], self.device,
                                            skip_id=tok.unk_id, batch_size=batch_size)
        chars = sum(len(t) + 1 for t in texts) - (unknown if tok.kind == "char" else 0)
        return EvalResult(nll, tokens, chars, unknown)

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
         ) -> LanguageModel | Classifier | Seq2SeqModel | SequenceTagger | ConditionalModel:
    """Load a run directory (its best checkpoint, or latest) or a checkpoint file: a
    ``LanguageModel``, ``Classifier``, ``Seq2SeqModel``, ``SequenceTagger`` or
    ``ConditionalModel``, by the task that trained it."""
    ck = load_checkpoint(path, latest=latest)
    if ck.task == "classify":
        return Classifier(ck, device=device)
    if ck.task == "seq2seq":
        return Seq2SeqModel(ck, device=device)
    if ck.task == "conditional":
        return ConditionalModel(ck, device=device)
    if ck.task == "tag":
        return SequenceTagger(ck, device=device)
    return LanguageModel(ck, device=device)

