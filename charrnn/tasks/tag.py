"""Sequence tagging (many-to-many, aligned): one tag per token.

Data: sentences of tagged tokens (text/tagged.py: CoNLL-U or token<TAB>tag columns),
validated on a separate file or on a seeded random share of the sentences.

Vocabularies, all built from the training sentences:

- words: the lower-cased tokens (sentence-initial capitals and all-caps headlines do not
  split a word's statistics; the character encoder still sees the exact spelling). Id 0
  is the unknown word, ids 1..V the words, V + 1 padding. A token is *unseen* when its
  lower-cased form never occurs in the training data (it reads as the unknown word).
- characters: a CharTokenizer of the training tokens (id 0 unknown) plus padding.
- tags: the sorted tags of the training and validation data.

Training replaces a word of training count c by the unknown word with probability
a / (a + c) (word dropout, a = ``word_dropout``: Kiperwasser and Goldberg 2016), so
the unknown word's embedding is trained on the rare words it will stand for. The draw
uses torch's global generator, which checkpoints save and restore, so resume is exact.

Loss: per-token cross-entropy, or with a CRF the sentence's negative log-likelihood;
either is summed over the batch and divided by its tokens. Validation reports the loss
per token, token accuracy and accuracy on unseen tokens; the best checkpoint has the
best accuracy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..task_configs import TaggerConfig
from ..errors import CorpusError
from ..models.tagger import Tagger
from ..runtime import autocast
from ..text.char import CharTokenizer
from ..text.batching import EpochBatches
from ..text.tagged import Sentence, read_tagged
from .base import ExampleTask

EVAL_BATCH = 128  # sentences per forward pass when validating or predicting
WORD_DROPOUT = 0.25  # a in a / (a + count)
IGNORE = -100  # the tag of a padding position in a batch


def word_key(token: str) -> str:
    """The form under which a token is looked up in the word vocabulary."""
    return token.lower()


@dataclass
class TagVocab:
    """The words, characters and tags a tagger reads and writes."""

    words: list[str]  # id i + 1 is words[i]; 0 is unknown
    chars: CharTokenizer
    tags: list[str]

    def __post_init__(self) -> None:
        self.index = {w: i + 1 for i, w in enumerate(self.words)}
        self.tag_index = {t: i for i, t in enumerate(self.tags)}

    @classmethod
    def train(cls, sentences: list[Sentence], extra_tags: list[Sentence] = ()) -> TagVocab:
        words = sorted({word_key(t) for s in sentences for t in s.tokens})
        chars = CharTokenizer.train("".join({t for s in sentences for t in s.tokens}))
        tags = sorted({t for s in [*sentences, *extra_tags] for t in s.tags})
        return cls(words, chars, tags)

    @property
    def word_vocab_size(self) -> int:
        return len(self.words) + 2  # unknown, words, padding

    @property
    def char_vocab_size(self) -> int:
        return self.chars.vocab_size + 1  # unknown, characters, padding

    def word_ids(self, tokens: list[str]) -> list[int]:
        return [self.index.get(word_key(t), 0) for t in tokens]

    def spellings(self, tokens: list[str]) -> list[tuple[int, ...]]:
        return [tuple(ids) for ids in self.chars.encode_lines(tokens)]

    def state(self) -> dict[str, Any]:
        """The JSON part of a checkpoint (the characters travel as its tokenizer)."""
        return {"words": self.words, "tags": self.tags}

    @classmethod
    def from_state(cls, state: dict[str, Any], chars: CharTokenizer) -> TagVocab:
        words, tags = state.get("words"), state.get("tags")
        if not isinstance(words, list) or not isinstance(tags, list) or not tags:
            raise CorpusError("the checkpoint's tagger vocabulary is damaged (no words or tags)")
        return cls([str(w) for w in words], chars, [str(t) for t in tags])


@dataclass
class Encoded:
    """A sentence as the tagger reads it."""

    words: list[int]
    spellings: list[tuple[int, ...]]
    tags: list[int]  # IGNORE for a tag the model does not know


def encode_sentences(vocab: TagVocab, sentences: list[Sentence] | list[list[str]]) -> list[Encoded]:
    """Tagged sentences, or token lists (no tags), as model inputs."""
    out = []
    for s in sentences:
        tokens = s.tokens if isinstance(s, Sentence) else s
        tags = [vocab.tag_index.get(t, IGNORE) for t in s.tags] if isinstance(s, Sentence) else [IGNORE] * len(tokens)
        out.append(Encoded(vocab.word_ids(tokens), vocab.spellings(tokens), tags))
    return out


@dataclass
class TagInputs:
    """A padded batch: words (N, T), lengths (N,), chars (M, C), char_lengths (M,),
    spelling (N, T) (each position's row in chars), tags (N, T) (IGNORE at padding)."""

    words: torch.Tensor
    lengths: torch.Tensor
    chars: torch.Tensor
    char_lengths: torch.Tensor
    spelling: torch.Tensor
    tags: torch.Tensor

    def model_inputs(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        return (self.words.to(device), self.lengths, self.chars.to(device), self.char_lengths,
                self.spelling.to(device))

    @property
    def mask(self) -> torch.Tensor:
        return torch.arange(self.words.shape[1]) < self.lengths[:, None]  # (N, T)


def tag_inputs(sents: list[Encoded], config: TaggerConfig, words: list[list[int]] | None = None) -> TagInputs:
    """Pad ``sents`` into one batch, each distinct spelling once; ``words`` replaces their
    word ids (word dropout)."""
    n, t = len(sents), max(len(s.words) for s in sents)
    word_ids = torch.full((n, t), config.word_pad_id, dtype=torch.long)
    tags = torch.full((n, t), IGNORE, dtype=torch.long)
    spelling = torch.zeros((n, t), dtype=torch.long)
    rows: dict[tuple[int, ...], int] = {}
    for i, s in enumerate(sents):
        word_ids[i, : len(s.words)] = torch.tensor(words[i] if words is not None else s.words)
        tags[i, : len(s.tags)] = torch.tensor(s.tags)
        spelling[i, : len(s.words)] = torch.tensor([rows.setdefault(sp, len(rows)) for sp in s.spellings])
    spelled = list(rows)  # in row order (dicts keep insertion order)
    char_lengths = torch.tensor([max(len(sp), 1) for sp in spelled])
    chars = torch.full((len(spelled), int(char_lengths.max())), config.char_pad_id, dtype=torch.long)
    for r, sp in enumerate(spelled):
        if sp:
            chars[r, : len(sp)] = torch.tensor(sp)
    lengths = torch.tensor([len(s.words) for s in sents])
    return TagInputs(word_ids, lengths, chars, char_lengths, spelling, tags)


class TaggedBatches(EpochBatches):
    """Shuffled, length-bucketed batches of sentence indices (resumable: see
    ``batching.EpochBatches``); the task builds the tensors of its share of each."""

    name = "tagged-batches"


@dataclass
class TaggedData:
    train: list[Sentence]
    val: list[Sentence]
    vocab: TagVocab
    tag_column: str | None

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for split in (self.train, self.val):
            for s in split:
                h.update(json.dumps([s.tokens, s.tags], ensure_ascii=False).encode())
            h.update(b"\x00split")
        return h.hexdigest()


def split_sentences(sentences: list[Sentence], fraction: float, seed: int) -> tuple[list[Sentence], list[Sentence]]:
    """A seeded random ``fraction`` of the sentences (at least one, never all) for validation."""
    order = list(range(len(sentences)))
    random.Random(f"tag-split:{seed}").shuffle(order)
    n_val = min(max(round(fraction * len(sentences)), 1), len(sentences) - 1)
    chosen = set(order[:n_val])
    return ([s for i, s in enumerate(sentences) if i not in chosen], [s for i, s in enumerate(sentences) if i in chosen])


def prepare_tagged(train_path: str | os.PathLike, val_path: str | os.PathLike | None, val_fraction: float, seed: int,
                   tag_column: str | None = None, vocab: TagVocab | None = None) -> TaggedData:
    """Read and split a tagging data set; ``vocab``: a resumed run's (the data must fit it)."""
    train = read_tagged(train_path, tag_column)
    if val_path is not None:
        val = read_tagged(val_path, tag_column)
    else:
        if len(train) < 2:
            raise CorpusError(f"{train_path}: one sentence is too few to set some aside for validation "
                              f"(give --val-file)")
        train, val = split_sentences(train, val_fraction, seed)
    fresh = TagVocab.train(train, val)
    if len(fresh.tags) < 2:
        raise CorpusError(f"{train_path}: only one tag ({fresh.tags[0]!r}); a tagger needs at least two")
    if vocab is not None and (vocab.words != fresh.words or vocab.tags != fresh.tags):
        raise CorpusError(f"{train_path}: the words or tags differ from the run's: resume on the same data")
    return TaggedData(train, val, vocab or fresh, tag_column)


@torch.inference_mode()
def tag_encoded(model: Tagger, sents: list[Encoded], device: torch.device, dtype: torch.dtype | None = None,
                batch_size: int = EVAL_BATCH) -> tuple[list[list[int]], list[list[float]], float]:
    """Predicted tag ids and their probabilities for every sentence (in the order given),
    and the summed loss of the gold tags where known (nats). With a CRF the tags are the
    Viterbi path and the probabilities its tags' posterior marginals."""
    was_training = model.training
    model.eval()
    try:
        order = sorted(range(len(sents)), key=lambda i: len(sents[i].words))
        preds: list[list[int]] = [[] for _ in sents]
        probs: list[list[float]] = [[] for _ in sents]
        total = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            inp = tag_inputs([sents[i] for i in rows], model.config)
            with autocast(device, dtype):
                emissions = model(*inp.model_inputs(device)).float()  # (n, T, K)
            mask = inp.mask.to(device)
            tags = inp.tags.to(device)
            best, p, nll = _decode(model, emissions, mask, tags)
            total += float(nll)
            for j, i in enumerate(rows):
                n = len(sents[i].words)
                preds[i], probs[i] = best[j, :n].tolist(), p[j, :n].tolist()
        return preds, probs, total
    finally:
        model.train(was_training)


def _decode(model: Tagger, emissions: torch.Tensor, mask: torch.Tensor, tags: torch.Tensor):
    """Best tags (n, T), their probabilities (n, T) and the summed NLL of the known gold tags."""
    if model.crf is None:
        logp = F.log_softmax(emissions, dim=-1)
        best = logp.argmax(dim=-1)
        nll = F.nll_loss(logp.reshape(-1, logp.shape[-1]), tags.reshape(-1), ignore_index=IGNORE, reduction="sum")
        return best, logp.gather(-1, best.unsqueeze(-1)).squeeze(-1).exp(), nll
    best, _ = model.crf.viterbi(emissions, mask)
    marginals = model.crf.marginals(emissions, mask)
    known = ((tags != IGNORE) | ~mask).all(dim=1)  # sentences whose every tag the model knows
    nll = model.crf.nll(emissions[known], tags[known].clamp(min=0), mask[known]).sum() if bool(known.any()) else 0.0
    return best, marginals.gather(-1, best.unsqueeze(-1)).squeeze(-1), nll


class TagTask(ExampleTask):
    name = "tag"
    headline = "val_accuracy"
    best_key = "val_accuracy"
    higher_is_better = True
    rate_name = "tokens_per_sec"

    def __init__(self, data: TaggedData, model_config: TaggerConfig, cfg: TrainConfig,
                 word_dropout: float = WORD_DROPOUT, embeddings: str | os.PathLike | None = None,
                 freeze: bool = False, embedding_report: dict[str, Any] | None = None):
        self.data = data
        self.embeddings, self.freeze = embeddings, freeze
        self.embedding_report = embedding_report  # what --embeddings found (kept on resume)
        v = data.vocab
        self.model_config = dataclasses.replace(model_config, word_vocab_size=v.word_vocab_size,
                                                char_vocab_size=v.char_vocab_size, num_tags=len(v.tags))
        self.train_enc = encode_sentences(v, data.train)
        self.val_enc = encode_sentences(v, data.val)
        self.word_dropout = word_dropout
        counts = [0] * v.word_vocab_size
        for s in self.train_enc:
            for w in s.words:
                counts[w] += 1
        # Probability of replacing each word id by the unknown word in training.
        self.drop_p = torch.tensor([word_dropout / (word_dropout + c) if c and word_dropout else 0.0 for c in counts])
        self.batches = TaggedBatches([len(s.words) for s in self.train_enc], cfg.batch_size, cfg.seed)
        self.val_size = sum(len(s.words) for s in self.val_enc)

    def init_rows(self, model: nn.Module, source) -> dict[str, int]:
        """--init: each word of the tagger's vocabulary whose (lower-cased) text is a whole
        token of the language model's vocabulary starts from that token's embedding row.
        Returns {"found": rows copied, "vocab": words}."""
        tok, table = source.tokenizer, source.weights["embedding.weight"]
        by_text: dict[str, int] = {}
        for token_id in range(min(tok.vocab_size, table.shape[0])):
            text = tok.piece(token_id).replace("\u2581", " ").strip()
            if text and token_id != tok.unk_id:
                by_text.setdefault(text.lower(), token_id)  # the first (most frequent) casing
        rows = [(i + 1, by_text[w]) for i, w in enumerate(self.data.vocab.words) if w in by_text]
        if rows:
            with torch.no_grad():
                mine, theirs = zip(*rows)
                model.word_embedding.weight[list(mine)] = table[list(theirs)].to(model.word_embedding.weight.dtype)
        return {"found": len(rows), "vocab": len(self.data.vocab.words)}

    def build_model(self, device: torch.device) -> nn.Module:
        model = Tagger(self.model_config)
        if self.embeddings is not None:
            from ..models.embeddings import init_embedding

            words = ["", *self.data.vocab.words, ""]  # unknown, the words, padding
            found, total = init_embedding(model.word_embedding, words, self.embeddings, self.freeze)
            self.embedding_report = {"file": str(self.embeddings), "found": found, "vocab": total}
        if self.freeze:
            model.word_embedding.weight.requires_grad_(False)  # also on resume: the optimizer must match
        self.model = model.to(device)
        return self.model

    def no_decay(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in (model.word_embedding.weight, getattr(model.char_embedding, "weight", None)) if p is not None]

    def loss(self, net: nn.Module, batch: Any, device: torch.device, dtype: torch.dtype | None) -> tuple[torch.Tensor, int]:
        members, _ = batch
        rows, scale = self.rows(len(members))
        total = sum(len(self.train_enc[i].words) for i in members)  # tokens of the whole batch
        share = [self.train_enc[i] for i in members[rows]]
        words = [self._dropped(s.words) for s in share]
        inp = tag_inputs(share, self.model_config, words)
        with autocast(device, dtype):
            emissions = net(*inp.model_inputs(device)).float()  # (n, T, K)
        tags = inp.tags.to(device)
        model = getattr(net, "module", net)
        if model.crf is None:
            nll = F.cross_entropy(emissions.reshape(-1, emissions.shape[-1]), tags.reshape(-1), ignore_index=IGNORE,
                                  reduction="sum")
        else:
            nll = model.crf.nll(emissions, tags.clamp(min=0), inp.mask.to(device)).sum()
        return nll * scale / total, sum(len(s.words) for s in share) if scale else 0

    def _dropped(self, words: list[int]) -> list[int]:
        if not self.word_dropout:
            return words
        ids = torch.tensor(words)
        drop = torch.rand(len(words)) < self.drop_p[ids]
        return ids.masked_fill(drop, 0).tolist()

    def validate(self, model: nn.Module, dtype: torch.dtype | None) -> dict[str, float]:
        device = next(model.parameters()).device
        preds, _, loss = tag_encoded(model, self.val_enc, device, dtype)
        right = seen_right = unseen = tokens = 0
        for s, p in zip(self.val_enc, preds):
            for w, gold, guess in zip(s.words, s.tags, p):
                tokens += 1
                right += gold == guess
                if w == 0:
                    unseen += 1
                    seen_right += gold == guess
        return {"val_loss": loss / max(tokens, 1), "val_accuracy": right / max(tokens, 1),
                "val_unseen_accuracy": seen_right / unseen if unseen else float("nan")}

    def start_info(self) -> dict[str, Any]:
        v = self.data.vocab
        return {"train_sentences": len(self.data.train), "val_sentences": len(self.data.val),
                "train_tokens": sum(len(s.tokens) for s in self.data.train), "val_tokens": self.val_size,
                "words": len(v.words), "chars": v.chars.vocab_size, "tags": v.tags, "embeddings": self.embedding_report}

    def summary(self, best: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
        return {"val_loss": best["val_loss"], "val_accuracy": best["val_accuracy"],
                "val_unseen_accuracy": best["val_unseen_accuracy"], "final_val_accuracy": last["val_accuracy"],
                "final_val_loss": last["val_loss"], "tags": self.data.vocab.tags}

    def checkpoint_parts(self) -> dict[str, Any]:
        state = {**self.data.vocab.state(), "tag_column": self.data.tag_column, "word_dropout": self.word_dropout,
                 "embeddings": self.embedding_report, "freeze_embeddings": self.freeze}
        return {"tokenizer": self.data.vocab.chars, "task": self.name, "task_state": state}
