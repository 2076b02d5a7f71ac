"""The Python API of a trained label-conditioned generator."""

from __future__ import annotations

from typing import Any

from ..checkpoint import Checkpoint
from ..config import SampleConfig
from ..decoding import Generation
from ..errors import CheckpointError, ConfigError, CorpusError
from ..tasks.perplexity import EvalResult
from ..tasks.specs import state_of
from ..tasks.specs.conditional import ConditionalState
from .base import Model


class ConditionalModel(Model):
    """A trained label-conditioned generator with its tokenizer and labels.

        names = charrnn.load("checkpoints/surnames")
        names.sample("Russian", n=10, temperature=0.8, novel=True)   # Generations
        names.perplexity(["Ivanov"], ["Russian"]).bpc
    """

    generates = True
    conditioned = True

    def __init__(self, checkpoint: Checkpoint, device: str = "auto"):
        super().__init__(checkpoint, device)
        state = state_of(ConditionalState, checkpoint)
        self.labels: list[str] = list(state.labels)
        self.model = checkpoint.build_model(self.device)
        if len(self.labels) != self.model.config.num_labels:
            raise CheckpointError(f"{checkpoint.path}: the label list does not match the model")
        self.longest = int(state.longest)
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
        from ..tasks.classify import as_example_text

        return self.tokenizer.encode(as_example_text(self.tokenizer.kind, prime)).tolist() if prime else []

    def token_count(self, text: str) -> int:
        return len(self._prime_ids(text))

    def unknown_in(self, text: str) -> int:
        unk = self.tokenizer.unk_id
        return 0 if unk is None or not text else self._prime_ids(text).count(unk)

    def is_novel(self, text: str) -> bool:
        """Whether ``text`` is none of the texts the model was trained (and validated) on."""
        from ..tasks.conditional import text_hash

        if self._known is None:
            raise CheckpointError(f"{self.checkpoint.path}: holds no record of its training texts")
        return text_hash(text) not in self._known

    def draw(self, label: str, n: int | None = None, prime: str = "", unique: bool = False, novel: bool = False,
             config: SampleConfig | None = None, max_draws: int | None = None, **options: Any):
        """Like ``sample``, with what the draw cost: a ``decoding.conditional.Draw``
        (generations, draws, complete: False when ``max_draws`` ran out first)."""
        from ..decoding.conditional import draw
        from ..tasks.seq2seq import output_text

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
        from ..tasks.classify import encode_texts
        from ..tasks.conditional import sequence_nll

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
