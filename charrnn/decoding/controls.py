"""Logit controls: what decoding does to the model's scores before it chooses a token.

``Controls.scores`` is the one ordered function that applies them, for sampling and for
beam search alike:

    1. repetition penalty   (on the raw logits, CTRL-style)
    2. log-normalisation    (beam search only: its scores are log-probabilities)
    3. banned ids           (tokens that stand for no text: -inf)
    4. no-repeat n-grams    (-inf for tokens that would repeat an n-gram)
    5. temperature, top-k, min-p, top-p   (sampling only: ``Controls.sampling``)

A new rule is one function here and one line in ``Controls.scores``. ``Controls`` also
keeps the per-row history the rules need (seen tokens, n-gram tables) and follows the
rows when beam search reorders them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ..config import SampleConfig


def filter_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> torch.Tensor:
    """Scale by temperature and mask (to -inf) what top-k, top-p and min-p exclude. (N, V).

    top-p keeps the smallest set of most likely tokens whose probability mass reaches p
    (a token is kept when the mass of the tokens ranked above it is still below p).
    min-p keeps the tokens whose probability is at least min_p times the largest one.
    """
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if min_p is not None and min_p > 0:
        # p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p)
        floor = logits.max(dim=-1, keepdim=True).values + math.log(min_p)
        logits = logits.masked_fill(logits < floor, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = mass_before >= top_p
        drop_sorted[..., 0] = False  # the most likely token always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style repetition penalty: logits of seen tokens are divided by ``penalty`` when
    positive and multiplied by it when negative. seen: (N, V) bool."""
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)


class NgramBlocker:
    """Bans, for each row, the tokens that would complete an n-gram the row already has."""

    def __init__(self, n: int, histories: list[list[int]]):
        self.n = n
        self.seen: list[dict[tuple[int, ...], set[int]]] = [{} for _ in histories]
        self.hist = [list(h) for h in histories]
        for row, h in enumerate(self.hist):
            for i in range(len(h) - n + 1):
                self.seen[row].setdefault(tuple(h[i : i + n - 1]), set()).add(h[i + n - 1])

    def push(self, row: int, token: int) -> None:
        h = self.hist[row]
        h.append(token)
        if len(h) >= self.n:
            self.seen[row].setdefault(tuple(h[len(h) - self.n : -1]), set()).add(token)

    def reorder(self, index: list[int]) -> None:
        self.hist = [list(self.hist[i]) for i in index]
        self.seen = [{k: set(v) for k, v in self.seen[i].items()} for i in index]

    def ban(self, logits: torch.Tensor) -> None:
        for row, h in enumerate(self.hist):
            if len(h) >= self.n - 1:
                key = tuple(h[len(h) - self.n + 1 :]) if self.n > 1 else ()
                banned = self.seen[row].get(key)
                if banned:
                    logits[row, list(banned)] = float("-inf")


class Controls:
    """The controls of one decoding run over ``rows`` rows that all start after ``prime``."""

    def __init__(self, cfg: SampleConfig, prime: list[int], banned: Iterable[int], rows: int, vocab: int,
                 device: torch.device):
        self.cfg = cfg
        self.ban = torch.tensor(sorted(set(banned)), dtype=torch.long, device=device)
        self.seen: torch.Tensor | None = None  # (rows, V) tokens in prime or output
        if cfg.repetition_penalty != 1.0:
            self.seen = torch.zeros(rows, vocab, dtype=torch.bool, device=device)
            self.seen[:, prime] = True
        self.blocker = NgramBlocker(cfg.no_repeat_ngram, [prime] * rows) if cfg.no_repeat_ngram else None

    def scores(self, logits: torch.Tensor, log_normalize: bool = False) -> torch.Tensor:
        """Rules 1-4: the scores decoding chooses from, (N, V); ``logits`` is never changed."""
        cfg, scores = self.cfg, logits
        if self.seen is not None:
            scores = penalize_repeats(scores, self.seen, cfg.repetition_penalty)
        if log_normalize:
            scores = torch.log_softmax(scores.double(), dim=-1)
        return self._banned(scores, logits)

    def log_scores(self, logits: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
        """``scores(logits, log_normalize=True)`` for beam search, given ``logp``, the
        log-softmax of ``logits`` in float64: without a repetition penalty the scores are
        ``logp`` itself with the banned entries at -inf, so nothing is normalised twice."""
        if self.seen is not None:
            return self.scores(logits, log_normalize=True)
        return self._banned(logp, logp)

    def _banned(self, scores: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        """Rules 3-4 on ``scores``: banned ids and blocked n-grams at -inf, never written
        into ``given`` (the caller's tensor)."""
        if self.ban.numel():
            scores = scores.index_fill(1, self.ban, float("-inf"))
        if self.blocker is not None:
            scores = scores.clone() if scores is given else scores
            self.blocker.ban(scores)
        return scores

    @property
    def scores_are_logp(self) -> bool:
        """Whether every allowed score equals the model's log-probability (only bans apply)."""
        return self.seen is None

    def sampling(self, scores: torch.Tensor) -> torch.Tensor:
        """Rule 5, for sampling, on what ``scores`` gave (once rows with no allowed token
        have been dealt with: a row of -inf has no distribution)."""
        cfg = self.cfg
        return filter_logits(scores, cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p)

    @property
    def stateless(self) -> bool:
        """Whether ``push`` and ``reorder`` do nothing (no repetition penalty, no n-gram block)."""
        return self.seen is None and self.blocker is None

    def push(self, tokens: torch.Tensor, ids: list[int], live: list[bool] | None = None) -> None:
        """Row r produced ``ids[r]`` (``tokens`` is the same as a tensor); rows not ``live``
        keep their n-gram history."""
        if self.seen is not None:
            self.seen[torch.arange(len(ids), device=tokens.device), tokens] = True
        if self.blocker is not None:
            for r, t in enumerate(ids):
                if live is None or live[r]:
                    self.blocker.push(r, t)

    def reorder(self, index: torch.Tensor) -> None:
        """Row i takes the history of row index[i] (beam search)."""
        if self.seen is not None:
            self.seen = self.seen.index_select(0, index)
        if self.blocker is not None:
            self.blocker.reorder(index.tolist())
